"""Each service on its own: health, reflection, and the internal APIs' validation."""
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lipsync.v1 import (common_pb2, generator_pb2, generator_pb2_grpc, preprocess_pb2, preprocess_pb2_grpc, render_pb2,
                        render_pb2_grpc)
from lipsync_common.formats.tensors import to_tensor

SERVICES = {"gateway": "lipsync.v1.LipsyncGateway", "preprocess": "lipsync.v1.Preprocess",
            "generator": "lipsync.v1.Generator", "render": "lipsync.v1.Render"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_health_and_reflection(stack, name):
    with grpc.insecure_channel(stack.addrs[name]) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for svc in ("", SERVICES[name]):
            assert health.Check(health_pb2.HealthCheckRequest(service=svc)).status == \
                health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
        assert {SERVICES[name], "grpc.health.v1.Health"} <= names


def test_list_engines_is_honest(stack):
    with grpc.insecure_channel(stack.addrs["generator"]) as ch:
        engines = {e.name: e for e in generator_pb2_grpc.GeneratorStub(ch).ListEngines(
            generator_pb2.ListEnginesRequest()).engines}
    assert engines["visemes"].available and "weight-free" in engines["visemes"].description
    assert engines["loudness"].available and "loudness" in engines["loudness"].description
    assert not engines["musetalk"].available and "missing" in engines["musetalk"].unavailable_reason


def gen_call(stack, config, audio_parts):
    reqs = [generator_pb2.GenerateRequest(config=config)] + [generator_pb2.GenerateRequest(audio=a) for a in audio_parts]
    with grpc.insecure_channel(stack.addrs["generator"]) as ch, pytest.raises(grpc.RpcError) as e:
        list(generator_pb2_grpc.GeneratorStub(ch).Generate(iter(reqs)))
    return e.value


def test_generator_validation(stack):
    cfg = generator_pb2.GenerateConfig(source_id="ab" * 16, engine="loudness", fps=25, audio_sample_rate=16000)
    ok_audio = [to_tensor(np.zeros(1600, np.float32))]
    e = gen_call(stack, cfg, ok_audio)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "call Prepare first" in e.details()
    bad_rate = generator_pb2.GenerateConfig(source_id="ab" * 16, engine="loudness", fps=25, audio_sample_rate=44100)
    assert gen_call(stack, bad_rate, ok_audio).code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_priority = generator_pb2.GenerateConfig(source_id="ab" * 16, engine="loudness", fps=25,
                                                audio_sample_rate=16000, priority=9)
    e = gen_call(stack, bad_priority, ok_audio)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown priority 9" in e.details()


@pytest.fixture
def prepared(stack, tmp_path):
    from tests import helpers
    face = open(helpers.write_png(str(tmp_path / "f.png"), helpers.face_image()), "rb").read()
    with grpc.insecure_channel(stack.addrs["preprocess"]) as ch:
        stub = preprocess_pb2_grpc.PreprocessStub(ch)
        reqs = [preprocess_pb2.PrepareRequest(options=preprocess_pb2.PrepareOptions()),
                preprocess_pb2.PrepareRequest(media=common_pb2.Chunk(offset=0, data=face, last=True))]
        return [r.prepared for r in stub.Prepare(iter(reqs)) if r.WhichOneof("payload") == "prepared"][0]


def test_generator_rejects_non_finite_and_malformed_audio(stack, prepared):
    cfg = generator_pb2.GenerateConfig(source_id=prepared.source_id, engine="loudness", fps=25, audio_sample_rate=16000)
    e = gen_call(stack, cfg, [to_tensor(np.array([0.0, np.inf], np.float32))])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN or infinite" in e.details()
    e = gen_call(stack, cfg, [common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[10], data=b"x")])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 40 bytes" in e.details()
    e = gen_call(stack, cfg, [])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "zero length" in e.details()


def test_render_needs_a_prepared_source_and_ordered_crops(stack, prepared):
    with grpc.insecure_channel(stack.addrs["render"]) as ch:
        stub = render_pb2_grpc.RenderStub(ch)
        cfg = render_pb2.RenderConfig(source_id="cd" * 16, fps=25, num_frames=2, audio_sample_rate=16000,
                                          audio_channels=1)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Render(iter([render_pb2.RenderRequest(config=cfg)])))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        cfg.source_id = prepared.source_id
        crops = to_tensor(np.zeros((1, 256, 256, 3), np.uint8))
        reqs = [render_pb2.RenderRequest(config=cfg),
                render_pb2.RenderRequest(crops=preprocess_pb2.CropBatch(first_frame=1, images=crops))]
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Render(iter(reqs)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected frame 0" in e.value.details()
        reqs[1].crops.first_frame = 0
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Render(iter(reqs)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "only 1 of 2 frames" in e.value.details()


def test_render_calls_that_end_before_their_crops_leave_no_renderer_behind(stack, prepared):
    """The renderer is made when the config comes (its encoders open while the first crops are being made): a call
    that ends before any crops, by its stream ending or by cancellation, stops it (its decoder and x264 threads)."""
    import os
    import time
    pid = next(p.pid for name, p in stack.procs.items() if name.startswith("render"))

    def threads():
        return len(os.listdir(f"/proc/{pid}/task"))

    cfg = render_pb2.RenderConfig(source_id=prepared.source_id, fps=25, num_frames=50, audio_sample_rate=16000,
                                  audio_channels=1)
    audio = render_pb2.RenderRequest(audio=to_tensor(np.zeros((16000, 1), np.int16)))
    with grpc.insecure_channel(stack.addrs["render"]) as ch:
        stub = render_pb2_grpc.RenderStub(ch)

        def ended_early():
            with pytest.raises(grpc.RpcError) as e:
                list(stub.Render(iter([render_pb2.RenderRequest(config=cfg), audio])))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "before any crops" in e.value.details()

        def cancelled():
            call = stub.Render(iter([render_pb2.RenderRequest(config=cfg), audio]), timeout=60)
            call.cancel()
            with pytest.raises(grpc.RpcError):
                list(call)

        def settled(limit: int) -> int:
            deadline = time.monotonic() + 10       # the renderers are stopped in worker threads after the calls
            while threads() > limit and time.monotonic() < deadline:
                time.sleep(0.1)
            return threads()

        for _ in range(3):                # the worker threads the server keeps (its executor's) are made now
            ended_early()
            cancelled()
        time.sleep(1)
        before = threads()
        for _ in range(4):
            ended_early()
            cancelled()
        # each renderer left behind would keep 9 threads or more (its source's decoding, two x264 encoders)
        assert settled(before + 4) <= before + 4, f"{threads() - before} threads more after 8 calls that ended early"


def test_render_sends_the_first_fragment_before_the_rest_of_the_crops_arrive(stack, prepared):
    """The MP4's bytes leave as soon as a batch is encoded, not when the next message comes: the client holds the
    rest of the crops back until it has the header and a first short fragment (a keyframe at 0.2 s opens the
    second one; x264 holds back up to threads + lookahead frames, 13 here, so 24 frames go first), then finishes;
    the whole is one playable file of every frame."""
    import queue

    from tests import helpers
    frames, fps = 60, 25
    cfg = render_pb2.RenderConfig(source_id=prepared.source_id, fps=fps, num_frames=frames, audio_sample_rate=16000,
                                  audio_channels=1)
    crops = np.full((8, 256, 256, 3), 128, np.uint8)
    outbox: queue.Queue = queue.Queue()
    outbox.put(render_pb2.RenderRequest(config=cfg))
    outbox.put(render_pb2.RenderRequest(audio=to_tensor(np.zeros((16000 * 3, 1), np.int16))))
    for first in (0, 8, 16):
        outbox.put(render_pb2.RenderRequest(crops=preprocess_pb2.CropBatch(first_frame=first, images=to_tensor(crops))))

    def requests():
        while (msg := outbox.get()) is not None:
            yield msg

    data, held_back = b"", True
    with grpc.insecure_channel(stack.addrs["render"]) as ch:
        call = render_pb2_grpc.RenderStub(ch).Render(requests(), timeout=60)
        for resp in call:
            if resp.WhichOneof("payload") == "video":
                data += resp.video.data
            if held_back and b"moof" in data:     # the rest goes out once the first fragment came back
                held_back = False
                for first in range(24, frames, 8):
                    outbox.put(render_pb2.RenderRequest(crops=preprocess_pb2.CropBatch(
                        first_frame=first, images=to_tensor(crops[:min(8, frames - first)]))))
                outbox.put(None)
    assert not held_back, "no fragment came back while the client still held 36 of the 60 frames"
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        decoded, out_fps, has_audio, _ = helpers.decode_video(f.name)
    assert len(decoded) == frames and out_fps == fps and has_audio


def test_generator_checks_the_planned_frame_count(stack, prepared):
    """The gateway's plan carries the frame count; audio that gives another count is refused, not guessed at."""
    cfg = generator_pb2.GenerateConfig(source_id=prepared.source_id, engine="loudness", fps=25,
                                       audio_sample_rate=16000, num_frames=11)
    e = gen_call(stack, cfg, [to_tensor(np.zeros(16000, np.float32))])      # 1 s at 25 fps: 25 frames
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "num_frames 11 was planned" in e.details()
    cfg.num_frames = 25
    with grpc.insecure_channel(stack.addrs["generator"]) as ch:
        out = list(generator_pb2_grpc.GeneratorStub(ch).Generate(iter([
            generator_pb2.GenerateRequest(config=cfg),
            generator_pb2.GenerateRequest(audio=to_tensor(np.zeros(16000, np.float32)))])))
    assert out[-1].summary.frames == 25
