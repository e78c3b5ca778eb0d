"""Every service serves Prometheus metrics; RPCs are counted with their status, the generator's batches sized."""
import urllib.request

import grpc
import pytest

from lipsync.v1 import generator_pb2, generator_pb2_grpc


def scrape(stack, name) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics[name]}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("name", ["gateway", "preprocess", "generator", "evaluator"])
def test_every_service_serves_metrics(stack, name):
    text = scrape(stack, name)
    assert "lipsync_rpc_seconds" in text and "process_cpu_seconds_total" in text


def test_rpcs_are_counted_with_their_status(stack, client, tmp_path):
    from tests import helpers
    key = 'lipsync_rpc_total{code="OK",method="ListEngines",service="generator"}'
    before = value(scrape(stack, "generator"), key)
    with grpc.insecure_channel(stack.addrs["generator"]) as ch:
        generator_pb2_grpc.GeneratorStub(ch).ListEngines(generator_pb2.ListEnginesRequest())
    assert value(scrape(stack, "generator"), key) == before + 1
    face = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.4, True)]))
    frames_before = value(scrape(stack, "generator"), 'lipsync_frames_total{service="generator"')
    client.lipsync(face, audio, str(tmp_path / "o.mp4"))
    gen = scrape(stack, "generator")
    assert value(gen, 'lipsync_frames_total{service="generator"') == frames_before + 10
    assert 'lipsync_rpc_total{code="OK",method="Lipsync",service="gateway"}' in scrape(stack, "gateway")
    assert value(scrape(stack, "render"), 'lipsync_frames_total{service="render",stage="render"}') >= 10


@pytest.mark.parametrize("name", ["gateway", "generator", "render"])
def test_collector_passes_are_timed_and_warm_objects_frozen(stack, name):
    """After warm-up each service leaves what is alive out of the collector's passes (GC_FREEZE, on by default)
    and times every pass per generation."""
    text = scrape(stack, name)
    assert value(text, f'lipsync_gc_frozen_objects{{service="{name}"}}') > 10_000
    assert value(text, f'lipsync_gc_pause_seconds_count{{generation="2",service="{name}"}}') >= 1    # freeze's pass


def test_watch_gc_times_a_full_pass():
    import gc

    from lipsync_common.edge import metrics
    metrics.watch_gc("test")
    key = 'lipsync_gc_pause_seconds_count{generation="2",service="test"}'
    from prometheus_client import generate_latest
    before = value(generate_latest().decode(), key)
    gc.collect()
    assert value(generate_latest().decode(), key) == before + 1
