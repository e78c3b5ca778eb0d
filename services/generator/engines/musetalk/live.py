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

from typing import Callable

import numpy as np

from lipsync_common.formats.source_cache import SourceEntry, source_frame
from services.generator.engines.base import SAMPLE_RATE
from services.generator.engines.musetalk.model import PAD_RIGHT, SEGMENT_S


class MuseTalkLive:
    def __init__(self, engine, source: SourceEntry, version: str, fps: float, on_crop: Callable):
        self.engine, self.source, self.fps, self.on_crop = engine, source, fps, on_crop
        self.model = engine.models[version]
        self.lookahead = PAD_RIGHT
        self.detail = f"musetalk {version}: whisper over the last {SEGMENT_S} s heard, {PAD_RIGHT} frames ahead"
        self.latents = engine.live_latents(source, self.model, version)
        self.audio = np.zeros(0, np.float32)
        self.start = 0                          # absolute sample of audio[0] (a frame boundary)
        self.fed = 0                            # frames fed
        self.queued = 0                         # frames whose items went to the batcher
        self.handle = engine.batchers[version].open_stream(self._result)

    def _result(self, out) -> None:
        self.on_crop(out if isinstance(out, BaseException) else np.asarray(out))

    def _boundary(self, t: int) -> int:
        return round(t * SAMPLE_RATE / self.fps)

    def feed(self, samples: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, samples.astype(np.float32)])
        self.fed += 1
        if self.fed - self.lookahead > self.queued:
            self._queue(self.fed - self.lookahead, self.audio)

    def flush(self) -> None:
        if self.fed > self.queued:
            pad = np.zeros(self._boundary(self.fed + self.lookahead) - self._boundary(self.fed), np.float32)
            self._queue(self.fed, np.concatenate([self.audio, pad]))

    def _queue(self, upto: int, audio: np.ndarray) -> None:
        """Tokens of frames queued..upto-1 from the window that ends at the newest sample; their items to the
        batcher."""
        end = self.start + len(audio)
        first = 0                               # the window's first frame: the last 30 s, frame-aligned
        while end - self._boundary(first) > SEGMENT_S * SAMPLE_RATE:
            first += max(1, int((end - self._boundary(first) - SEGMENT_S * SAMPLE_RATE) * self.fps / SAMPLE_RATE))
        window = audio[self._boundary(first) - self.start:]
        frames = upto - first
        tokens = self.engine.live_tokens(self.model, window, self.fps, frames)
        m = self.source.meta
        for t in range(self.queued, upto):
            idx = source_frame(t, m.num_frames, m.fps, self.fps)
            self.handle.put((self.latents[idx], tokens[t - first]) if self.source.has_face[idx] else None)
        self.queued = upto
        keep = self._boundary(max(0, upto - int(SEGMENT_S * self.fps)))   # older audio no window reads again
        if keep > self.start:
            self.audio, self.start = self.audio[keep - self.start:], keep

    def close(self) -> None:
        self.handle.close()
