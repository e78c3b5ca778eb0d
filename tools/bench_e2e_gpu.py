"""On the GPU machine: the whole service end to end with the musetalk engine (full-size random weights).

All three services run there as processes; a 1280x720 H.264 source (250 frames at 25 fps) and 10 s of audio go
through the gateway; the second request finds the source prepared. Reports frames/s and the time from the request
to the first MP4 chunk. Random weights: speed only.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

import grpc

import numpy as np

from lipsync.v1 import (common_pb2, gateway_pb2_grpc, generator_pb2, generator_pb2_grpc, preprocess_pb2,
                        preprocess_pb2_grpc)
from lipsync_client.client import OPTIONS, upload_requests
from lipsync_common.tensors import to_tensor
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


def stages_alone(addrs: dict, video: str, seconds: float = 10.0, engine: str = "musetalk") -> list[dict]:
    """Each stage without the others: Generate straight from the generator (crops consumed, nothing rendered),
    then Render straight on the preprocess service with those crops. Shows which stage bounds the whole."""
    data = open(video, "rb").read()
    with grpc.insecure_channel(addrs["preprocess"], options=OPTIONS) as ch:
        stub = preprocess_pb2_grpc.PreprocessStub(ch)
        reqs = [preprocess_pb2.PrepareRequest(options=preprocess_pb2.PrepareOptions()),
                preprocess_pb2.PrepareRequest(media=common_pb2.Chunk(offset=0, data=data, last=True))]
        prepared = [r.prepared for r in stub.Prepare(iter(reqs)) if r.WhichOneof("payload") == "prepared"][0]
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    cfg = generator_pb2.GenerateConfig(source_id=prepared.source_id, engine=engine, fps=25, audio_sample_rate=16000)
    batches = []
    with grpc.insecure_channel(addrs["generator"], options=OPTIONS) as ch:
        t0 = time.perf_counter()
        reqs = [generator_pb2.GenerateRequest(config=cfg), generator_pb2.GenerateRequest(audio=to_tensor(audio))]
        for r in generator_pb2_grpc.GeneratorStub(ch).Generate(iter(reqs)):
            if r.WhichOneof("payload") == "crops":
                batches.append(r.crops)
        gen_s = time.perf_counter() - t0
    frames = sum(b.images.shape[0] for b in batches)
    rcfg = preprocess_pb2.RenderConfig(source_id=prepared.source_id, fps=25, num_frames=frames,
                                       audio_sample_rate=16000, audio_channels=1)
    pcm = (audio * 32767).astype(np.int16)[:, None]
    reqs = [preprocess_pb2.RenderRequest(config=rcfg), preprocess_pb2.RenderRequest(audio=to_tensor(pcm))]
    reqs += [preprocess_pb2.RenderRequest(crops=b) for b in batches]
    with grpc.insecure_channel(addrs["preprocess"], options=OPTIONS) as ch:
        t0 = time.perf_counter()
        out = sum(len(r.video.data) for r in preprocess_pb2_grpc.PreprocessStub(ch).Render(iter(reqs)))
        render_s = time.perf_counter() - t0
    return [{"run": "generator alone (Generate, cached source)", "frames": frames, "wall_s": round(gen_s, 2),
             "fps": round(frames / gen_s, 1)},
            {"run": "render alone (Render, 720p H.264 + AAC)", "frames": frames, "wall_s": round(render_s, 2),
             "fps": round(frames / render_s, 1), "bytes": out}]


def main() -> int:
    tmp = tempfile.mkdtemp()
    models = os.path.join(tmp, "models")
    write_full_size_models(models)
    video = helpers.face_video(os.path.join(tmp, "src720.mp4"), n=250, fps=25, size=(1280, 720))
    audio = helpers.write_wav(os.path.join(tmp, "a.wav"), helpers.speech_like([(10.0, True)]))
    t0 = time.perf_counter()
    stack = Stack.start(os.path.join(tmp, "stack"), env={"MODELS_DIR": models, "MUSETALK_MAX_BATCH": "32"},
                        timeout=540, services=("preprocess", "generator", "gateway"))   # no evaluation here
    print(f"stack SERVING after {time.perf_counter() - t0:.0f} s (generator compiles and warms up)", flush=True)
    rows = []
    try:
        cached = int(os.environ.get("E2E_RUNS", "8"))        # repeat requests on the cached source
        for label in ["new source"] + [f"cached source, run {i + 1}" for i in range(cached)]:
            r = timed_call(stack.addrs["gateway"], video, audio)
            r["run"] = label
            rows.append(r)
            print(json.dumps(r), flush=True)
        for _ in range(2):
            for r in stages_alone(stack.addrs, video):
                rows.append(r)
                print(json.dumps(r), flush=True)
        # E2E_RESTART="preprocess:RENDER_THREADS=6;generator:MUSETALK_FIRST_BATCH=0": a service restarted with
        # a setting changed (on top of the earlier ones), then the cached runs again
        for spec in filter(None, os.environ.get("E2E_RESTART", "").split(";")):
            name, setting = spec.split(":", 1)
            key, value = setting.split("=", 1)
            proc = stack.procs[name]
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            argv, penv, log, detach = stack.launch[name]
            stack.launch[name] = (argv, dict(penv, **{key: value}), log, detach)
            t0 = time.perf_counter()
            stack.restart(name, timeout=400)
            print(f"{name} SERVING again after {time.perf_counter() - t0:.0f} s with {setting}", flush=True)
            for label in ("cached source", "cached source again", "cached source, third"):
                r = timed_call(stack.addrs["gateway"], video, audio)
                r["run"] = f"{label}, {setting}"
                rows.append(r)
                print(json.dumps(r), flush=True)
            for r in stages_alone(stack.addrs, video):
                r["run"] += f", {setting}"
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
