"""`make loadtest`: concurrent lip-sync streams against the local stack (127.0.0.1 only, bounded in count and time).

The gateway admits MAX_STREAMS streams at once (the capacity, here 4); the test drives 1x, 2x and 4x that many
concurrent clients, each sending ROUNDS short requests (a 2 s clip on the embedded default), and reports
throughput, p50/p99 latency of accepted requests, the share rejected with RESOURCE_EXHAUSTED, and each service's
peak memory. Every accepted request must complete with a full MP4; any other outcome fails the run.
Appends to bench/LOADTEST.md.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

from lipsync_client import LipsyncClient, LipsyncError
from tools import synth
from tools.bench import cpu_name
from tools.stack import ROOT, Stack

CAPACITY = 4
ROUNDS = 2


def peak_rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def level(addr: str, clients: int, face: str, audio: str, tmp: str) -> dict:
    lat, rejected, errors, frames = [], [0], [], [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        with LipsyncClient(addr, timeout=120) as c:
            for r in range(ROUNDS):
                t0 = time.perf_counter()
                try:
                    s = c.lipsync(face, audio, os.path.join(tmp, f"o{k}-{r}.mp4"))
                    with lock:
                        lat.append(time.perf_counter() - t0)
                        frames[0] += s.frames
                    if s.frames != 50:
                        errors.append(f"client {k}: {s.frames} frames")
                except LipsyncError as e:
                    with lock:
                        if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            rejected[0] += 1
                        else:
                            errors.append(f"client {k}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = clients * ROUNDS
    return {"clients": clients, "requests": total, "accepted": len(lat), "rejected_share": rejected[0] / total,
            "frames_per_s": frames[0] / wall, "p50_s": float(np.percentile(lat, 50)) if lat else float("nan"),
            "p99_s": float(np.percentile(lat, 99)) if lat else float("nan"), "errors": errors, "wall_s": wall}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        face = synth.write_png(os.path.join(tmp, "face.png"), synth.face_image())
        audio = synth.write_wav(os.path.join(tmp, "speech.wav"), synth.speech_like([(2.0, True)]))
        stack = Stack.start(os.path.join(tmp, "stack"), env={"MAX_STREAMS": str(CAPACITY)})
        rows, failed = [], False
        try:
            for mult in (1, 2, 4):
                r = level(stack.addrs["gateway"], CAPACITY * mult, face, audio, tmp)
                crashed = [n for n, p in stack.procs.items() if p.poll() is not None]
                failed |= bool(r["errors"] or crashed)
                rows.append(f"| {mult}x ({r['clients']} clients) | {r['requests']} | {r['accepted']} | "
                            f"{r['rejected_share']:.0%} | {r['frames_per_s']:.1f} | {r['p50_s']:.2f} | "
                            f"{r['p99_s']:.2f} | {'; '.join(r['errors'][:3]) or 'none'}"
                            f"{'; crashed: ' + ', '.join(crashed) if crashed else ''} |")
                print(rows[-1], flush=True)
            memory = ", ".join(f"{n} {peak_rss_mb(p.pid):.0f} MB" for n, p in stack.procs.items())
            print("peak memory:", memory)
        finally:
            stack.stop()
    path = os.path.join(ROOT, "bench", "LOADTEST.md")
    with open(path, "a") as f:
        if f.tell() == 0:
            f.write("# Load tests\n\nWritten by `make loadtest`; newest at the bottom.\n")
        f.write(f"\n## {datetime.date.today().isoformat()} - {cpu_name()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}\n\nEmbedded default engine; capacity = MAX_STREAMS = {CAPACITY}; "
                f"each client sends {ROUNDS} requests of a 2 s clip (50 frames) from a 512x512 portrait.\n\n"
                "| load | requests | accepted | rejected (RESOURCE_EXHAUSTED) | frames/s | p50 s | p99 s | errors |\n"
                "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + f"\n\nPeak memory (VmHWM): {memory}.\n")
    print(f"appended to {os.path.relpath(path, ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
