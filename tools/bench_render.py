"""Render stage alone on a synthetic 720p source (no face models needed): where its time goes.

Times, over 250 output frames in 8-frame messages: x264 alone on converted frames, composite + conversion in the
pool, the hot path's pieces, the first 8 crops to the first fragment, and Renderer.add/finish with several thread
and carry settings; last, the tail of a busy box's level (8 render processes fed at 75 frames/s each, the last crops
to the file closed) by x264 thread count and lookahead, and a burst's first fragments (8 renders whose heads come 25 ms
apart). `python -m tools.bench_render`;
`RENDER_BENCH_ONLY=busy` runs only those two parts; `RENDER_BENCH_ONLY=settings` only one render alone by x264
threads and decoder threads; `RENDER_BENCH_ONLY=tails` only the tail, by x264 threads (`RENDER_BENCH_TAIL_THREADS`,
"0": the render's own choice, or e.g. "6,12") and last fragment (`RENDER_BENCH_TAIL_LAST`, "0,0.2" s: without and
with one, `LAST_FRAGMENT_S`), three times each, `RENDER_BENCH_RENDERS` renders (8) fed at `RENDER_BENCH_FPS` (75) each.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np

from lipsync_common.formats import media, mp4
from lipsync_common.formats.source_cache import SourceCache, SourceMeta
from services.render.render import Renderer, frame_mask
from tools.out import save_json


def synthetic_entry(root: str, n: int = 250, w: int = 1280, h: int = 720):
    """(cache, entry, crops): an H.264 source of n smooth moving frames (x264's speed depends on the content;
    noise would be far slower than a face video) in the cache, and n generated-looking crops."""
    from tools import synth

    rng = np.random.default_rng(0)
    cache = SourceCache(root)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 6)
    video = synth.write_video(os.path.join(root, "source.mp4"), [np.roll(base, i * 3, axis=1) for i in range(n)])
    wr = cache.writer("cd" * 16, video)
    yy, xx = np.mgrid[:256, :256]
    mask = (((yy - 160) / 90.0) ** 2 + ((xx - 128) / 100.0) ** 2 < 1).astype(np.uint8) * 255
    _, frames = media.read_face_media(video, 10**9, 10**6, timestamps=True)
    crops = np.stack([cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (0, 0), 3)
                      for _ in range(n)])
    for i, (frame, pts, key) in enumerate(frames):
        box = (480 + i % 7, 160, 480 + i % 7 + 320, 480)
        wr.add(frame, pts, key, box, crops[i], mask, np.zeros((468, 2), np.float32), True)
    return cache, wr.commit(SourceMeta("cd" * 16, n, 25.0, w, h, False, n, (0, 0))), crops


def x264_encoder(threads: int = 0, kind: str = "FRAME"):
    """A 720p x264 encoder as the render's (veryfast, crf 18, 1 s GOPs, no B-frames); threads 0: x264's choice."""
    import fractions

    import av

    c = av.CodecContext.create("libx264", "w")
    c.width, c.height, c.pix_fmt = 1280, 720, "yuv420p"
    c.time_base, c.framerate = fractions.Fraction(1, 25), fractions.Fraction(25)
    c.options = mp4.x264_options(25, "veryfast", -1, 18)
    c.thread_type, c.thread_count = kind, threads
    return c


def x264_variants(conv: list, add) -> None:
    """x264 settings alone: thread counts, and two encoders taking alternate 1 s GOPs in two threads."""
    import threading

    import av

    make = x264_encoder

    def enc(c, frames):
        for i, d in frames:
            f = av.VideoFrame.from_ndarray(d, format="yuv420p")
            f.pts = i
            c.encode(f)
        c.encode(None)

    frames = list(enumerate(conv))
    t0 = time.perf_counter()
    for i, d in frames:
        av.VideoFrame.from_ndarray(d, format="yuv420p")
    add("VideoFrame.from_ndarray alone", time.perf_counter() - t0)
    for threads in (0, 6, 8, 12, 24, 32):
        c = make(threads)
        t0 = time.perf_counter()
        enc(c, frames)
        add(f"x264 alone, frame threads {threads or 'auto'}", time.perf_counter() - t0)
    for parts, threads in ((2, 8), (2, 0), (3, 6), (4, 4)):
        cs = [make(threads) for _ in range(parts)]
        gops = [[fr for fr in frames if (fr[0] // 25) % parts == k] for k in range(parts)]
        ts = [threading.Thread(target=enc, args=(c, g)) for c, g in zip(cs, gops)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        add(f"{parts} x264 encoders on alternate GOPs, threads {threads or 'auto'} each", time.perf_counter() - t0)


def hot_path_costs(frames_i420: list, entry, crops, add_ms) -> None:
    """The encoding thread's per-frame pieces (BENCHMARKS.md, sixth session): PyAV's copying from_ndarray against
    mp4.video_frame, composite_i420, opening a writer's two x264 encoders at 24 threads, 10 s of AAC."""
    import av

    from services.render.render import composite_i420
    n = len(frames_i420)
    masks = [frame_mask(entry, i) for i in range(n)]
    for name, fn in (("VideoFrame.from_ndarray", lambda f: av.VideoFrame.from_ndarray(f, format="yuv420p")),
                     ("mp4.video_frame", lambda f: mp4.video_frame(f, "yuv420p")),
                     ("composite_i420", None)):
        t0 = time.perf_counter()
        for i, f in enumerate(frames_i420):
            fn(f) if fn else composite_i420(f, crops[i], *masks[i])
        add_ms(f"{name}, ms per frame", (time.perf_counter() - t0) / n)
    t0 = time.perf_counter()
    mp4.Mp4Writer(lambda b: None, 1280, 720, 25.0, threads=24, first_fragment=5).abort()
    add_ms("Mp4Writer with its two x264 encoders opened (24 threads), ms", time.perf_counter() - t0)
    out = []
    speech_band = (np.random.default_rng(0).standard_normal((1, 160000)) * 0.1).astype(np.float32)
    w = mp4.Mp4Writer(out.append, 1280, 720, 25.0, audio=speech_band, audio_rate=16000)
    t0 = time.perf_counter()
    w.aac.take(None)
    add_ms("AAC of 10 s at 16 kHz (its own thread), ms", time.perf_counter() - t0)
    w.abort()


def first_fragment(entry, crops, add_ms, runs: int = 3) -> None:
    """From the first 8 crops to the first MP4 fragment (moof), with the renderer made 0.3 s before them (as the
    render service makes it at the call's config, while the generator makes the first crops) and 4 s of audio."""
    audio = (np.random.default_rng(0).standard_normal((1, 64000)) * 0.1).astype(np.float32)
    for k in range(runs):
        out, at = [], []

        def on_bytes(b, out=out, at=at):
            out.append(b)
            if not at and b"moof" in b"".join(out):
                at.append(time.perf_counter())
        r = Renderer(entry, 25.0, len(crops), on_bytes, threads=0, first_fragment_s=0.2)
        time.sleep(0.3)
        t0 = time.perf_counter()
        r.set_audio(audio, 16000)
        r.add(0, crops[:8])
        add_ms(f"first 8 crops -> first fragment, run {k + 1}, ms", (at[0] if at else time.perf_counter()) - t0)
        r.abort()


def head_encoder(frames_i420: list, add_ms, runs: int = 5) -> None:
    """The first fragment's own x264 (mp4.Mp4Writer's twin encoder): its 5 frames and the keyframe after them
    encoded and drained at once, with frame threads or slice threads (x264's choice of count), median of runs."""
    import statistics

    for kind in ("FRAME", "SLICE"):
        took = []
        for _ in range(runs):
            c = x264_encoder(0, kind)
            c.open()
            t0 = time.perf_counter()
            for i, data in enumerate(frames_i420[:6]):
                frame = mp4.video_frame(data, "yuv420p")
                frame.pts = i
                c.encode(frame)
            c.encode(None)
            took.append(time.perf_counter() - t0)
        add_ms(f"first fragment's x264, 6 frames encoded and drained, {kind.lower()} threads, median ms",
               statistics.median(took))


def _render(entry, crops, **kw) -> float:
    """Seconds of one Renderer's add/finish over every crop, in 8-frame messages."""
    r = Renderer(entry, 25.0, len(crops), lambda b: None, **kw)
    t0 = time.perf_counter()
    for i in range(0, len(crops), 8):
        r.add(i, crops[i:i + 8])
    r.finish()
    return time.perf_counter() - t0


def renders_in_a_row(entry, crops, add) -> None:
    """The same render 4 times in this process, the process's thread count after each: does a worker slow with age?"""
    for k in range(4):
        add(f"threads 4, render {k + 1} of 4 in a row: Renderer add/finish", _render(entry, crops, threads=4))
        print(json.dumps({"run": "threads of this process after it", "threads": _threads()}), flush=True)


def decoding(entry, crops, add) -> None:
    """The source's decoding alone, then inside the Renderer, with 1, 2 and ffmpeg's choice of decoder threads."""
    for decode_threads in (1, 2, 0):
        t0 = time.perf_counter()
        with entry.frame_reader(threads=decode_threads) as reader:
            for i in range(len(crops)):
                reader.get_i420(i)
        add(f"source decoding alone (I420), decoder threads {decode_threads or 'auto'}", time.perf_counter() - t0)
        add(f"threads 4, decoder threads {decode_threads or 'auto'}: Renderer add/finish",
            _render(entry, crops, threads=4, decode_threads=decode_threads))


def _paced_tail(root: str, source_id: str, x264_threads: int, lookahead: int, fps: float,
                last_fragment_s: float = 0.0) -> float:
    """One render fed 8 crops at a time at `fps` (a request's share of a busy GPU), then finish(): seconds from the
    last crops to the file closed (x264's drain: one frame per frame thread and the lookahead's frames)."""
    entry = SourceCache(root).get(source_id)
    crops = entry.crops_at(range(entry.meta.num_frames))
    r = Renderer(entry, 25.0, len(crops), lambda b: None, threads=2, x264_threads=x264_threads,
                 x264_lookahead=lookahead, last_fragment_s=last_fragment_s)
    t0 = time.perf_counter()
    for i in range(0, len(crops), 8):
        time.sleep(max(0.0, t0 + i / fps - time.perf_counter()))
        r.add(i, crops[i:i + 8])
    t1 = time.perf_counter()
    r.finish()
    return time.perf_counter() - t1


TAIL_SETTINGS = ((24, -1, 0.0), (12, -1, 0.0), (6, -1, 0.0), (12, 0, 0.0), (12, -1, 0.2), (12, -1, 0.0), (12, -1, 0.2))


def tails(root: str, source_id: str, add_ms, renders: int = 8, fps: float = 75.0, settings=TAIL_SETTINGS) -> None:
    """The level's tail: `renders` render processes at once (as RENDER_WORKERS on a GPU box), each fed at `fps`,
    the last crops -> file closed, by x264 thread count (0: the render's own choice), lookahead and last fragment
    (`LAST_FRAGMENT_S`), p50 and max over the renders."""
    import statistics
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(renders) as pool:
        for threads, lookahead, last_s in settings:
            took = [f.result() for f in [pool.submit(_paced_tail, root, source_id, threads, lookahead, fps, last_s)
                                         for _ in range(renders)]]
            name = f"tail, {renders} renders at once at {fps:g} frames/s each, x264 threads {threads or 'auto'}, " \
                   f"lookahead {'10 (veryfast)' if lookahead < 0 else lookahead}, last fragment {last_s:g} s: " \
                   "last crops -> file closed"
            add_ms(f"{name}, p50 ms", statistics.median(took))
            add_ms(f"{name}, max ms", max(took))


def _staggered_head(root: str, source_id: str, x264_threads: int, decode_threads: int, start: float,
                    fps: float) -> float:
    """One render made as the service makes it (at the call's config), its 6-crop head added at `start`
    (time.monotonic(), the same clock in every process), then the rest fed at `fps`: seconds from the head to the
    first fragment (moof) out."""
    entry = SourceCache(root).get(source_id)
    crops = entry.crops_at(range(entry.meta.num_frames))
    out, at = [], []

    def on_bytes(b):
        out.append(b)
        if not at and b"moof" in b"".join(out):
            at.append(time.monotonic())
    r = Renderer(entry, 25.0, len(crops), on_bytes, x264_threads=x264_threads, decode_threads=decode_threads,
                 first_fragment_s=0.2)
    time.sleep(max(0.0, start - time.monotonic()))
    t0 = time.monotonic()
    r.add(0, crops[:6])
    for i in range(6, len(crops), 8):
        time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
        r.add(i, crops[i:i + 8])
    r.finish()
    return at[0] - t0


def heads(root: str, source_id: str, add_ms, renders: int = 8, fps: float = 75.0, gap_s: float = 0.025) -> None:
    """A burst's first fragments: `renders` render processes (as RENDER_WORKERS on a GPU box), their 6-crop heads
    coming `gap_s` apart (the GPU's head batches), each render then fed at `fps`; head -> first fragment (p50, max),
    by x264 threads and decoder threads, alternating."""
    import statistics
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(renders) as pool:
        for threads, decode in ((12, 1), (12, 2), (6, 1), (12, 1), (12, 2), (6, 1)):
            start = time.monotonic() + 1.0         # every render made and its decoder started before its head
            took = [f.result() for f in [pool.submit(_staggered_head, root, source_id, threads, decode,
                                                     start + k * gap_s, fps) for k in range(renders)]]
            name = f"first fragment, {renders} renders, heads {1000 * gap_s:g} ms apart, then {fps:g} frames/s " \
                   f"each, x264 threads {threads}, decoder threads {decode}: head -> moof"
            add_ms(f"{name}, p50 ms", statistics.median(took))
            add_ms(f"{name}, max ms", max(took))


def encoder_thread_settings(entry, crops, add) -> None:
    """Renderer add/finish with x264's thread count as the render sets it (1.5 per core, at most 12) and as x264
    chooses (1.5 per core), alternating after a warm-up: the same count below 9 cores, so the same speed."""
    import services.render.render as render

    ours = render.encoder_threads
    _render(entry, crops, threads=4)
    for k in range(4):
        for label, choose in (("x264's own", lambda setting: setting), (f"the render's ({ours(0)})", ours)):
            render.encoder_threads = choose
            try:
                add(f"x264 threads {label}, run {k + 1} of 4: Renderer add/finish", _render(entry, crops, threads=4))
            finally:
                render.encoder_threads = ours


def render_settings(entry, crops, add) -> None:
    """Renderer add/finish by x264 threads and decoder threads (composite threads 4, as on >= 8 cores), the four
    settings in turn, three rounds after a warm-up: one render alone, as a single request on an idle box."""
    _render(entry, crops, threads=4)
    for k in range(3):
        for x264, decode in ((12, 1), (6, 1), (6, 2), (12, 2)):
            add(f"x264 threads {x264}, decoder threads {decode}, round {k + 1} of 3: Renderer add/finish",
                _render(entry, crops, threads=4, x264_threads=x264, decode_threads=decode))


def _threads() -> int:
    """Threads of this process, the native ones (x264's, ffmpeg's) included (Linux)."""
    try:
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith("Threads:")))
    except (OSError, StopIteration):
        return -1


def one_part(only: str, root: str, entry, crops, add) -> int:
    if only == "busy":              # a busy box: a burst's first fragments and a level's tail
        show = lambda name, s: print(json.dumps({"run": name, "ms": round(1000 * s, 1)}), flush=True)  # noqa: E731
        heads(root, entry.meta.source_id, show)
        tails(root, entry.meta.source_id, show)
    elif only == "settings":        # one render alone by x264 threads and decoder threads
        render_settings(entry, crops, add)
    elif only == "tails":           # the tail alone, on any box: RENDER_BENCH_RENDERS renders at RENDER_BENCH_FPS each
        show = lambda name, s: print(json.dumps({"run": name, "ms": round(1000 * s, 1)}), flush=True)  # noqa: E731
        threads = [int(t) for t in os.environ.get("RENDER_BENCH_TAIL_THREADS", "0").split(",")]
        lasts = [float(x) for x in os.environ.get("RENDER_BENCH_TAIL_LAST", "0,0.2").split(",")]
        tails(root, entry.meta.source_id, show, int(os.environ.get("RENDER_BENCH_RENDERS", "8")),
              float(os.environ.get("RENDER_BENCH_FPS", "75")), tuple((t, -1, x) for t in threads for x in lasts) * 3)
    else:
        raise SystemExit(f"RENDER_BENCH_ONLY is 'busy', 'settings' or 'tails', not {only!r}")
    return 0


def main() -> int:
    n = 250
    tmp = tempfile.mkdtemp()
    _, entry, crops = synthetic_entry(os.path.join(tmp, "cache"), n)
    rows = []

    def add(name, seconds):
        rows.append({"run": name, "fps": round(n / seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)

    only = os.environ.get("RENDER_BENCH_ONLY", "")     # one part (seconds, not minutes)
    if only:
        return one_part(only, os.path.join(tmp, "cache"), entry, crops, add)

    wr = mp4.Mp4Writer(lambda b: None, 1280, 720, 25.0)
    with entry.frame_reader() as reader:
        frames = [reader.get(i) for i in range(n)]
    conv = [wr.convert(f) for f in frames]
    t0 = time.perf_counter()
    for c in conv:
        wr.write_converted(c)
    wr.close()
    add("x264 alone (converted frames)", time.perf_counter() - t0)
    x264_variants(conv, add)
    with entry.frame_reader() as reader:
        i420 = [reader.get_i420(i) for i in range(n)]
    def add_ms(name, seconds):
        rows.append({"run": name, "ms": round(1000 * seconds, 3)})
        print(json.dumps(rows[-1]), flush=True)
    hot_path_costs(i420, entry, crops, add_ms)
    head_encoder(i420, add_ms)
    first_fragment(entry, crops, add_ms)
    for threads, carry in ((0, None), (4, 0), (4, None), (6, None), (8, None)):
        r = Renderer(entry, 25.0, n, lambda b: None, threads=threads, carry=carry)
        jobs = [(frames[i], crops[i], frame_mask(entry, i)) for i in range(n)]
        t0 = time.perf_counter()
        list(map(r._frame, jobs)) if r._pool is None else list(r._pool.map(r._frame, jobs))
        comp = time.perf_counter() - t0
        r.abort()
        r = Renderer(entry, 25.0, n, lambda b: None, threads=threads, carry=carry)
        t0 = time.perf_counter()
        for i in range(0, n, 8):
            r.add(i, crops[i:i + 8])
        r.finish()
        add(f"threads {threads} carry {r._carry}: composite+convert", comp)
        add(f"threads {threads} carry {r._carry}: Renderer add/finish", time.perf_counter() - t0)
    renders_in_a_row(entry, crops, add)
    decoding(entry, crops, add)
    encoder_thread_settings(entry, crops, add)
    render_settings(entry, crops, add)
    heads(os.path.join(tmp, "cache"), entry.meta.source_id, add_ms)
    tails(os.path.join(tmp, "cache"), entry.meta.source_id, add_ms)
    save_json("render_bench.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
