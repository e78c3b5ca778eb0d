"""MuseTalk live sessions: whisper features over a sliding window that keeps the left context, frames through
the shared batcher ahead of offline work.

A frame's audio tokens are MuseTalk's window of the whisper encoder states around it (2 frames either side:
`model.PAD_LEFT`, `PAD_RIGHT`). Offline, the encoder reads the audio in 30 s segments; live, it reads the last
30 s heard (frame-aligned), up to the newest sample, each time frames become ready: the frames' own audio and
their left context are the same as offline, and what differs is the audio after the window's end (zeros live,
the rest of the speech offline), which the encoder's attention sees. tests/generator/musetalk/test_live.py
measures that difference; the right context is the 2 frames MuseTalk's window needs.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from lipsync_common.formats.source_cache import SourceEntry, source_frame
from services.generator.engines.base import SAMPLE_RATE
from services.generator.engines.musetalk.model import AUDIO_FPS, PAD_RIGHT, SEGMENT_S

STEP = SAMPLE_RATE // AUDIO_FPS          # samples per whisper step (50 Hz)


class MuseTalkLive:
    """feed() never waits for whisper: one token job per session is in flight at a time, covering every frame
    that became ready since the last one (when the side thread is busy, the next job covers more frames)."""

    def __init__(self, engine, source: SourceEntry, version: str, fps: float, on_crop: Callable):
        self.engine, self.source, self.fps, self.on_crop = engine, source, fps, on_crop
        self.model = engine.models[version]
        # MuseTalk's window needs PAD_RIGHT frames after a frame; more brings whisper's states closer to the offline
        # ones (its attention sees the whole 30 s segment: BENCHMARKS.md measures the difference)
        self.lookahead = max(PAD_RIGHT, engine.settings.live_lookahead)
        self.detail = (f"musetalk {version}: whisper over the 30 s segment so far (as offline), "
                       f"{self.lookahead} frames ahead")
        self.latents = engine.live_latents(source, self.model, version)
        # on CUDA feed only queues a token job (whisper runs in the side thread); on the CPU it computes whisper
        self.quick_feed = str(self.model.device).startswith("cuda")
        self._buf = np.zeros(SEGMENT_S * SAMPLE_RATE, np.float32)   # audio since `start`, in _buf[:_n]
        self._n = 0
        self.start = 0                          # absolute sample of audio[0] (a frame boundary)
        self.fed = 0                            # frames fed
        self.queued = 0                         # frames whose tokens were asked for
        self.flushed = 0                        # frames fed before the last flush (their lookahead is silence)
        self.busy = False                       # a token job is in flight
        self.closed = False
        self.lock = threading.RLock()          # a CPU token job completes inside _next (its callback re-enters)
        self.handle = engine.batchers[version].open_stream(self._result)

    def _result(self, out) -> None:
        self.on_crop(out if isinstance(out, BaseException) else np.asarray(out))

    def _boundary(self, t: int) -> int:
        return round(t * SAMPLE_RATE / self.fps)

    @property
    def audio(self) -> np.ndarray:
        return self._buf[:self._n]

    def feed(self, samples: np.ndarray) -> None:
        """Append a frame's audio. The buffer grows by doubling (not a copy of up to 30 s per frame) and is never
        written below _n: a window handed to the side thread is a view of it and stays as it was."""
        with self.lock:
            if self._n + len(samples) > len(self._buf):
                grown = np.zeros(max(2 * len(self._buf), self._n + len(samples)), np.float32)
                grown[:self._n] = self._buf[:self._n]
                self._buf = grown
            self._buf[self._n:self._n + len(samples)] = samples
            self._n += len(samples)
            self.fed += 1
            self._next()

    def flush(self) -> None:
        with self.lock:
            self.flushed = self.fed
            self._next()

    def _next(self) -> None:
        """With the lock held: ask for the tokens of the frames ready now, unless a job is in flight."""
        upto = max(self.fed - self.lookahead, self.flushed)
        if self.busy or self.closed or upto <= self.queued:
            return
        audio = self.audio
        if upto > self.fed - self.lookahead:      # flushed: the lookahead after the last frame is silence
            pad = self._boundary(upto + self.lookahead) - self._boundary(self.fed)
            audio = np.concatenate([audio, np.zeros(max(pad, 0), np.float32)])
        # the window: from the start of the 30 s segment the first frame falls in, as offline (whisper's positions
        # then match the offline ones; only the audio after the newest sample differs: zeros here)
        seg = SEGMENT_S * SAMPLE_RATE
        seg_start = self._boundary(self.queued) // seg * seg
        window = audio[seg_start - self.start:]
        span = (self.queued, upto)
        self.busy = True
        future = self.engine.live_tokens(self.model, window, self.fps, upto, self.queued, seg_start // STEP)
        self.queued = upto
        future.add_done_callback(lambda f: self._tokens(f, span))
        keep = self._boundary(upto) // seg * seg           # older audio no window reads again
        if keep > self.start:                               # a new buffer: the old one may be read by the job
            rest = self.audio[keep - self.start:]
            self._buf = np.zeros(max(len(self._buf), 2 * len(rest)), np.float32)
            self._buf[:len(rest)] = rest
            self._n, self.start = len(rest), keep

    def _tokens(self, future, span) -> None:
        a, b = span
        try:
            tokens = future.result()
            m = self.source.meta
            for t in range(a, b):
                idx = source_frame(t, m.num_frames, m.fps, self.fps)
                self.handle.put((self.latents[idx], tokens[t - a]) if self.source.has_face[idx] else None)
        except Exception as e:  # noqa: BLE001 - the session ends with it (closed, or whisper failed)
            if not self.closed:
                self.on_crop(e)
            return
        with self.lock:
            self.busy = False
            self._next()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.handle.close()
