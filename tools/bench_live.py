"""Live sessions under load: N concurrent LiveSession calls streaming speech at real-time pace (20 ms chunks),
optionally beside offline Lipsync requests, on a stack started here.

    LIVE_ENGINE=musetalk LIVE_LEVELS=1,16,16:4 RENDER_WORKERS=8 python -m tools.bench_live   # the GPU machine
    LIVE_ENGINE=loudness LIVE_LEVELS=1,2 python -m tools.bench_live                          # a CPU machine

LIVE_LEVELS: comma-separated levels, each "sessions" or "sessions:offline streams" running beside them.
LIVE_RESTART: "service:KEY=VALUE;..." each restarts that service with the setting added, then the levels run again
(LIVE_RESTART_LEVELS). LIVE_SPY: a level whose first run py-spy records (generator and gateway, 6 s, into $OUT).

For each level: per-session frames, speech/idle frames, frames late (their crop missed its slot: the source frame
went out instead), latency from an audio chunk's arrival to its frame leaving the gateway (p50/p95/max over all
speech frames), the frame pacing (max gap between frames at the client), and the offline requests' aggregate
frames/s during the live sessions. musetalk runs full-size random weights (speed only).
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time

import numpy as np

from lipsync.v1 import common_pb2
from lipsync_client.live import LiveSession
from tools import synth as helpers
from tools.out import report_targets, save_json
from tools.stack import Stack

ENGINE = os.environ.get("LIVE_ENGINE", "loudness")
SECONDS = float(os.environ.get("LIVE_SECONDS", "10"))
EARLY_S = 2.0           # late frames in a session's first seconds (its start) are counted apart from the rest


def emit(rows: list, row: dict) -> None:
    import json
    rows.append(row)
    print(json.dumps(row), flush=True)


async def one_session(addr: str, source_id: str, face: str, pcm: bytes, fps: float, engine: str = ENGINE) -> dict:
    opts = common_pb2.LipsyncOptions(engine=engine, fps=fps)
    frames, stats, late_early = [], None, 0
    async with LiveSession(addr, face=face if not source_id else "", source_id=source_id, options=opts) as s:
        ready = await s.ready()

        async def send():
            t0 = time.monotonic()
            for i in range(0, len(pcm), 640):
                await asyncio.sleep(max(0.0, t0 + i / 2 / 16000 - time.monotonic()))
                await s.send_audio(pcm[i:i + 640])
            await s.flush()
            await s.end()

        sender = asyncio.create_task(send())
        async for msg in s:
            kind = msg.WhichOneof("payload")
            if kind == "frame":
                frames.append((time.monotonic(), msg.frame.speech, msg.frame.latency_ms))
            elif kind == "stats":
                stats = msg.stats
                if frames and time.monotonic() - frames[0][0] <= EARLY_S:     # stats come every second
                    late_early = stats.frames_late
        await sender
    times = [t for t, _, _ in frames]
    return {"source_id": ready.source_id, "frames": len(frames), "speech": sum(s for _, s, _ in frames),
            "late": stats.frames_late if stats else None, "late_early": late_early,
            "latencies": [lat for _, s, lat in frames if s],
            "max_gap_ms": 1000 * max(np.diff(times)) if len(times) > 1 else 0.0, "detail": ready.engine_detail}


HISTOGRAMS = {   # name in the row: (service, metric, labels to match)
    "generator_crop_s": ("generator", "lipsync_generator_live_crop_seconds", {}),
    "gateway_generator_s": ("gateway", "lipsync_gateway_live_seconds", {"stage": "generator"}),
    "gateway_render_s": ("gateway", "lipsync_gateway_live_seconds", {"stage": "render"}),
    # the generator's side thread (whisper for every session's token job) and its GPU batches
    "generator_side_s": ("generator", "lipsync_generator_side_seconds", {}),
    "generator_side_jobs": ("generator", "lipsync_generator_side_jobs", {}),
    "generator_batch_s": ("generator", "lipsync_generator_batch_seconds", {}),
    "generator_batch_size": ("generator", "lipsync_generator_batch_size", {}),
    # how long before the running batch's due end the next was launched (p5 at 0: 5% or more launched late)
    "generator_launch_lead_s": ("generator", "lipsync_generator_launch_lead_seconds", {}),
    # Python's full collector passes (every thread waits): how many, and how long, during the level
    "generator_gc2_s": ("generator", "lipsync_gc_pause_seconds", {"generation": "2"}),
    "gateway_gc2_s": ("gateway", "lipsync_gc_pause_seconds", {"generation": "2"}),
}


def buckets(stack: Stack) -> dict[str, dict[float, float]]:
    """Each histogram of HISTOGRAMS (cumulative counts by upper bound), from its service's /metrics."""
    import re
    import urllib.request
    out: dict[str, dict[float, float]] = {}
    for key, (service, metric, label) in HISTOGRAMS.items():
        port = stack.metrics.get(service)
        out[key] = {}
        if not port:
            continue
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for labels, v in re.findall(metric + r'_bucket\{([^}]*)\} ([0-9.e+]+)', text):
            found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if all(found.get(k) == want for k, want in label.items()):     # summed over the other labels
                out[key][float(found["le"])] = out[key].get(float(found["le"]), 0.0) + float(v)
    return out


def gpu_seconds(stack: Stack, counter: str = "busy") -> float | None:
    """The generator's lipsync_generator_gpu_busy_seconds_total (its batches' own time on the device) so far;
    counter="gap": lipsync_generator_gpu_gap_seconds_total (the device's waits between consecutive batches);
    "run_start": the gauge lipsync_generator_gpu_run_start_seconds (its monotonic clock when the device last began
    work after an idle second)."""
    import re
    import urllib.request
    port = stack.metrics.get("generator")
    if not port:
        return None
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = re.findall(rf'^lipsync_generator_gpu_{counter}_seconds(?:_total)? ([0-9.e+-]+)$', text, re.M)
    return float(found[0]) if found else None


def gpu_busy(busy0: float | None, busy1: float | None, frames: int, wall: float) -> dict:
    """The device's time on a level's batches (from two gpu_seconds readings): its share of the wall, and the frames
    per second of that busy time (the networks' rate inside the service, against bench_gpu's)."""
    busy = None if busy0 is None or busy1 is None else busy1 - busy0
    return {"gpu_busy_s": None if busy is None else round(busy, 3),
            "gpu_busy_share": None if busy is None else round(busy / wall, 3),
            "gpu_fps_while_busy": round(frames / busy, 1) if busy else None}


def bucket_percentile(before: dict, after: dict, q: float) -> float | None:
    """The upper bound of the bucket holding the q-th percentile of what was observed between two scrapes."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    if not delta or delta[-1][1] <= 0:
        return None
    for le, count in delta:
        if count >= q / 100 * delta[-1][1]:
            return le
    return None


def offline_load(addr: str, video: str, audio: str, stop: threading.Event, out: list, engine: str) -> None:
    from lipsync_client.client import LipsyncClient
    with LipsyncClient(addr) as c, tempfile.TemporaryDirectory() as tmp:
        while not stop.is_set():
            t0 = time.perf_counter()
            s = c.lipsync(video, audio, os.path.join(tmp, "out.mp4"), common_pb2.LipsyncOptions(engine=engine))
            out.append((t0, time.perf_counter(), s.frames))


async def level(addr: str, source_id: str, n: int, pcm: bytes, fps: float, engine: str) -> list[dict]:
    return await asyncio.gather(*[one_session(addr, source_id, "", pcm, fps, engine) for _ in range(n)])


def run_level(stack: Stack, source_id: str, face: str, audio_path: str, pcm: bytes, size: tuple, spec: str,
              spy: bool = False, engine: str = ENGINE) -> dict:
    """One level: "n" live sessions, or "n:m" beside m offline streams; spy: py-spy on the generator and the
    gateway for 6 s of it (collapsed stacks into $OUT)."""
    addr = stack.addrs["gateway"]
    n, offline_n = (int(v) for v in (spec + ":0").split(":")[:2])
    stop, done = threading.Event(), []
    load = [threading.Thread(target=offline_load, args=(addr, face, audio_path, stop, done, engine))
            for _ in range(offline_n)]
    for t in load:
        t.start()
    spies = stack.profile(6, ("generator", "gateway")) if spy else []
    t0, before, busy0 = time.perf_counter(), buckets(stack), gpu_seconds(stack)
    results = asyncio.run(level(addr, source_id, n, pcm, 25.0, engine))
    after, busy1 = buckets(stack), gpu_seconds(stack)
    t1 = time.perf_counter()
    stop.set()
    for t in load:
        t.join()
    for p in spies:
        p.wait(60)
    lat = [v for r in results for v in r["latencies"]]
    # offline frames made during the live level: each request's frames in proportion to its overlap
    within = [f * max(0.0, min(b, t1) - max(a, t0)) / (b - a) for a, b, f in done]
    return {"run": f"{n} live sessions" + (f" beside {offline_n} offline streams" if offline_n else ""),
            "sessions": n, "size": f"{size[0]}x{size[1]}", "fps": 25,
            "frames": sum(r["frames"] for r in results), "speech_frames": sum(r["speech"] for r in results),
            "late": sum(r["late"] or 0 for r in results),
            # of those, late in the sessions' first EARLY_S seconds (as far as the per-second stats tell)
            f"late_first_{EARLY_S:g}s": sum(r["late_early"] for r in results),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
            "latency_ms_max": round(max(lat), 1),
            "max_frame_gap_ms": round(max(r["max_gap_ms"] for r in results), 1),
            # where a frame's time goes (bucket upper bounds, s): in the generator (lookahead fed ->
            # crop out), generator as the gateway sees it (fed -> crop here), render (there and back)
            **{f"{key}_p{q}_le": bucket_percentile(before[key], after[key], q)
               for key in HISTOGRAMS for q in (50, 95)},
            **{f"{key}_passes": max(after[key].values(), default=0) - max(before[key].values(), default=0)
               for key in ("generator_gc2_s", "gateway_gc2_s")},
            "offline_fps": round(sum(within) / (t1 - t0), 1) if offline_n else None,
            "gpu_busy_share": gpu_busy(busy0, busy1, 0, t1 - t0)["gpu_busy_share"],
            "offline_requests_done": len(within)}


def main() -> int:
    tmp = tempfile.mkdtemp()
    env = {"MAX_LIVE": "64", "MAX_STREAMS": "64"}
    if ENGINE == "musetalk":
        from tools.bench_gpu import write_full_size_models
        env["MODELS_DIR"] = os.path.join(tmp, "models")
        write_full_size_models(env["MODELS_DIR"])
    stack = Stack.start(os.path.join(tmp, "stack"), env=env, timeout=540,
                        services=("preprocess", "generator", "render", "gateway"),
                        render_workers=int(os.environ.get("RENDER_WORKERS", "1")), metrics=True)
    addr = stack.addrs["gateway"]
    size = tuple(int(v) for v in os.environ.get("LIVE_SIZE", "512x512").split("x"))
    face = helpers.face_video(os.path.join(tmp, "face.mp4"), n=125, fps=25, size=size)
    speech = np.asarray(helpers.speech_like([(SECONDS / 2, True), (0.5, False), (SECONDS / 2 - 0.5, True)]))
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()
    rows: list = []
    try:
        first = asyncio.run(one_session(addr, "", face, pcm[:32000], 25.0))     # prepares the avatar
        source_id = first["source_id"]
        emit(rows, {"run": "first session (prepares the avatar)", "engine": ENGINE, "detail": first["detail"]})
        audio_path = helpers.write_wav(os.path.join(tmp, "a.wav"), speech)
        levels = os.environ.get("LIVE_LEVELS", "1,2")
        spy_at = os.environ.get("LIVE_SPY", "")      # a level ("16") whose first run is profiled
        for spec in filter(None, levels.split(",")):
            emit(rows, run_level(stack, source_id, face, audio_path, pcm, size, spec, spy=spec == spy_at))
            spy_at = "" if spec == spy_at else spy_at
        # LIVE_RESTART="gateway:LIVE_ALIGN=0;generator:MUSETALK_SIDE_GATHER_MS=0": a service restarted with a setting
        # added (on top of the earlier ones), then the levels again (LIVE_RESTART_LEVELS, default LIVE_LEVELS)
        for change in filter(None, os.environ.get("LIVE_RESTART", "").split(";")):
            setting = stack.restart_with(change)
            for spec in filter(None, os.environ.get("LIVE_RESTART_LEVELS", levels).split(",")):
                row = run_level(stack, source_id, face, audio_path, pcm, size, spec)
                row["run"] += f", {setting}"
                emit(rows, row)
    finally:
        stack.stop()
    save_json("live.json", rows)
    report_targets(rows, ENGINE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
