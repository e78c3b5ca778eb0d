"""Cost per source in the prepared-source cache (issue 16), appended to bench/CACHE.md.

    python -m tools.bench_cache           720p and 1080p talking-head stand-ins (+ ../shared/data/yongen.mp4)
    python -m tools.bench_cache --long    a 10-minute 1080x1920 source (15000 frames at 25 fps) through prepare,
                                          with the service's default limits and cache cap (50 GiB)

For each source: prepare's speed; bytes per frame all in (every file of the entry), before (format 1: raw RGB
frames, crops and masks; computed from the sizes, which were exact) and after (format 2: the media file as
uploaded, compressed masks, mesh, boxes, the seek index); and the frame reader's speed, one reader in one thread,
walking the source forward and then backward as rendering does, on one core and on all of them.

The stand-in source: the scikit-image portrait swaying (small rotation, scale and shift, a mouth-region stretch
like speech) with temporal grain (BENCH_GRAIN, sigma 4) so x264 spends bits as on camera footage, H.264 crf 20 with x264's
default keyframe interval (250 frames: long GOPs, the reader's hard case backward).
"""
from __future__ import annotations

import argparse
import datetime
import fractions
import hashlib
import os
import platform
import sys
import tempfile
import time

import av
import cv2
import numpy as np

from lipsync_common.formats.source_cache import CROP, SourceCache
from services.preprocess.config import PreprocessConfig
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, prepare
from tools import synth
from tools.bench import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "CACHE.md")
GRAIN = float(os.environ.get("BENCH_GRAIN", "4"))   # temporal grain (sigma): ~6.5 Mbit/s at 1080p, like camera footage


def talking_head(path: str, n: int, size: tuple[int, int], fps: float = 25, crf: int = 20,
                 progress: bool = False) -> str:
    """Write the stand-in source (see the module docstring) with PyAV, frame by frame (no frames in memory)."""
    w, h = size
    side = int(min(w, 0.9 * h) * 0.9)
    face = cv2.resize(synth.face_image(), (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((h, w, 3), 96, np.uint8)
    x0, y0 = (w - side) // 2, (h - side) // 3
    canvas[y0:y0 + side, x0:x0 + side] = face
    rng = np.random.default_rng(0)
    grain = [np.round(rng.normal(0, GRAIN, (h, w, 3))).astype(np.int16) for _ in range(7)]
    cx, cy = x0 + side / 2, y0 + side / 2
    mouth = (int(x0 + 0.33 * side), int(y0 + 0.5 * side), int(x0 + 0.6 * side), int(y0 + 0.68 * side))
    t0 = time.perf_counter()
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast"}
        for i in range(n):
            t = i / fps
            img = canvas.copy()
            mx1, my1, mx2, my2 = mouth           # the lower lip region stretched down and back, as in speech
            open_ = 1.0 + 0.12 * max(0.0, np.sin(2 * np.pi * 3.1 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.4 * t))
            region = canvas[my1:my2, mx1:mx2]
            stretched = cv2.resize(region, (mx2 - mx1, int((my2 - my1) * open_)), interpolation=cv2.INTER_LINEAR)
            img[my1:my2, mx1:mx2] = stretched[:my2 - my1]
            m = cv2.getRotationMatrix2D((cx, cy), 2.0 * np.sin(2 * np.pi * 0.23 * t), 1.0 + 0.02 * np.sin(2 * np.pi * 0.11 * t))
            m[:, 2] += (12 * np.sin(2 * np.pi * 0.17 * t), 6 * np.sin(2 * np.pi * 0.29 * t))
            img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            img = np.clip(img.astype(np.int16) + grain[i % len(grain)], 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
            if progress and (i + 1) % 1000 == 0:
                print(f"  wrote {i + 1}/{n} frames, {(i + 1) / (time.perf_counter() - t0):.1f} frames/s", flush=True)
        for p in s.encode():
            c.mux(p)
    return path


def raw_bytes_v1(n: int, w: int, h: int) -> int:
    """An entry of format 1 (frames.u8 + crops.u8 + masks.u8 + boxes/has_face/mesh .npy + meta.json)."""
    return n * (h * w * 3 + CROP * CROP * 3 + CROP * CROP) + (128 + 16 * n) + (128 + n) + (128 + n * 468 * 2 * 4) + 400


def entry_files(path: str) -> dict[str, int]:
    return {e.name: e.stat().st_size for e in os.scandir(path) if e.is_file()}


def reader_speed(entry, cores: set[int] | None) -> dict:
    """One reader in this thread, forward over the source and then backward (rendering's walk)."""
    before = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)        # ffmpeg sizes its decoder and scaler threads from this
    try:
        n = entry.meta.num_frames
        with entry.frame_reader() as reader:
            t0 = time.perf_counter()
            for i in range(n):
                reader.get(i)
            fwd = time.perf_counter() - t0
            decoded = reader.stats["decoded"]
            t0 = time.perf_counter()
            for i in range(n - 1, -1, -1):
                reader.get(i)
            bwd = time.perf_counter() - t0
            return {"forward": n / fwd, "backward": n / bwd, "window": reader.window,
                    "backward_decodes": (reader.stats["decoded"] - decoded) / n}
    finally:
        os.sched_setaffinity(0, before)


def keyframe_interval(path: str) -> str:
    with av.open(path) as c:
        keys = [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.is_keyframe]
    return f"keyframes every {np.diff(keys).max()}" if len(keys) > 1 else "one keyframe (the first)"


def measure(label: str, video: str, tmp: str, landmarker: Landmarker, cfg: PreprocessConfig,
            long: bool = False) -> str:
    cache = SourceCache(os.path.join(tmp, "cache-" + hashlib.sha1(video.encode()).hexdigest()[:8]),
                        cfg.cache_max_bytes)
    digest = hashlib.sha256(open(video, "rb").read()).hexdigest()
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if long and time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  prepare: {done}/{total} frames", flush=True)
    t0 = time.perf_counter()
    meta, _ = prepare(video, digest, PrepareOptions(), cache, landmarker, cfg.max_pixels, cfg.max_frames,
                      progress=progress)
    prep_s = time.perf_counter() - t0
    entry = cache.get(meta.source_id)
    n, w, h = meta.num_frames, meta.width, meta.height
    files = entry_files(entry.path)
    total = sum(files.values())
    media_b = files["source.media"]
    masks_b = files["masks.z"] + files["mask_offsets.npy"]
    mesh_b = files["mesh.npy"]
    cache_total = sum(size for _, size, _ in cache.entries())
    row = {"label": label, "size": f"{w}x{h}", "frames": n, "fps": meta.fps, "faces": meta.frames_with_face,
           "gop": keyframe_interval(video), "kbps": media_b * 8 / (n / (meta.fps or 25)) / 1000,
           "prepare_s": prep_s, "before": raw_bytes_v1(n, w, h) / n, "after": total / n,
           "media": media_b / n, "masks": masks_b / n, "mesh": mesh_b / n,
           "rest": (total - media_b - masks_b - mesh_b) / n, "cache_total": cache_total}
    print(row, flush=True)
    if not long:
        row["one"] = reader_speed(entry, {sorted(os.sched_getaffinity(0))[0]})
        row["all"] = reader_speed(entry, None)
        print(row["one"], row["all"], flush=True)
    return row


def table(rows: list[dict]) -> list[str]:
    out = ["| source | frames | media | prepare | before, B/frame | after, B/frame (media + masks + mesh + rest) "
           "| reduction | reader fwd / bwd, 1 core | reader fwd / bwd, all cores | bwd decodes per frame |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speeds = ["-", "-", "-"]
        if "one" in r:
            speeds = [f"{r['one']['forward']:.0f} / {r['one']['backward']:.0f} fps",
                      f"{r['all']['forward']:.0f} / {r['all']['backward']:.0f} fps",
                      f"{r['all']['backward_decodes']:.2f} (window {r['all']['window']})"]
        out.append(
            f"| {r['label']} {r['size']} | {r['frames']} @ {r['fps']:g} fps, {r['faces']} with a face "
            f"| {r['kbps'] / 1000:.2f} Mbit/s, {r['gop']} "
            f"| {r['prepare_s']:.1f} s ({r['frames'] / r['prepare_s']:.1f} fps) "
            f"| {r['before'] / 1e6:.2f} MB | {r['after'] / 1e3:.1f} kB ({r['media'] / 1e3:.1f} + {r['masks'] / 1e3:.1f}"
            f" + {r['mesh'] / 1e3:.1f} + {r['rest'] / 1e3:.2f}) | {r['before'] / r['after']:.0f}x "
            f"| {speeds[0]} | {speeds[1]} | {speeds[2]} |")
    return out


def append(title: str, lines: list[str]) -> None:
    head = "" if os.path.exists(RESULTS) else (
        "# Prepared-source cache: cost per source\n\nWritten by `python -m tools.bench_cache` (`--long`: the "
        "10-minute source); newest at the bottom. Format 1 kept raw frames, crops and masks; format 2 keeps "
        "the uploaded media and decodes it again (lipsync_common/formats/source_cache.py). MuseTalk's reference "
        "latents, when computed, add 16 kB a frame (fp16) to either.\n")
    device = f"{cpu_name()}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), Python {platform.python_version()}"
    with open(RESULTS, "a") as f:
        f.write(head + f"\n## {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} - {title}\n\n{device}\n\n"
                + "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="the 10-minute 1080x1920 source through prepare")
    ap.add_argument("--frames", type=int, default=0, help="frames of the source(s) (default 250; --long 15000)")
    ap.add_argument("--keep", default="", help="folder for the sources and caches (kept); default a temp folder")
    args = ap.parse_args()
    cfg = PreprocessConfig()
    tmp = args.keep or tempfile.mkdtemp(prefix="bench-cache-")
    os.makedirs(tmp, exist_ok=True)
    landmarker = Landmarker()
    if args.long:
        n = args.frames or 15000
        video = os.path.join(tmp, f"long-{n}.mp4")
        t0 = time.perf_counter()
        if not os.path.exists(video):
            talking_head(video, n, (1080, 1920), progress=True)
        print(f"source written in {time.perf_counter() - t0:.0f} s: {os.path.getsize(video) / 1e6:.1f} MB", flush=True)
        row = measure("stand-in, 10 min", video, tmp, landmarker, cfg, long=True)
        lines = table([row]) + [
            "", f"Through `prepare` with the service defaults (MAX_PIXELS {cfg.max_pixels}, MAX_SOURCE_FRAMES "
            f"{cfg.max_frames}, CACHE_MAX_BYTES {cfg.cache_max_bytes / 1024**3:.0f} GiB): the cache holds "
            f"{row['cache_total'] / 1e6:.1f} MB for this source ({row['after'] * row['frames'] / 1e6:.1f} MB "
            f"the entry); format 1 would have needed {row['before'] * row['frames'] / 1e9:.1f} GB, "
            f"{'above' if row['before'] * row['frames'] > cfg.cache_max_bytes else 'within'} the cap. "
            f"Prepare wall time {row['prepare_s'] / 60:.1f} min ({row['frames'] / row['prepare_s']:.1f} frames/s)."]
        append(f"long source: {n} frames of 1080x1920", lines)
        print("\n".join(lines))
        return 0
    n = args.frames or 250
    rows = []
    for w, h in ((1280, 720), (1920, 1080)):
        video = talking_head(os.path.join(tmp, f"src{h}.mp4"), n, (w, h))
        rows.append(measure("stand-in", video, tmp, landmarker, cfg))
    yongen = os.path.join(synth.SHARED, "yongen.mp4")
    if os.path.isfile(yongen):
        rows.append(measure("yongen.mp4", yongen, tmp, landmarker, cfg))
    lines = table(rows)
    append(f"{n}-frame sources", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
