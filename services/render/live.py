"""Live encoding: one frame in (its generated crop, or none for the source frame as it is), one encoded frame out,
with no encoder delay (x264 `zerolatency`: no lookahead, no B-frames, no frame threads).

Two output forms:
- H.264 access units (Annex B, SPS/PPS repeated on every keyframe so a forwarder can join at any keyframe): one
  packet per frame, out of the encoder as soon as the frame goes in;
- fragmented MP4 for a MediaSource player: an init segment (ftyp + moov), then one fragment (moof + mdat) per frame.
  The MP4 muxer writes a fragment when the next frame reaches it, so this form is one frame later than the AUs
  (the last one comes out at `close`).
"""
from __future__ import annotations

import fractions
import threading

import av
import numpy as np

from lipsync_common.formats import mp4
from lipsync_common.formats.source_cache import SourceEntry, source_frame
from services.render.render import composite, composite_i420, frame_mask

KEYFRAME_S = 2.0        # a keyframe every 2 s: where a forwarder or a player can join


class LiveEncoder:
    """initialize once (`init_segment`, `width`, `height`), `encode(index, crop)` many, `close` always.

    Thread-safe: a call cancelled while its `encode` runs in a worker thread closes the encoder from another thread;
    `close` waits for that encode (x264 and the frame reader are not used from two threads at once), and an
    `encode` after `close` is an error."""

    def __init__(self, entry: SourceEntry, fps: float, fmp4: bool = False, crf: int = 23, preset: str = "veryfast"):
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.entry, self.fps, self.fmp4 = entry, fps, fmp4
        m = entry.meta
        self.width, self.height = m.width + m.width % 2, m.height + m.height % 2
        self.next_index = 0
        self._reader = entry.frame_reader(threads=1)
        self._masks: dict[int, tuple | None] = {}
        rate = fractions.Fraction(fps).limit_denominator(1001)
        gop = str(max(1, round(KEYFRAME_S * fps)))
        opts = {"preset": preset, "tune": "zerolatency", "crf": str(crf), "g": gop, "bf": "0",
                "x264-params": "repeat-headers=1"}
        self._out: list[bytes] = []
        self._lock = threading.Lock()
        if fmp4:
            self.container = av.open(mp4._Sink(self._out.append), mode="w", format="mp4",
                                     options={"movflags": "frag_every_frame+empty_moov+default_base_moof"})
            stream = self.container.add_stream("libx264", rate=rate)
            self.codec = stream.codec_context
            stream.options = opts
        else:
            self.container = None
            self.codec = av.CodecContext.create("libx264", "w")
            self.codec.framerate = rate
            self.codec.options = opts
        self.codec.width, self.codec.height = self.width, self.height
        self.codec.pix_fmt = "yuv420p"
        self.codec.time_base = 1 / rate
        self.codec.thread_count = 1
        self._stream = stream if fmp4 else None
        self._pending: list[tuple[int, bool]] = []     # fMP4: frames muxed whose fragment is not written yet
        self.init_segment = b""

    def _source(self, t: int) -> np.ndarray:
        """The composited-ready source frame for output frame t: I420 planes, or RGB when the source is not plain
        yuv420p; and its blend mask."""
        m = self.entry.meta
        idx = source_frame(t, m.num_frames, m.fps, self.fps)
        if idx not in self._masks:
            if len(self._masks) >= 256:
                del self._masks[next(iter(self._masks))]
            self._masks[idx] = frame_mask(self.entry, idx)
        frame = self._reader.get_i420(idx)
        return (self._reader.get(idx) if frame is None else frame), self._masks[idx]

    def _frame(self, t: int, crop: np.ndarray | None) -> av.VideoFrame:
        frame, bm = self._source(t)
        if frame.ndim == 2:
            data = frame if crop is None or bm is None else composite_i420(frame, crop, bm[0], bm[1])
        else:
            rgb = frame if crop is None or bm is None else composite(frame, crop, bm[0], bm[1])
            pad = ((0, self.height - rgb.shape[0]), (0, self.width - rgb.shape[1]), (0, 0))
            data = mp4.cv2.cvtColor(np.pad(rgb, pad, mode="edge"), mp4.cv2.COLOR_RGB2YUV_I420)
        out = mp4.video_frame(data, "yuv420p")
        out.pts = t
        return out

    def encode(self, index: int, crop: np.ndarray | None) -> list[tuple[int, bytes, bool]]:
        """Frame `index` (0, 1, ... without gaps) with its crop (uint8 [256, 256, 3] RGB) or None: the encoded
        frames now ready, (index, bytes, keyframe) in order."""
        if crop is not None and crop.shape != (256, 256, 3):
            raise ValueError(f"a crop must be 256x256x3, got {crop.shape}")
        with self._lock:
            if self.codec is None:
                raise ValueError("the live encoder is closed")
            if index != self.next_index:
                raise ValueError(f"frame {index} arrived, expected frame {self.next_index}")
            self.next_index += 1
            return self._emit(self.codec.encode(self._frame(index, crop)))

    def _emit(self, packets) -> list[tuple[int, bytes, bool]]:
        if self.container is None:
            return [(int(p.pts), bytes(p), bool(p.is_keyframe)) for p in packets]
        for p in packets:
            self._pending.append((int(p.pts), bool(p.is_keyframe)))     # in frames, before the muxer rescales
            p.stream = self._stream
            self.container.mux(p)
        return self._fragments()

    def _fragments(self) -> list[tuple[int, bytes, bool]]:
        """fMP4: split what the muxer wrote into the init segment and one fragment per frame written."""
        data = b"".join(self._out)
        self._out.clear()
        if not data:
            return []
        if not self.init_segment:
            at = data.find(b"moof")
            head, data = (data, b"") if at < 0 else (data[:at - 4], data[at - 4:])
            self.init_segment = head
        out = []
        for part in _split_fragments(data):
            index, key = self._pending.pop(0)
            out.append((index, part, key))
        return out

    def close(self) -> list[tuple[int, bytes, bool]]:
        """Flush: the frames still inside the encoder / muxer (after a running `encode` ends); then nothing."""
        with self._lock:
            if self.codec is None:
                return []
            try:
                out = self._emit(self.codec.encode(None))
                if self.container is not None:
                    self.container.close()
                    out += self._fragments()
                return out
            finally:
                self.codec = None
                self._reader.close()


def _split_fragments(data: bytes) -> list[bytes]:
    """moof + mdat pairs of a run of top-level MP4 boxes."""
    parts, at, start = [], 0, 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        if size < 8:
            raise ValueError("a malformed MP4 box")
        at += size
        if kind == b"mdat":
            parts.append(data[start:at])
            start = at
    return parts
