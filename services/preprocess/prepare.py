"""Prepare a face source: decode, landmarks, MuseTalk crop boxes and masks, into the source cache (which keeps
the media file itself and decodes it again for frames; crops are stored losslessly)."""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lipsync_common.formats import frame_reader, media
from lipsync_common.formats.source_cache import SourceCache, SourceMeta
from services.preprocess import crops as C
from lipsync_common.faces.landmarks import NUM_POINTS, Landmarker, to_68
from services.preprocess.smoothing import LandmarkSmoother

PIPELINE_VERSION = "prep-2"  # bump when a change alters what is stored for the same input


class NoFaceError(ValueError):
    """No face in any frame of the source."""


class Cancelled(Exception):
    """should_stop() said stop (the call was cancelled): the work ended at the next frame, nothing was stored."""


@dataclass(frozen=True)
class PrepareOptions:
    model_version: str = "v15"   # "v1" or "v15"
    bbox_shift: int = 0
    extra_margin: int = 10       # used for v15 only
    face_index: int = -1         # -1 = the largest face
    smoothing: bool = True       # One Euro filter on the landmarks (smoothing.py)
    face_hint: tuple[float, float, float, float] | None = None   # x1, y1, x2, y2: the face overlapping it most
    mask: str = "landmarks"      # "landmarks" (lower face from Face Mesh) or "bisenet" (face parsing, weights needed)
    parsing_mode: str = "jaw"    # the bisenet mask's region (MuseTalk v1.5): "jaw" or "raw"; no-op for "landmarks"
    left_cheek_width: int = 90   # jaw mode's cheek columns (MuseTalk v1.5); no-op for "landmarks"
    right_cheek_width: int = 90

    def effective(self) -> dict:
        """Everything that decides what is stored: the cache key (source_id) is made of it."""
        return {"model_version": self.model_version, "bbox_shift": self.bbox_shift,
                "extra_margin": self.extra_margin if self.model_version == "v15" else 0,
                "face_index": self.face_index, "smoothing": self.smoothing,
                "face_hint": list(self.face_hint) if self.face_hint else None, "mask": self.mask,
                "parsing_mode": self.parsing_mode, "left_cheek_width": self.left_cheek_width,
                "right_cheek_width": self.right_cheek_width, "pipeline": PIPELINE_VERSION}


def source_id(media_sha256: str, opts: PrepareOptions) -> str:
    key = media_sha256 + json.dumps(opts.effective(), sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def prepare(media_path: str, media_sha256: str, opts: PrepareOptions, cache: SourceCache,
            landmarker: Landmarker, max_pixels: int, max_frames: int,
            progress: Callable[[int, int], None] | None = None, parser=None,
            should_stop: Callable[[], bool] | None = None) -> tuple[SourceMeta, bool]:
    """Returns (meta, was_cached). Raises media.MediaError for unusable media, NoFaceError without a face.
    parser: a face_parsing.FaceParser, required when opts.mask == "bisenet".
    should_stop: asked before each frame; when it returns True the work stops there and Cancelled is raised."""
    if opts.mask == "bisenet" and parser is None:
        raise ValueError("mask 'bisenet' needs the face-parsing weights (FaceParser)")
    sid = source_id(media_sha256, opts)
    if cache.has(sid):
        return cache.get(sid).meta, True
    info, frames = media.read_face_media(media_path, max_pixels=max_pixels, max_frames=max_frames, timestamps=True)
    writer = cache.writer(sid, media_path)
    try:
        run = _Preparation(opts, info, writer, parser, progress)
        run.track(landmarker, frames, should_stop)
        if not run.lm68_found:
            raise NoFaceError(f"no face was found in any of the {run.n} frame(s) of the face media")
        meta = SourceMeta(
            source_id=sid, num_frames=run.n, fps=info.fps, width=info.width, height=info.height,
            is_image=info.is_image, frames_with_face=len(run.lm68_found),
            bbox_shift_range=C.bbox_shift_range(np.stack(run.lm68_found)), options=opts.effective())
        writer.commit(meta)
    except BaseException:
        writer.abort()
        raise
    return meta, False


class _Preparation:
    """One source's frames through landmarks, crop boxes, crops, masks and the cache writer. Three stages overlap:
    decoding (a prefetch thread + ffmpeg's threads), landmarks (`track`: tracking is sequential), crops/masks/writes
    (one worker, so the cache files stay in frame order)."""

    def __init__(self, opts: PrepareOptions, info, writer, parser, progress):
        self.opts, self.info, self.writer, self.parser, self.progress = opts, info, writer, parser, progress
        self.eff = opts.effective()
        self.lm68_found: list[np.ndarray] = []
        self.n = 0
        self.pending: deque = deque()
        self.empty = (np.zeros((C.CROP, C.CROP, 3), np.uint8), np.zeros((C.CROP, C.CROP), np.uint8),
                      np.full((NUM_POINTS, 2), np.nan, np.float32))

    def track(self, landmarker: Landmarker, frames, should_stop) -> None:
        opts, info = self.opts, self.info
        smoother = LandmarkSmoother(info.fps) if opts.smoothing and not info.is_image else None
        with landmarker.session(static=info.is_image) as session, ThreadPoolExecutor(1) as post, \
                contextlib.closing(frame_reader.prefetch(frames)) as decoded_frames:
            session.hint = opts.face_hint
            for decoded in decoded_frames:
                if should_stop is not None and should_stop():
                    raise Cancelled(f"cancelled after {self.n} frame(s)")
                pts = session.process(decoded[0], opts.face_index)
                if smoother is not None:
                    if pts is None:
                        smoother.reset()
                    else:
                        pts = smoother(pts)
                self.pending.append(post.submit(self.finish, decoded, pts))
                self.collect(16)
            self.collect(0)

    def collect(self, limit: int) -> None:
        while len(self.pending) > limit:
            lm68 = self.pending.popleft().result()
            if lm68 is not None:
                self.lm68_found.append(lm68)
            self.n += 1
            if self.progress is not None:
                self.progress(self.n, self.info.frames_hint)

    def finish(self, decoded: tuple, pts: np.ndarray | None) -> np.ndarray | None:
        """Crop box, crop, mask and cache write of one frame (in order, in one worker thread)."""
        frame, frame_pts, keyframe = decoded
        box = None
        if pts is not None:
            lm68 = to_68(pts)
            try:
                box = C.crop_box(lm68, self.info.width, self.info.height, self.eff["bbox_shift"],
                                 self.eff["extra_margin"])
            except ValueError:
                box = None  # face at the very edge: pass the frame through
        if box is None:
            self.writer.add(frame, frame_pts, keyframe, (0, 0, 0, 0), *self.empty, False)
            return None
        mesh_crop = C.to_crop_coords(pts, box)
        crop = C.crop_face(frame, box)
        o = self.opts
        # the crop is exactly the face box: blur 0.15 of its width = MuseTalk's 0.1 on a 1.5x crop
        mask = (self.parser.mask(crop, blur_frac=0.15, mode=o.parsing_mode, left_cheek_width=o.left_cheek_width,
                                 right_cheek_width=o.right_cheek_width)
                if o.mask == "bisenet" else C.lower_face_mask(mesh_crop))
        self.writer.add(frame, frame_pts, keyframe, box, crop, mask, mesh_crop, True)
        return lm68
