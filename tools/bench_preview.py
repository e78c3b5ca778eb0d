"""The tuning preview's latency through the gateway (a real stack on 127.0.0.1): a 1280x720 H.264 source of 250
frames, first while it is prepared, then repeated on the prepared source (upload and hash included).

    python -m tools.bench_preview [RUNS]        # prints one JSON line; BENCHMARKS.md keeps the figures
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

from lipsync_client import LipsyncClient
from tools import synth
from tools.stack import Stack


def main(runs: int = 5) -> int:
    tmp = tempfile.mkdtemp()
    stack = Stack.start(os.path.join(tmp, "stack"), services=("preprocess", "generator", "render", "gateway"))
    try:
        video = synth.face_video(os.path.join(tmp, "v.mp4"), n=250, fps=25, size=(1280, 720))
        with LipsyncClient(stack.addrs["gateway"]) as client:
            t0 = time.perf_counter()
            client.preview(video)
            new = time.perf_counter() - t0
            cached = []
            for _ in range(runs):
                t0 = time.perf_counter()
                p = client.preview(video)
                cached.append(time.perf_counter() - t0)
    finally:
        stack.stop()
    print(json.dumps({"source": "1280x720, 250 frames", "new_s": round(new, 2),
                      "cached_ms_median": round(statistics.median(cached) * 1e3),
                      "cached_ms_max": round(max(cached) * 1e3), "png_bytes": len(p.png),
                      "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
