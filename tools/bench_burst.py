"""When each stage starts for a burst of requests on a cached source (client-side times of the gateway's progress
events): audio, preprocess, generate. Any engine; the CPU machine's figures in BENCHMARKS.md come from it.

    BURST_ENGINE=loudness BURST_LEVELS=1,8 python -m tools.bench_burst
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import grpc

from lipsync.v1 import common_pb2, gateway_pb2_grpc
from lipsync_client.client import OPTIONS, upload_requests
from tools import synth as helpers
from tools.stack import Stack

ENGINE = os.environ.get("BURST_ENGINE", "loudness")
STAGES = ("STAGE_AUDIO", "STAGE_PREPROCESS", "STAGE_GENERATE")


def stage_times(addr: str, video: str, audio: str) -> dict[str, int]:
    """ms from the call's start to the first progress event of each stage (the call is left once generating)."""
    with grpc.insecure_channel(addr, options=OPTIONS) as ch:
        stub = gateway_pb2_grpc.LipsyncGatewayStub(ch)
        t0, seen = time.perf_counter(), {}
        for r in stub.Lipsync(upload_requests(video, audio, common_pb2.LipsyncOptions(engine=ENGINE))):
            if r.WhichOneof("payload") == "progress":
                seen.setdefault(common_pb2.Stage.Name(r.progress.stage), round(1000 * (time.perf_counter() - t0)))
            if "STAGE_GENERATE" in seen:
                return seen
    return seen


def main() -> None:
    tmp = tempfile.mkdtemp()
    stack = Stack.start(os.path.join(tmp, "s"), services=("preprocess", "generator", "render", "gateway"),
                        timeout=540)
    try:
        video = helpers.face_video(os.path.join(tmp, "src.mp4"), n=250, fps=25, size=(1280, 720))
        audio = helpers.write_wav(os.path.join(tmp, "a.wav"), helpers.speech_like([(10.0, True)]))
        stage_times(stack.addrs["gateway"], video, audio)                 # prepares the source
        for n in [int(v) for v in os.environ.get("BURST_LEVELS", "1,8").split(",")]:
            out: list = []
            threads = [threading.Thread(target=lambda: out.append(stage_times(stack.addrs["gateway"], video, audio)))
                       for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(json.dumps({"requests": n, "engine": ENGINE, "cores": os.cpu_count(),
                              **{s: sorted(r.get(s, -1) for r in out) for s in STAGES}}), flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
