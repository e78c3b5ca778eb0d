"""Media I/O with PyAV: decode face media and audio, write a fragmented MP4 as a byte stream."""
from __future__ import annotations

import fractions
import io
import itertools
import logging
import os
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import av
import cv2
import numpy as np

log = logging.getLogger("media")

# Demuxers that read a single still image.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "jpegls_pipe"}


class MediaError(ValueError):
    """Media that cannot be used; the message says why in words a user can act on."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float          # 0 for a still image
    is_image: bool
    frames_hint: int    # from the container; may be 0 when unknown
    rotation: int = 0   # display rotation applied to the decoded frames (counter-clockwise degrees)


def _open(path: str, what: str):
    try:
        return av.open(path, mode="r")
    except av.FFmpegError as e:  # PyAV raises subclasses of this for unreadable input
        raise MediaError(f"{what} could not be opened as a media file: {e}") from None
    except Exception as e:  # noqa: BLE001 - anything else from the demuxer is bad input too
        raise MediaError(f"{what} could not be opened as a media file: {e}") from None


def _open_face(path: str, max_pixels: int, threads: int = 0):
    """Open face media and decode its first frame: (container, stream, info, first frame, the rest).
    The one way face media is opened, for read_face_media and FrameReader alike (same decoder settings)."""
    container = _open(path, "the face media")
    if not container.streams.video:
        container.close()
        raise MediaError("the face media has no video or image stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        container.close()
        raise MediaError("the face media has no valid frame size")
    if width * height > max_pixels:
        container.close()
        raise MediaError(f"the face media is {width}x{height}, above the limit of {max_pixels} pixels")
    fmt = container.format.name.split(",")[0]
    is_image = fmt in _IMAGE_FORMATS
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = 0.0 if is_image else float(rate or 25)
    stream.thread_type = "AUTO"   # ffmpeg's frame + slice threads for decoding
    if threads > 0:               # 0: ffmpeg's choice (about one per core); fewer when many decoders run at once
        stream.codec_context.thread_count = threads
    decoded = container.decode(stream)
    try:
        first = next(decoded, None)
    except av.FFmpegError as e:
        container.close()
        raise MediaError(f"the face media could not be decoded: {e}") from None
    if first is None:
        container.close()
        raise MediaError("the face media contains no decodable frame")
    # phones store portrait video as landscape frames plus a display matrix: frames are turned upright here
    # (counter-clockwise degrees, as the display matrix gives them), so everything downstream sees what a
    # player shows, and the output needs no rotation metadata
    turns = int(round((first.rotation or 0) / 90.0)) % 4
    if turns % 2:
        width, height = height, width
    info = VideoInfo(width, height, fps, is_image, int(stream.frames or 0), rotation=90 * turns)
    return container, stream, info, first, decoded


def _upright_rgb(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    """A decoded frame as the RGB array everything downstream sees (the same conversion everywhere)."""
    img = frame.to_ndarray(format="rgb24")
    turns = info.rotation // 90
    if turns:
        img = np.ascontiguousarray(np.rot90(img, turns))
    if img.shape[0] != info.height or img.shape[1] != info.width:
        raise MediaError("the face media changes frame size mid-stream")
    return img


def read_face_media(path: str, max_pixels: int, max_frames: int,
                    timestamps: bool = False) -> tuple[VideoInfo, Iterator]:
    """Open a face video or image. Returns its info and an iterator of RGB uint8 frames (H, W, 3); with
    timestamps, of (frame, pts, keyframe): the frame's presentation time in the stream's time base (None when
    the container gives none) and whether the decoder marked it a keyframe (where FrameReader may seek to).

    Raises MediaError for empty, corrupt or unsupported files and for limits exceeded.
    """
    container, _, info, first, decoded = _open_face(path, max_pixels)

    def frames() -> Iterator:
        n = 0
        try:
            for frame in itertools.chain([first], decoded):
                if n >= max_frames:
                    raise MediaError(f"the face media has more than {max_frames} frames")
                img = _upright_rgb(frame, info)
                n += 1
                yield (img, frame.pts, bool(frame.key_frame)) if timestamps else img
                if info.is_image:
                    break
        except av.FFmpegError as e:
            if n == 0:
                raise MediaError(f"the face media could not be decoded: {e}") from None
            # A truncated tail: keep the frames that decoded, as players do.
        finally:
            container.close()
        if n == 0:
            raise MediaError("the face media contains no decodable frame")

    return info, frames()


def frame_check(img: np.ndarray) -> int:
    """A cheap fingerprint of a decoded frame (CRC-32 of every 16th pixel of every 16th row, ~0.1 ms at 1080p):
    recorded when a source is prepared, compared by FrameReader to catch a seek that decoded something else."""
    return zlib.crc32(np.ascontiguousarray(img[::16, ::16]))


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


def prefetch(items: Iterator, depth: int = 8) -> Iterator:
    """Iterate `items` in a background thread, up to `depth` ahead (decoding overlaps the caller's work).
    Exceptions come out in the caller; closing the returned generator stops the thread."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def run():
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
            q.put((True, end))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((False, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():        # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass


def decode_audio(path: str, max_seconds: float, sample_rate: int | None = None,
                 mono: bool = False) -> tuple[np.ndarray, int]:
    """Decode audio to float32 [channels, samples] (full scale = 1.0) at `sample_rate` (native when None).

    At most two channels are kept (more are downmixed to stereo).
    """
    container = _open(path, "the audio")
    try:
        if not container.streams.audio:
            raise MediaError("the audio file has no audio stream (supported: wav, mp3, m4a/aac, flac, ogg)")
        stream = container.streams.audio[0]
        declared = (container.duration or 0) / 1e6
        if declared > max_seconds * 1.05 + 1:   # refuse before decoding what the header says is too long
            raise MediaError(f"the audio is {declared:.0f} s long, above the limit of {max_seconds:.0f} s")
        rate = sample_rate or int(stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise MediaError("the audio has no valid sample rate")
        channels = 1 if mono or (stream.codec_context.channels or 1) == 1 else 2
        resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo", rate=rate)
        parts: list[np.ndarray] = []
        total = 0
        limit = int(max_seconds * rate)

        def take(frames):
            nonlocal total
            for f in frames:
                a = f.to_ndarray()
                parts.append(a)
                total += a.shape[1]
                if total > limit:
                    raise MediaError(f"the audio is longer than the limit of {max_seconds:.0f} s")

        try:
            for frame in container.decode(stream):
                take(resampler.resample(frame))
            take(resampler.resample(None))
        except av.FFmpegError as e:
            if total == 0:
                raise MediaError(f"the audio could not be decoded: {e}") from None
    finally:
        container.close()
    if not parts:
        return np.zeros((channels, 0), np.float32), rate
    return np.concatenate(parts, axis=1).astype(np.float32), rate


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file object that hands written bytes to a callback."""

    def __init__(self, on_bytes: Callable[[bytes], None]):
        self.on_bytes = on_bytes

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        self.on_bytes(bytes(b))
        return len(b)


class Mp4Writer:
    """Encodes RGB frames (+ optional audio) into a fragmented MP4 delivered as bytes while it is written.

    Fragmented (frag_keyframe + empty_moov) so that the first bytes can be streamed before the end; the
    concatenation of everything handed to `on_bytes` is one playable MP4 file.
    """

    def __init__(self, on_bytes: Callable[[bytes], None], width: int, height: int, fps: float,
                 lossless_rgb: bool = False, crf: int = 18,
                 audio: np.ndarray | None = None, audio_rate: int = 0, preset: str = "veryfast", threads: int = 0,
                 first_fragment: int = 0, lookahead: int = -1):
        """first_fragment: frames of the first fragment (a keyframe is forced there, the next GOP starts at it);
        0 = the first fragment is a whole GOP. A short one lets a player start before a second of video is
        encoded. lookahead: x264's rc-lookahead in frames (-1 = the preset's); each frame of it (and each frame
        thread) delays the encoder's output by one frame."""
        if first_fragment < 0:
            raise ValueError("first_fragment must be >= 0")
        self.container = av.open(_Sink(on_bytes), mode="w", format="mp4",
                                  options={"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                           # keep AAC's negative priming timestamp as it is: shifting
                                           # timestamps to zero delays every video frame but the first
                                           "avoid_negative_ts": "disabled"})
        rate = fractions.Fraction(fps).limit_denominator(1001)
        self.video = self.container.add_stream("libx264rgb" if lossless_rgb else "libx264", rate=rate)
        self.lossless_rgb = lossless_rgb
        # 4:2:0 needs even sizes: an odd last row/column is repeated (the output is then one pixel larger)
        self.pad = (0, 0) if lossless_rgb else (height % 2, width % 2)
        self.width, self.height = width + self.pad[1], height + self.pad[0]
        self.video.width, self.video.height = self.width, self.height
        self.video.pix_fmt = "rgb24" if lossless_rgb else "yuv420p"
        self.video.time_base = 1 / rate
        gop = max(1, round(fps))  # a keyframe, so a fragment, every second
        # no B-frames: frame 0 gets pts 0 (no edit-list shift against the audio) and latency stays low
        opts = {"preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        if lookahead >= 0:
            opts["rc-lookahead"] = str(lookahead)
        if lossless_rgb:
            opts["qp"] = "0"
        else:
            opts["crf"] = str(crf)
        self.video.options = opts
        # frame threads: higher throughput than PyAV's default slice threads (+23% on 2 cores at 720p)
        self.video.codec_context.thread_type = "FRAME"
        if threads > 0:     # 0: x264's choice (1.5 per core); fewer when many encoders run at once
            self.video.codec_context.thread_count = threads
        self.rate = rate
        self.frames = 0
        self.first_fragment = first_fragment if 0 < first_fragment < gop else 0
        self.audio = audio
        self.audio_rate = audio_rate
        self.audio_pos = 0
        self.astream = None
        if audio is not None and audio.shape[1] > 0:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            self.astream = self.container.add_stream("aac", rate=audio_rate, layout=layout)
            self.astream.bit_rate = 128000
            self.aframe = 1024

    def _mux_audio_until(self, seconds: float | None) -> None:
        if self.astream is None:
            return
        end = self.audio.shape[1] if seconds is None else min(self.audio.shape[1], int(seconds * self.audio_rate))
        while self.audio_pos < end:
            n = min(self.aframe, self.audio.shape[1] - self.audio_pos)
            chunk = np.ascontiguousarray(self.audio[:, self.audio_pos:self.audio_pos + n])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp",
                                               layout="mono" if chunk.shape[0] == 1 else "stereo")
            frame.sample_rate = self.audio_rate
            frame.pts = self.audio_pos
            frame.time_base = fractions.Fraction(1, self.audio_rate)
            self.audio_pos += n
            for packet in self.astream.encode(frame):
                self.container.mux(packet)

    def convert(self, rgb: np.ndarray) -> np.ndarray:
        """RGB frame -> the array the encoder takes (I420 or RGB). Pure: may run in worker threads."""
        if self.lossless_rgb:
            return rgb
        if any(self.pad):
            rgb = np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        # OpenCV's BT.601 limited-range I420 matches swscale's default within a level and is ~10x faster
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)

    def write(self, rgb: np.ndarray) -> None:
        self.write_converted(self.convert(rgb))

    def write_converted(self, data: np.ndarray) -> None:
        """Encode one frame made by `convert`; frames must come in order, from one thread at a time."""
        frame = av.VideoFrame.from_ndarray(data, format="rgb24" if self.lossless_rgb else "yuv420p")
        frame.pts = self.frames
        if self.frames == self.first_fragment > 0:      # the first fragment ends here: this frame opens a GOP
            frame.pict_type = av.video.frame.PictureType.I
        self.frames += 1
        # audio runs half a second ahead so that every fragment holds both streams
        self._mux_audio_until(self.frames / self.rate + 0.5)
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode():
            self.container.mux(packet)
        if self.astream is not None:
            self._mux_audio_until(None)
            for packet in self.astream.encode():
                self.container.mux(packet)
        self.container.close()
