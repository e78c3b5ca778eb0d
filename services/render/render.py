"""Paste generated crops back into the source frames and encode the MP4 (with the audio) as it goes."""
from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np

from lipsync_common.cores import usable_cores
from lipsync_common.formats import frame_reader, mp4
from lipsync_common.formats.source_cache import SourceEntry, source_frame


class RenderError(ValueError):
    pass


def default_threads() -> int:
    """Compositing threads per render: on a machine with cores to spare (x264's frame threads take the
    rest), 4 threads took 720p rendering from 260 to 336 frames/s on 16 cores; on 2 cores they only slow it.
    Cores are those this process may use (affinity and cgroup CPU quota: a pod's CPU limit, not its node's)."""
    return 4 if usable_cores() >= 8 else 0


# x264's frame threads stopped adding speed at 12 on a 16-core H200 box (720p: 520.7 frames/s at 12, 523.5 at
# x264's own 24) while each one holds a frame back: more only lengthen the wait for a render's last frames (an A/B/A
# of the whole service there: first chunk p95 at 8 at once 284-290 ms with 12, 330-344 with 24; BENCHMARKS.md)
X264_MAX_THREADS = 12
# With several renders at once on the box (RENDER_THREADS_BY_LOAD), each gets its share of the cores, but at least
# this many: 6 gave a burst of 8 the best first fragments (BENCHMARKS.md, tenth session: heads p50 75-132 ms, against
# 96-233 with 12) and is all a render needs at 1/8 of the GPU's 600 frames/s
X264_LOAD_MIN_THREADS = 6


def encoder_threads(setting: int, renders: int = 1) -> int:
    """x264's frame threads per render: setting > 0 as set; 0 = 1.5 per usable core up to X264_MAX_THREADS (on 2
    cores 3, as x264's own choice), and with `renders` running on the box at once (this one included) their share of
    those, at least X264_LOAD_MIN_THREADS."""
    if setting > 0:
        return setting
    per_box = usable_cores() * 3 // 2
    return max(1, min(X264_MAX_THREADS, per_box, max(X264_LOAD_MIN_THREADS, per_box // max(1, renders))))


def decoder_threads(setting: int, renders: int = 1) -> int:
    """ffmpeg threads decoding a render's source: setting >= 0 as set (0: ffmpeg's choice); -1 = 2 on >= 8 usable
    cores for each 8 of them a render has (one render on 8-15 cores, two on 16-23, ...), else 1. Two frame threads
    took one render alone from 280-360 to 330-430 frames/s on five 16-core H200 boxes and cost first chunks under a
    burst (BENCHMARKS.md, tenth session); on 2 cores they cost more CPU than they save (bench/CACHE.md)."""
    if setting >= 0:
        return setting
    return 2 if renders <= usable_cores() // 8 else 1


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool(threads: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="composite")
        return _pool


def frame_mask(entry: SourceEntry, idx: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The blend alpha of source frame idx in frame pixels: (box, uint8 [h, w]); None without a face."""
    if not entry.has_face[idx]:
        return None
    x1, y1, x2, y2 = (int(v) for v in entry.boxes[idx])
    return (x1, y1, x2, y2), cv2.resize(entry.mask(idx), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)


def match_color(gen: np.ndarray, ref: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift and scale each channel of gen so its mean and spread under weight equal ref's (Reinhard-style
    statistics transfer in RGB). Evens out a colour cast of the generated face against the frame."""
    w = weight.astype(np.float32)[..., None] if weight.ndim == 2 else weight.astype(np.float32)
    total = float(w.sum())
    if total < 1:
        return gen
    g, r = gen.astype(np.float32), ref.astype(np.float32)
    gm, rm = (g * w).sum((0, 1)) / total, (r * w).sum((0, 1)) / total
    gs = np.sqrt(((g - gm) ** 2 * w).sum((0, 1)) / total) + 1e-3
    rs = np.sqrt(((r - rm) ** 2 * w).sum((0, 1)) / total)
    return np.clip((g - gm) * np.clip(rs / gs, 0.5, 2.0) + rm, 0, 255).round().astype(np.uint8)


def _extent(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1): the rows and columns where alpha is not 0 (half-open), None when it is 0 everywhere. From
    the rows' and columns' any(), ~20x faster than np.nonzero of the whole mask at 720p (render's hot path)."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _block_mean(a: np.ndarray) -> np.ndarray:
    """The mean of each 2x2 block of a uint16 array, rounded half to even (as numpy's round of the float mean),
    in integers: the chroma planes' alpha."""
    s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    q, r = s >> 2, s & 3
    return q + (r > 2) + ((r == 2) & (q & 1).astype(bool))


def composite(frame: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray,
              color_match: bool = False) -> np.ndarray:
    """Blend a 256x256 crop into a copy of frame inside box; where alpha is 0 the source pixel is kept exactly.
    color_match: first match the crop's colour statistics under the mask to the frame's (match_color)."""
    x1, y1, x2, y2 = box
    out = np.array(frame, copy=True)
    extent = _extent(alpha)
    if extent is None:
        return out
    r0, r1, c0, c1 = extent
    crop_full = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    a = alpha[r0:r1, c0:c1, None].astype(np.uint16)
    region = out[y1 + r0:y1 + r1, x1 + c0:x1 + c1]
    gen = crop_full[r0:r1, c0:c1]
    if color_match:
        gen = match_color(gen, region, alpha[r0:r1, c0:c1])
    gen = gen.astype(np.uint16)
    region[:] = ((gen * a + region.astype(np.uint16) * (255 - a) + 127) // 255).astype(np.uint8)
    return out


def _planes(i420: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a packed I420 array."""
    flat = i420.reshape(-1)
    q = h * w // 4
    return (flat[:h * w].reshape(h, w), flat[h * w:h * w + q].reshape(h // 2, w // 2),
            flat[h * w + q:].reshape(h // 2, w // 2))


def composite_i420(i420: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int],
                   alpha: np.ndarray, inplace: bool = False) -> np.ndarray:
    """`composite` for a frame kept as the decoder's I420 planes (H * 3 / 2, W; H and W even), blending in YCbCr:
    only the masked region is touched (the generated crop converted there), the rest of the frame is the source's
    own samples, byte for byte, with no RGB round trip. Luma blends per pixel with alpha, chroma per 2x2 block
    with the block's mean alpha. Blending is linear, so this equals blending in RGB up to rounding (BT.601, as the
    RGB path's I420 conversion). inplace: blend into i420 itself (an array no one else reads) instead of a copy."""
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    x1, y1, x2, y2 = box
    out = i420 if inplace else np.array(i420, copy=True)
    extent = _extent(alpha)
    if extent is None:
        return out
    # the masked region in frame pixels, widened to even bounds (whole chroma blocks)
    top, bottom = (y1 + extent[0]) // 2 * 2, min(h, (y1 + extent[1] + 1) // 2 * 2)
    left, right = (x1 + extent[2]) // 2 * 2, min(w, (x1 + extent[3] + 1) // 2 * 2)
    a = np.zeros((bottom - top, right - left), np.uint16)      # alpha over that region (0 outside the box)
    ay0, ax0 = max(top, y1), max(left, x1)
    ay1, ax1 = min(bottom, y2), min(right, x2)
    a[ay0 - top:ay1 - top, ax0 - left:ax1 - left] = alpha[ay0 - y1:ay1 - y1, ax0 - x1:ax1 - x1]
    gen = np.zeros((bottom - top, right - left, 3), np.uint8)
    crop_full = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    gen[ay0 - top:ay1 - top, ax0 - left:ax1 - left] = crop_full[ay0 - y1:ay1 - y1, ax0 - x1:ax1 - x1]
    g = cv2.cvtColor(gen, cv2.COLOR_RGB2YUV_I420)            # (rh * 3 / 2, rw) planes of the region
    rh, rw = bottom - top, right - left
    ac = _block_mean(a)
    y, u, v = _planes(out, h, w)
    gy, gu, gv = _planes(g, rh, rw)
    for plane, gen_plane, weight, (r0, c0) in ((y, gy, a, (top, left)), (u, gu, ac, (top // 2, left // 2)),
                                               (v, gv, ac, (top // 2, left // 2))):
        region = plane[r0:r0 + gen_plane.shape[0], c0:c0 + gen_plane.shape[1]]
        region[:] = ((gen_plane.astype(np.uint16) * weight + region.astype(np.uint16) * (255 - weight) + 127)
                     // 255).astype(np.uint8)
    return out


class Renderer:
    """Receives crops for output frames in order, composites and encodes each as soon as it arrives."""

    def __init__(self, entry: SourceEntry, fps: float, num_frames: int, on_bytes: Callable[[bytes], None],
                 lossless_rgb: bool = False, crf: int = 18, audio: np.ndarray | None = None, audio_rate: int = 0,
                 threads: int | None = None, color_match: bool = False, carry: int | None = None,
                 preset: str = "veryfast", x264_threads: int = 0, first_fragment_s: float = 0.0,
                 x264_lookahead: int = -1, decode_threads: int = -1, gop_encoders: int = 1,
                 last_fragment_s: float = 0.0):
        self.entry = entry
        self.color_match = color_match
        threads = default_threads() if threads is None else threads
        self._pool = _shared_pool(threads) if threads > 0 else None
        self.fps = fps
        self.num_frames = num_frames
        self.next_frame = 0
        m = entry.meta
        self.writer = mp4.Mp4Writer(on_bytes, m.width, m.height, fps, lossless_rgb=lossless_rgb, crf=crf,
                                      audio=audio, audio_rate=audio_rate, preset=preset,
                                      threads=encoder_threads(x264_threads), lookahead=x264_lookahead,
                                      first_fragment=round(first_fragment_s * fps), gop_encoders=gop_encoders,
                                      last_fragment=round(last_fragment_s * fps), total_frames=num_frames)
        self._decode_threads = decoder_threads(decode_threads)
        self.reader_closed = False
        # H.264 output takes I420: frames that decode to plain yuv420p skip the RGB round trip (colour matching
        # needs RGB statistics, lossless RGB output needs RGB)
        self._i420 = not lossless_rgb and not color_match
        self.encoded = 0                      # frames handed to the encoder (next_frame: frames accepted)
        self._backlog: collections.deque = collections.deque()   # composite futures not yet encoded, in order
        self._carry = carry if carry is not None else max(threads, 1) * 2
        # add/finish run in worker threads; abort may come from a cancelled call at any moment and
        # must never close the encoder under a running add
        self._lock = threading.Lock()
        self._closed = False
        # the source frames (and their blend masks) this output shows, decoded ahead in a thread of their own, so
        # decoding overlaps compositing and x264 instead of sitting on the encoding thread's path; it starts now
        # and reads this object's settings: last, once they are all set
        self._source = frame_reader.prefetch(self._source_frames(), depth=8)

    def set_audio(self, audio: np.ndarray, rate: int) -> None:
        """The sound track (float32 [channels, samples]) of a renderer made before it was known; before add."""
        with self._lock:
            self.writer.set_audio(audio, rate)

    def add(self, first_frame: int, crops: np.ndarray) -> None:
        with self._lock:
            if self._closed:
                raise RenderError("the render was stopped")
            self._add(first_frame, crops)

    def _add(self, first_frame: int, crops: np.ndarray) -> None:
        if first_frame != self.next_frame:
            raise RenderError(f"crops for frame {first_frame} arrived, expected frame {self.next_frame}")
        if self.next_frame + len(crops) > self.num_frames:
            raise RenderError(f"more crops than the {self.num_frames} frames configured")
        jobs = []
        for crop in crops:
            frame, bm = next(self._source)
            jobs.append((frame, crop, bm))
        self.next_frame += len(jobs)
        if self._pool is None:
            for job in jobs:
                self._write(self._frame(job))
            return
        # composite + colour conversion in parallel; encoding stays in order, in this thread. The last
        # `carry` frames are left compositing when add returns: the next add (or finish) encodes them, so the
        # pool keeps working across messages instead of draining at the end of every batch
        self._backlog.extend(self._pool.submit(self._frame, job) for job in jobs)
        # until the first fragment is out (a player waits for it) every frame that came is encoded now
        carry = self._carry if self.encoded > self.writer.first_fragment else 0
        while len(self._backlog) > carry:
            self._write(self._backlog.popleft().result())

    def _source_frames(self):
        """(source frame, blend mask) of every output frame in order; runs in the prefetch thread, which owns the
        reader (closing the generator closes it there)."""
        m = self.entry.meta
        masks: dict[int, tuple | None] = {}
        try:
            # decoder threads: decoder_threads(), 1 on small boxes (this thread already decodes beside x264)
            with self.entry.frame_reader(threads=self._decode_threads) as reader:
                for t in range(self.num_frames):
                    idx = source_frame(t, m.num_frames, m.fps, self.fps)
                    if idx not in masks:
                        if len(masks) >= 256:   # output frames walk the source in order: keep the recent masks
                            del masks[next(iter(masks))]
                        masks[idx] = frame_mask(self.entry, idx)
                    frame = reader.get_i420(idx) if self._i420 else None
                    yield (reader.get(idx) if frame is None else frame), masks[idx]
        finally:
            self.reader_closed = True

    def _write(self, data: np.ndarray) -> None:
        self.writer.write_converted(data)
        self.encoded += 1

    def _frame(self, job: tuple) -> np.ndarray:
        frame, crop, bm = job
        if frame.ndim == 2:          # the decoder's I420 planes (this frame's own copy): blended in place
            return frame if bm is None else composite_i420(frame, crop, bm[0], bm[1], inplace=True)
        return self.writer.convert(frame if bm is None else composite(frame, crop, bm[0], bm[1], self.color_match))

    def finish(self) -> None:
        with self._lock:
            if self.next_frame != self.num_frames:
                raise RenderError(f"only {self.next_frame} of {self.num_frames} frames received")
            while self._backlog:
                self._write(self._backlog.popleft().result())
            self._closed = True
            self._source.close()
            self.writer.close()

    def abort(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._source.close()
            while self._backlog:   # let running composites end; their frames are not kept
                f = self._backlog.popleft()
                f.cancel()
            self.writer.abort()
