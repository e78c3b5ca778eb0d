"""Frames of a prepared source read again from its own media, by index, in any order, bit-exactly (checked by
timestamp and fingerprint), and `prefetch` to decode ahead in a thread."""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Iterator

import av
import numpy as np

from lipsync_common.formats.media import MediaError, _open_face, _upright_rgb, frame_check

log = logging.getLogger("media")

NO_PTS = np.iinfo(np.int64).min    # "the container gave no timestamp" in a pts array


class _Landed(Exception):
    """A seek landed somewhere other than the keyframe asked for (its index is the argument)."""


class FrameReader:
    """The frames of a face media file by index, decoded again exactly as read_face_media decoded them (same
    decoder settings, same conversion, rotation turned upright), for a caller that walks them mostly in order,
    forward or backward, possibly skipping or repeating frames.

    Forward it keeps decoding sequentially. For a frame behind (or far ahead) it seeks to the closest keyframe
    at or before it, using the presentation times recorded when the frames were first decoded (`pts`,
    `keyframes`), and decodes forward to it, keeping the last `window` decoded frames (still in the decoder's
    format, converted to RGB when asked for) so that a backward walk costs a few forward decodes even with long
    keyframe intervals while memory stays bounded. A seek that lands wrong (a timestamp that differs, or a
    frame whose `checks` fingerprint differs) is never used again: the reader falls back to an earlier keyframe,
    ultimately to decoding from the start and counting frames, so a frame is always the one asked for.

    One thread at a time; returned arrays are read-only (the same array when a frame is asked for twice in a
    row). `close` when done (also a context manager).
    """

    def __init__(self, path: str, num_frames: int, pts=None, keyframes=None, checks=None,
                 size: tuple[int, int] | None = None, fd: int | None = None, window: int = 0,
                 window_bytes: int = 128 << 20, max_window: int = 48, seek_cost: int = 8, threads: int = 0):
        """size: the expected (width, height); fd: an open descriptor of path to read instead (the reader keeps
        a duplicate: the file stays readable if path is deleted meanwhile); window: frames kept (0: as many as
        fit in window_bytes, up to max_window); seek_cost: frames a seek is worth (decoding forward is preferred
        to a seek that saves fewer)."""
        self.path = path
        self._fd = os.dup(fd) if fd is not None else os.open(path, os.O_RDONLY)
        self.num_frames = int(num_frames)
        self.size = size
        self._pts = None if pts is None else np.asarray(pts, np.int64)
        self._seek_points = np.zeros(0, np.int64)
        if self._pts is not None and keyframes is not None and len(self._pts) == self.num_frames and \
                (self._pts != NO_PTS).all() and (np.diff(self._pts) > 0).all():
            keys = np.flatnonzero(np.asarray(keyframes, bool))
            self._seek_points = keys[keys > 0]     # frame 0: reopen the file, exactly as read_face_media does
        self._checks = None if checks is None else np.asarray(checks, np.uint32)
        self._window_size = window
        self._window_bytes, self._max_window = window_bytes, max_window
        self._seek_cost = seek_cost
        self._threads = threads   # decoder threads (0: ffmpeg's choice)
        self._bad: set[int] = set()
        self._verified: set[int] = set()    # seek points whose first frame matched its fingerprint (get_i420)
        self._window: dict[int, tuple[av.VideoFrame, int]] = {}   # index -> (decoded frame, its run's start)
        self._last: tuple[int, np.ndarray] | None = None
        self._container = self._stream = self._decoded = self._info = None
        self._pending = None     # the frame a seek landed on, not yet consumed
        self._pos = -1           # index of the next frame the decoder gives; -1: nothing is being decoded
        self._run = 0            # where the current decoding run started (0: at the start of the file)
        self.stats = {"decoded": 0, "seeks": 0, "restarts": 0, "bad_seeks": 0}

    @property
    def window(self) -> int:
        """Frames kept at most (known after the first frame is decoded)."""
        return self._window_size

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._close_container()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()

    def _close_container(self) -> None:
        self._window = {}
        self._last = self._pending = self._decoded = None
        self._pos = -1
        if self._container is not None:
            self._container.close()
            self._container = None

    def get(self, idx: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of frame idx, read-only."""
        idx = int(idx)
        if not 0 <= idx < self.num_frames:
            raise IndexError(f"frame {idx} is outside the {self.num_frames} frames")
        if self._last is not None and self._last[0] == idx:
            return self._last[1]
        while True:
            if idx not in self._window:
                self._fill(idx)
            frame, run = self._window[idx]
            img = _upright_rgb(frame, self._info)
            if self._checks is not None and frame_check(img) != int(self._checks[idx]):
                if run > 0:    # decoded after a seek: that keyframe does not give back the same frames
                    self._bad.add(run)
                    self.stats["bad_seeks"] += 1
                    self._drop()
                    continue
                # decoded from the start, as when the source was prepared: this machine converts differently
                # (or the file changed); seeks can no longer be checked, timestamps still are
                log.warning("frame %d of %s does not match its recorded fingerprint", idx, self.path)
                self._checks = None
            img.flags.writeable = False
            self._last = (idx, img)
            return img

    def get_i420(self, idx: int) -> np.ndarray | None:
        """Frame idx as the decoder gave it, I420 planes (H * 3 / 2, W) uint8, without the RGB conversion (H.264
        output needs I420 anyway); None when the frame is not plain limited-range yuv420p at an even size and
        without rotation (use get then). The first frame served after each seek is checked against the frame's
        fingerprint (one RGB conversion a seek), as get checks every frame."""
        idx = int(idx)
        if not 0 <= idx < self.num_frames:
            raise IndexError(f"frame {idx} is outside the {self.num_frames} frames")
        while True:
            if idx not in self._window:
                self._fill(idx)
            frame, run = self._window[idx]
            if frame.format.name != "yuv420p" or getattr(frame, "color_range", 0) == 2 or self._info.rotation \
                    or frame.width % 2 or frame.height % 2:
                return None
            if run > 0 and self._checks is not None and run not in self._verified:
                if frame_check(_upright_rgb(frame, self._info)) != int(self._checks[idx]):
                    self._bad.add(run)
                    self.stats["bad_seeks"] += 1
                    self._drop()
                    continue
                self._verified.add(run)
            return frame.to_ndarray()

    def _drop(self) -> None:
        self._window = {}
        self._last = self._pending = None
        self._pos = -1

    def _seek_point(self, idx: int) -> int:
        """The last usable keyframe at or before idx (0: the start of the file)."""
        k = int(np.searchsorted(self._seek_points, idx, side="right"))
        while k > 0:
            point = int(self._seek_points[k - 1])
            if point not in self._bad:
                return point
            k -= 1
        return 0

    def _fill(self, idx: int) -> None:
        while True:
            try:
                point = self._seek_point(idx)
                if not 0 <= self._pos <= idx or point > self._pos + self._seek_cost:
                    self._start(point)
                self._decode_to(idx)
                return
            except _Landed as e:
                self._bad.add(e.args[0])
                self.stats["bad_seeks"] += 1
                self._drop()

    def _reopen(self) -> None:
        self._close_container()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        # through the held descriptor where the system names it (Linux): the same bytes even if path is gone
        source = f"/proc/self/fd/{self._fd}" if os.path.isdir("/proc/self/fd") else self.path
        container, stream, info, first, decoded = _open_face(source, 1 << 62, self._threads)
        self._container, self._stream, self._info = container, stream, info
        if self.size is not None and (info.width, info.height) != tuple(self.size):
            raise MediaError(f"{self.path} decodes to {info.width}x{info.height}, expected "
                             f"{self.size[0]}x{self.size[1]}")
        self._decoded, self._pending, self._pos, self._run = decoded, first, 0, 0

    def _start(self, point: int) -> None:
        if point == 0 or self._container is None:
            keep = self._window
            self._reopen()                # decoding from the start: exactly as read_face_media does
            self._window = keep
            self.stats["restarts"] += 1
            if point == 0:
                return
        target = int(self._pts[point])
        self.stats["seeks"] += 1
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            self._decoded = self._container.decode(self._stream)
            for frame in self._decoded:      # frames before the keyframe (open GOP) are skipped
                if frame.pts is not None and frame.pts < target:
                    continue
                if frame.pts != target:
                    raise _Landed(point)
                self._pending, self._pos, self._run = frame, point, point
                return
        except av.FFmpegError:
            raise _Landed(point) from None
        raise _Landed(point)

    def _next_frame(self) -> av.VideoFrame:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        try:
            frame = next(self._decoded, None)
        except av.FFmpegError as e:
            if self._run > 0:
                raise _Landed(self._run) from None
            raise MediaError(f"{self.path} could not be decoded at frame {self._pos}: {e}") from None
        if frame is None:
            if self._run > 0:
                raise _Landed(self._run)
            raise MediaError(f"{self.path} ended after {self._pos} frames, {self.num_frames} expected")
        if self._run > 0 and frame.pts != self._pts[self._pos]:
            raise _Landed(self._run)
        return frame

    def _decode_to(self, idx: int) -> None:
        while self._pos <= idx:
            frame = self._next_frame()
            i = self._pos
            self._pos += 1
            self.stats["decoded"] += 1
            if not self._window_size:
                size = sum(p.buffer_size for p in frame.planes)
                self._window_size = max(2, min(self._max_window, self._window_bytes // max(1, size)))
            if i > idx - self._window_size:
                self._keep(i, frame, idx)

    def _keep(self, i: int, frame: av.VideoFrame, target: int) -> None:
        """Add frame i (i <= target) to the window. When it is full, what goes is a frame after the target (a
        walk backward has passed it), else the earliest one: the window ends up holding the frames up to target."""
        if i not in self._window and len(self._window) >= self._window_size:
            del self._window[max(self._window, key=lambda k: (k > target, abs(k - target)))]
        self._window[i] = (frame, self._run)


def count_video_frames(path: str) -> int:
    """Video packets in a finished file (no decoding): checks that a result is complete and readable."""
    try:
        with av.open(path) as c:
            if not c.streams.video:
                return 0
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except av.FFmpegError:
        return -1


class prefetch:
    """Iterate `items` in a background thread, up to `depth` ahead (decoding overlaps the caller's work). The thread
    starts at once, not at the first next(): a render made while its first crops are being generated has its
    first source frames decoded when they come. Exceptions come out in the caller; close() (or the end, or an
    error) stops the thread. A plain object, not a generator: close() works before the first next()."""

    _END = object()

    def __init__(self, items: Iterator, depth: int = 8):
        self._q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        # the thread holds the queue and the event, not this object: one dropped unclosed is collected and stops it
        self._thread = threading.Thread(target=self._run, args=(items, self._q, self._stop), name="prefetch",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def _run(cls, items: Iterator, q: queue.Queue, stop: threading.Event) -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            q.put((True, cls._END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((False, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> "prefetch":
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        ok, item = self._q.get()
        if ok and item is not self._END:
            return item
        self.close()
        if not ok:
            raise item
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._stop.set()
        while self._thread.is_alive():        # unblock a producer waiting on a full queue
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass

    def __del__(self):
        self._stop.set()
