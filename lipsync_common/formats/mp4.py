"""A fragmented MP4 (H.264 + AAC) written as a byte stream with PyAV: the first bytes leave before the end."""
from __future__ import annotations

import collections
import fractions
import io
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import av
import cv2
from av.codec.context import Flags
import numpy as np

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


# the last fragment's encoder: rc-lookahead frames (each holds the file's end back by a frame). 0: no macroblock tree
# there, so its frames take more bits at the same crf (yongen.mp4, 250 frames, a 5-frame last fragment: file +3.7%
# with its keyframe, those frames' PSNR 42.7 against 41.8 dB); 2: +1.7% but 40.7 dB (`python -m tools.bench_last_fragment`)
TAIL_LOOKAHEAD = 0


def x264_options(gop: int, preset: str, lookahead: int, crf: int | None) -> dict[str, str]:
    """x264's options: a GOP of `gop` frames, no B-frames (frame 0 gets pts 0, so no edit-list shift against the
    audio, and latency stays low); lookahead -1 = the preset's; crf None = lossless (qp 0)."""
    opts = {"preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
    if lookahead >= 0:
        opts["rc-lookahead"] = str(lookahead)
    opts.update({"qp": "0"} if crf is None else {"crf": str(crf)})
    return opts


def tail_start(first_fragment: int, gop: int, total: int, last_fragment: int) -> int:
    """The frame the last fragment starts at, `last_fragment` frames before the end (0: none): after at least one
    GOP of the main encoder (its first frame starts one)."""
    start, at = (first_fragment + 1 if first_fragment else 0), total - last_fragment
    return at if last_fragment > 0 and at >= start + gop else 0


def video_frame(data: np.ndarray, fmt: str) -> av.VideoFrame:
    """A frame that wraps the array's memory (the array must not change until the frame is encoded; the encoder
    copies what it keeps). VideoFrame.from_ndarray copies it twice while holding the GIL, ~1 ms per 720p frame on
    the encoding thread (0.007 ms this way; `python -m tools.bench_render` times both)."""
    return av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(data), format=fmt)


class Mp4Writer:
    """Encodes RGB frames (+ optional audio) into a fragmented MP4 delivered as bytes while it is written.

    Fragmented (frag_keyframe + empty_moov) so that the first bytes can be streamed before the end; the
    concatenation of everything handed to `on_bytes` is one playable MP4 file.
    """

    def __init__(self, on_bytes: Callable[[bytes], None], width: int, height: int, fps: float,
                 lossless_rgb: bool = False, crf: int = 18,
                 audio: np.ndarray | None = None, audio_rate: int = 0, preset: str = "veryfast", threads: int = 0,
                 first_fragment: int = 0, lookahead: int = -1, gop_encoders: int = 1, last_fragment: int = 0,
                 total_frames: int = 0):
        """first_fragment: frames of the first fragment (a keyframe is forced there, the next GOP starts at it);
        0 = the first fragment is a whole GOP. A short one lets a player start before a second of video is
        encoded: its frames (and the keyframe after them) go through a second encoder of the same settings that
        is drained at once, so they do not wait for the main encoder's pipeline (x264 holds back one frame per
        frame thread and per frame of lookahead: ~35 frames at its defaults on 16 cores). lookahead: x264's
        rc-lookahead in frames (-1 = the preset's). gop_encoders: > 1 encodes that many GOPs at once, each by a
        fresh encoder of the same settings in a thread of its own (one encoder's frame threads stop scaling long
        before a big machine's cores do); 1 = one encoder for the whole stream. last_fragment: with total_frames
        known, the last that many frames go through a second encoder with slice threads and no lookahead, from a
        keyframe: the main encoder is drained when they begin (while they are still being made) and each of them
        leaves as soon as it is encoded, so the file ends without waiting for the main encoder's pipeline."""
        if first_fragment < 0 or last_fragment < 0:
            raise ValueError("first_fragment and last_fragment must be >= 0")
        if gop_encoders < 1:
            raise ValueError("gop_encoders must be >= 1")
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
        self._opts = self.video.options = x264_options(gop, preset, lookahead, None if lossless_rgb else crf)
        # frame threads: higher throughput than PyAV's default slice threads (+23% on 2 cores at 720p)
        self.video.codec_context.thread_type = "FRAME"
        if threads > 0:     # 0: x264's choice (1.5 per core); fewer when many encoders run at once
            self.video.codec_context.thread_count = threads
        self.rate = rate
        self.frames = 0
        self.first_fragment = first_fragment if 0 < first_fragment < gop - 1 else 0
        # the first fragment's frames are encoded and drained at once: slice threads work on one frame together
        # (6 frames in 26 ms instead of 42 with frame threads on 16 cores, `python -m tools.bench_render`)
        self.head = self._twin_encoder(sliced=True) if self.first_fragment else None
        self.gops = None
        if gop_encoders > 1 and (self.head is not None or self._twin_encoder() is not None):
            self.gops = _ParallelGops(self._twin_encoder, gop, gop_encoders)
        self.tail_at = tail_start(self.first_fragment, gop, total_frames, last_fragment)
        self.tail = None
        self._main_drained = False
        self.audio, self.audio_rate = None, audio_rate
        self.astream = None
        self.aac = None
        if audio is not None:
            self.set_audio(audio, audio_rate)

    def set_audio(self, audio: np.ndarray, rate: int) -> None:
        """The sound track, float32 [channels, samples] (none when it has no samples); before the first frame. The
        encoders open with the writer, so a writer made before the audio is known (render: at the call's config,
        while the first crops are being made) has them ready when the first frame comes."""
        if self.frames or self.audio is not None:
            raise ValueError("the audio must be set once, before the first frame")
        self.audio, self.audio_rate = audio, rate
        if audio.shape[1] > 0:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            self.astream = self.container.add_stream("aac", rate=rate, layout=layout)
            self.astream.bit_rate = 128000
            self.aac = _AacTrack(self.astream, audio, rate)

    def _twin_encoder(self, sliced: bool = False, lookahead: int | None = None):
        """An open encoder with the main one's settings (for the first fragment's frames and the keyframe that
        closes it, or for one GOP), or None when its parameter sets (the file's avcC) would differ from the main
        encoder's. sliced: its threads split each frame into slices instead of encoding frames in parallel. The
        main one is opened too: the first packet would open it anyway. lookahead: its rc-lookahead instead of the
        main one's (not part of the parameter sets)."""
        main = self.video.codec_context
        if not main.is_open:
            main.open()
        head = av.CodecContext.create(main.name, "w")
        head.width, head.height, head.pix_fmt = main.width, main.height, main.pix_fmt
        head.time_base, head.framerate = main.time_base, main.framerate
        head.options = dict(self._opts, **({} if lookahead is None else {"rc-lookahead": str(lookahead)}))
        head.thread_type, head.thread_count = "SLICE" if sliced else "FRAME", main.thread_count
        head.flags |= Flags.global_header            # parameter sets out of band, as the muxer asks of the main one
        head.open()
        return head if head.extradata == main.extradata else None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Mux the AAC packets the encoder gave once the audio up to `seconds` (None: all of it) was fed."""
        if self.aac is not None:
            for packet in self.aac.take(None if seconds is None else int(seconds * self.audio_rate)):
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
        frame = video_frame(data, "rgb24" if self.lossless_rgb else "yuv420p")
        frame.pts = self.frames
        if self.frames == self.first_fragment > 0:      # the first fragment ends here: this frame opens a GOP
            frame.pict_type = av.video.frame.PictureType.I
        if self.head is not None and self.frames == self.first_fragment + 1:
            frame.pict_type = av.video.frame.PictureType.I   # the main encoder's first frame (a GOP of its own)
        if self.tail_at and self.frames == self.tail_at:
            self._start_tail()
        self.frames += 1
        # audio runs half a second ahead so that every fragment holds both streams
        self._mux_audio_until(self.frames / self.rate + 0.5)
        if self.tail is not None:
            packets = self.tail.encode(frame)
        elif self.head is None and self.gops is not None:
            packets = self.gops.put(frame)
        elif self.head is None:
            packets = self.video.encode(frame)
        else:
            packets = self.head.encode(frame)
            if self.frames > self.first_fragment:       # the keyframe after the first fragment is in: drain
                packets += self._drain_head()
        self._mux_video(packets)

    def _start_tail(self) -> None:
        """The last fragment begins: its encoder opens (a fresh one starts on a keyframe) and the main encoder (or
        the GOP encoders) is drained into the file now."""
        tail = self._twin_encoder(sliced=True, lookahead=TAIL_LOOKAHEAD)
        if tail is None:        # parameter sets would differ: the main encoder goes on to the end
            return
        if self.gops is not None:       # (the first fragment's encoder is drained by now: tail_start)
            self._mux_video(self.gops.finish())
            self.gops = None
        self._mux_video(self._drain_main())
        self.tail = tail

    def _drain_main(self) -> list:
        if self._main_drained:
            return []
        self._main_drained = True
        return self.video.encode()

    def _drain_head(self) -> list:
        packets, self.head = self.head.encode(None), None
        return packets

    def _mux_video(self, packets) -> None:
        for packet in packets:
            packet.stream = self.video
            self.container.mux(packet)

    def close(self) -> None:
        if self.head is not None:           # fewer frames than the first fragment
            self._mux_video(self._drain_head())
        if self.gops is not None:
            self._mux_video(self.gops.finish())
        self._mux_video(self._drain_main())
        if self.tail is not None:
            packets, self.tail = self.tail.encode(None), None
            self._mux_video(packets)
        self._mux_audio_until(None)
        if self.aac is not None:
            self.aac.thread.join()          # done (it said so), maybe not yet returned: no thread outlives close
        self.container.close()

    def abort(self) -> None:
        """Stop without finishing the file: GOPs being encoded are dropped, the container is closed."""
        if self.gops is not None:
            self.gops.abort()
        if self.aac is not None:
            self.aac.stop()
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a half-written container may fail; nothing to keep
            pass
        # x264's threads end when its contexts are freed: now, not whenever this writer happens to be collected
        # (packets not muxed hold their stream, which holds the container and so every encoder)
        self.head = self.tail = self.video = self.astream = self.container = None
        if self.aac is not None:
            self.aac.stream = None
            self.aac.ready.clear()


class _AacTrack:
    """The whole audio (known up front) encoded to AAC in a thread of its own, started with the writer: ffmpeg's AAC
    encoder took ~0.8 ms per 25 fps video frame on the encoding thread's path (~200 ms per 10 s). take(end) gives
    the packets the encoder had given once every 1024-sample frame starting before sample `end` was fed: the
    packets, and where they are muxed, are those of encoding in line."""

    FRAME = 1024

    def __init__(self, stream, audio: np.ndarray, rate: int):
        self.stream, self.audio, self.rate = stream, audio, rate
        self.layout = "mono" if audio.shape[0] == 1 else "stereo"
        stream.codec_context.open()     # opened here: the muxer's header (written by the other thread) reads it
        self.cond = threading.Condition()
        self.ready: collections.deque = collections.deque()     # (first sample fed, packets), in order
        self.fed = 0            # samples fed so far (read under cond)
        self.taken = 0          # samples whose packets were taken
        self.done = False
        self.error: BaseException | None = None
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="aac", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        total = self.audio.shape[1]
        try:
            for pos in range(0, total, self.FRAME):
                if self.stopped:
                    return
                chunk = np.ascontiguousarray(self.audio[:, pos:pos + self.FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
                frame.sample_rate, frame.pts = self.rate, pos
                frame.time_base = fractions.Fraction(1, self.rate)
                packets = self.stream.encode(frame)
                with self.cond:
                    self.ready.append((pos, packets))
                    self.fed = pos + chunk.shape[1]
                    self.cond.notify_all()
            packets = self.stream.encode()          # the encoder's delay, at the end
            with self.cond:
                self.ready.append((total, packets))
        except BaseException as e:  # noqa: BLE001 - raised where the packets are taken
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def take(self, end: int | None) -> list:
        """The packets due by sample `end` (None: every packet, the encoder flushed), in order; waits for them."""
        total = self.audio.shape[1]
        end = total + 1 if end is None else min(end, total)
        if end <= self.taken:
            return []
        out = []
        with self.cond:
            while not self.done and self.fed < end:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            if end > total:
                while not self.done:
                    self.cond.wait()
            while self.ready and self.ready[0][0] < end:
                out += self.ready.popleft()[1]
        self.taken = end
        return out

    def stop(self) -> None:
        self.stopped = True
        self.thread.join()


class _ParallelGops:
    """Each GOP of `gop` frames goes to a fresh encoder (`make()`) in a thread of its own, up to `workers` GOPs at
    once; put() returns the packets of the GOPs that are done, in order (at most workers + 1 GOPs are in flight:
    past that put() waits for the oldest). Each GOP starts with a keyframe, so GOPs splice into one stream."""

    def __init__(self, make: Callable, gop: int, workers: int):
        self.make, self.gop, self.workers = make, gop, workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="x264-gop")
        self.pending: collections.deque = collections.deque()     # the GOPs' futures, in order
        self.current: queue.SimpleQueue | None = None               # frames of the GOP being fed (None ends it)
        self.fed = 0
        self.stopped = False

    def put(self, frame) -> list:
        if self.current is None:
            self.current, self.fed = queue.SimpleQueue(), 0
            self.pending.append(self.pool.submit(self._encode, self.current))
            frame.pict_type = av.video.frame.PictureType.I
        self.current.put(frame)
        self.fed += 1
        if self.fed == self.gop:
            self.current.put(None)
            self.current = None
        packets = []
        while self.pending and (self.pending[0].done() or len(self.pending) > self.workers):
            packets += self.pending.popleft().result()
        return packets

    def finish(self) -> list:
        if self.current is not None:
            self.current.put(None)
            self.current = None
        packets = []
        while self.pending:
            packets += self.pending.popleft().result()
        self.pool.shutdown()
        return packets

    def abort(self) -> None:
        self.stopped = True
        if self.current is not None:
            self.current.put(None)
            self.current = None
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=False)

    def _encode(self, frames: queue.SimpleQueue) -> list:
        encoder, packets = None, []
        while (frame := frames.get()) is not None:
            if self.stopped:
                continue                    # drain to the end marker without encoding
            if encoder is None and (encoder := self.make()) is None:
                raise RuntimeError("a GOP encoder's parameter sets differ from the stream's")
            packets += encoder.encode(frame)
        if encoder is not None and not self.stopped:
            packets += encoder.encode(None)
        return packets
