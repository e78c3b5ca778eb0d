"""The MP4 writer alone, in-process (no services): when the first fragment leaves, and what several GOP encoders
do to throughput. The 2-core figures of BENCHMARKS.md (fourth session) come from it.

    python -m tools.bench_mp4            # MP4_RUNS=3 MP4_FRAMES=125 MP4_SIZE=1280x720
"""
from __future__ import annotations

import json
import os
import threading
import time

import av
import cv2
import numpy as np

from lipsync_common.formats import mp4


def frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """I420 frames of blurred noise sliding sideways: content an encoder has to work on, close frame to frame."""
    base = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8),
                            (31, 31), 0)
    return [cv2.cvtColor(np.roll(base, 4 * k, axis=1), cv2.COLOR_RGB2YUV_I420) for k in range(n)]


def first_fragment(data: list[np.ndarray], width: int, height: int, head: bool) -> dict:
    """Frames written and ms until the first moof, with the first fragment's own encoder or without it."""
    chunks: list[bytes] = []
    w = mp4.Mp4Writer(chunks.append, width, height, 25, first_fragment=5,
                      audio=np.zeros((1, 16000 * 3), np.float32), audio_rate=16000)
    if not head and w.head is not None:      # as before: the first fragment waits for the main encoder
        w.head = None
    t0, moof = time.perf_counter(), None
    for k, f in enumerate(data[:40]):
        w.write_converted(f)
        if moof is None and b"moof" in b"".join(chunks):
            moof = (k + 1, round((time.perf_counter() - t0) * 1e3))
    w.close()
    return {"run": "first fragment", "own encoder": head, "frames_written": moof[0], "ms": moof[1]}


def throughput(data: list[np.ndarray], width: int, height: int, gop_encoders: int) -> dict:
    chunks: list[bytes] = []
    t0 = time.perf_counter()
    w = mp4.Mp4Writer(chunks.append, width, height, 25, first_fragment=5, gop_encoders=gop_encoders)
    for f in data:
        w.write_converted(f)
    w.close()
    return {"run": "throughput", "gop_encoders": gop_encoders,
            "fps": round(len(data) / (time.perf_counter() - t0), 1), "bytes": sum(map(len, chunks))}


def gil(width: int, height: int) -> dict:
    """Two single-threaded encoders one after the other, then in two threads: PyAV releases the GIL if the second
    is about twice as fast (on a machine with two idle cores). Noise frames: each takes the encoder a while."""
    rng = np.random.default_rng(1)
    data = [rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8) for _ in range(30)]

    def encode():
        c = av.CodecContext.create("libx264", "w")
        c.width, c.height, c.pix_fmt, c.thread_count = width, height, "yuv420p", 1
        c.time_base, c.options = mp4.fractions.Fraction(1, 25), {"preset": "veryfast", "bf": "0"}
        for k, f in enumerate(data):
            frame = av.VideoFrame.from_ndarray(f, format="yuv420p")
            frame.pts = k
            c.encode(frame)
        c.encode(None)
    t0 = time.perf_counter()
    encode()
    encode()
    serial = time.perf_counter() - t0
    threads = [threading.Thread(target=encode) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"run": "two encoders", "one_after_the_other_s": round(serial, 2),
            "in_two_threads_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    width, height = (int(v) for v in os.environ.get("MP4_SIZE", "1280x720").split("x"))
    data = frames(int(os.environ.get("MP4_FRAMES", "125")), width, height)
    for _ in range(int(os.environ.get("MP4_RUNS", "3"))):
        for row in (first_fragment(data, width, height, False), first_fragment(data, width, height, True),
                    throughput(data, width, height, 1), throughput(data, width, height, 2)):
            print(json.dumps(row), flush=True)
    print(json.dumps(gil(width, height)), flush=True)


if __name__ == "__main__":
    main()
