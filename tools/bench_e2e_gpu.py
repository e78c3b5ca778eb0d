"""On the GPU machine: the whole service end to end with the musetalk engine (full-size random weights).

All three services run there as processes; a 1280x720 H.264 source (250 frames at 25 fps) and 10 s of audio go
through the gateway; the second request finds the source prepared. Reports frames/s and the time from the request
to the first MP4 chunk. Random weights: speed only.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import grpc

from lipsync.v1 import common_pb2, gateway_pb2_grpc
from lipsync_client.client import OPTIONS, upload_requests
from tests import helpers
from tools.bench_gpu import write_full_size_models
from tools.stack import Stack


def timed_call(addr: str, video: str, audio: str) -> dict:
    with grpc.insecure_channel(addr, options=OPTIONS) as ch:
        stub = gateway_pb2_grpc.LipsyncGatewayStub(ch)
        t0 = time.perf_counter()
        first = None
        summary = None
        for resp in stub.Lipsync(upload_requests(video, audio, common_pb2.LipsyncOptions(engine="musetalk"))):
            kind = resp.WhichOneof("payload")
            if kind == "video" and first is None:
                first = time.perf_counter() - t0
            elif kind == "summary":
                summary = resp.summary
        wall = time.perf_counter() - t0
    return {"frames": summary.frames, "wall_s": round(wall, 2), "fps": round(summary.frames / wall, 1),
            "first_chunk_ms": round(first * 1e3), "engine": summary.engine,
            "stages": {common_pb2.Stage.Name(t.stage): round(t.seconds, 2) for t in summary.timings}}


def main() -> int:
    tmp = tempfile.mkdtemp()
    models = os.path.join(tmp, "models")
    write_full_size_models(models)
    video = helpers.face_video(os.path.join(tmp, "src720.mp4"), n=250, fps=25, size=(1280, 720))
    audio = helpers.write_wav(os.path.join(tmp, "a.wav"), helpers.speech_like([(10.0, True)]))
    t0 = time.perf_counter()
    stack = Stack.start(os.path.join(tmp, "stack"), env={"MODELS_DIR": models, "MUSETALK_MAX_BATCH": "32"},
                        timeout=540)
    print(f"stack SERVING after {time.perf_counter() - t0:.0f} s (generator compiles and warms up)", flush=True)
    rows = []
    try:
        for label in ("new source", "cached source", "cached source again"):
            r = timed_call(stack.addrs["gateway"], video, audio)
            r["run"] = label
            rows.append(r)
            print(json.dumps(r), flush=True)
    finally:
        stack.stop()
        for name in ("generator", "preprocess", "gateway"):
            log = os.path.join(tmp, "stack", "log", f"{name}.log")
            if os.environ.get("OUT") and os.path.exists(log):
                os.system(f"tail -c 20000 {log} > {os.environ['OUT']}/{name}.log")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "e2e_gpu.json"), "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
