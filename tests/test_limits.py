"""A service at its concurrency limit answers RESOURCE_EXHAUSTED at once with a retry hint, and recovers."""
import os
import subprocess
import sys
import threading

import grpc

from lipsync.v1 import generator_pb2, generator_pb2_grpc
from tools.stack import ROOT, _free_port, wait_serving


def test_over_the_limit_is_refused_at_once_then_served(tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "gen")]), MAX_CALLS="1",
               GENERATOR_PORT=str(port), CACHE_DIR=str(tmp_path / "c"), MODELS_DIR=str(tmp_path / "m"))
    proc = subprocess.Popen([sys.executable, "-m", "services.generator.server"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(f"127.0.0.1:{port}", 60, proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = generator_pb2_grpc.GeneratorStub(ch)
            release = threading.Event()

            def held():
                yield generator_pb2.GenerateRequest(config=generator_pb2.GenerateConfig(
                    source_id="ab" * 16, engine="loudness", fps=25, audio_sample_rate=16000))
                release.wait(20)

            first = stub.Generate(held())          # occupies the only slot while its upload stays open
            try:
                import time
                time.sleep(0.5)
                try:
                    stub.ListEngines(generator_pb2.ListEnginesRequest(), timeout=5)
                    raise AssertionError("the second call was not refused")
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in 1 s" in e.details()
                    assert ("retry-after-s", "1") in tuple(e.trailing_metadata() or ())
            finally:
                release.set()
                try:
                    list(first)
                except grpc.RpcError:
                    pass            # the held call ends with its own error (no such source): irrelevant here
            assert stub.ListEngines(generator_pb2.ListEnginesRequest(), timeout=5).engines
    finally:
        proc.terminate()
        proc.wait(30)
