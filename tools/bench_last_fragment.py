"""What the last fragment (`LAST_FRAGMENT_S`) costs in the file: a video's first frames (250 by default) encoded as
render does (crf 18, veryfast, a 0.2 s first fragment) without a last fragment and with one of 0.2 s whose encoder
has each lookahead in turn; prints the file's bytes and the PSNR of the last fragment's frames and of all frames
against the input. CPU only; the render's end itself is timed by `RENDER_BENCH_ONLY=tails python -m tools.bench_render`.

    python -m tools.bench_last_fragment ../shared/data/yongen.mp4 [frames]
"""
from __future__ import annotations

import io
import json
import sys

import av
import numpy as np

from lipsync_common.formats import mp4


def psnr(decoded: list, frames: list) -> float:
    mse = np.mean([((a.astype(np.float64) - b) ** 2).mean() for a, b in zip(decoded, frames)])
    return float(10 * np.log10(255 ** 2 / mse))


def encode(frames: list, fps: float, last_fragment: int, lookahead: int) -> bytes:
    saved, mp4.TAIL_LOOKAHEAD = mp4.TAIL_LOOKAHEAD, lookahead
    try:
        out: list = []
        h, w = frames[0].shape[:2]
        writer = mp4.Mp4Writer(out.append, w, h, fps, first_fragment=round(0.2 * fps), last_fragment=last_fragment,
                               total_frames=len(frames))
        for f in frames:
            writer.write(f)
        writer.close()
        return b"".join(out)
    finally:
        mp4.TAIL_LOOKAHEAD = saved


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    n = int(argv[1]) if len(argv) > 1 else 250
    with av.open(argv[0]) as c:
        fps = float(c.streams.video[0].average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0))]
    last = round(0.2 * fps)
    tail_at = mp4.tail_start(round(0.2 * fps), max(1, round(fps)), len(frames), last)    # the writer's own rule
    for name, last_fragment, lookahead in [("none", 0, 0), *((f"0.2 s, lookahead {la}", last, la) for la in (0, 2))]:
        data = encode(frames, fps, last_fragment, lookahead)
        with av.open(io.BytesIO(data)) as c:
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        print(json.dumps({"run": f"{argv[0]}, {len(frames)} frames, last fragment {name}", "bytes": len(data),
                          "tail_from_frame": tail_at, "tail_psnr_db": round(psnr(decoded[tail_at:], frames[tail_at:]), 2),
                          "psnr_db": round(psnr(decoded, frames), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
