"""Live sessions of the weight-free engines: the loudness driver streams natively (audio_features.LiveDrive).
Phonemes need context (whisper reads words in whole utterances), so `visemes` runs its live sessions on the
loudness driver and says so in the session's detail; no added latency beyond the loudness lookahead."""
from __future__ import annotations

from typing import Callable

import numpy as np

from lipsync_common.formats.source_cache import SourceEntry
from services.generator.engines.warp.audio_features import LiveDrive

FALLBACK = ("visemes -> loudness for live sessions: phonemes need the whole utterance (whisper reads words), "
            "so live frames follow the loudness driver")


class WarpLive:
    def __init__(self, engine, source: SourceEntry, fps: float, on_crop: Callable):
        self.engine, self.source, self.fps, self.on_crop = engine, source, fps, on_crop
        self.drive = LiveDrive(fps)
        self.lookahead = self.drive.lookahead
        self.detail = FALLBACK if engine.name == "visemes" else "loudness: audio loudness and spectrum, live"
        self.frames = 0
        self.closed = False
        self.quick_feed = False      # feed renders crops on the CPU

    def _emit(self, values) -> None:
        for opening, width in values:
            if self.closed:
                return
            pose = np.array([opening, width, 0.0, 0.0], np.float32)
            self.on_crop(self.engine._crop(self.source, self.fps, self.frames, pose))
            self.frames += 1

    def feed(self, samples: np.ndarray) -> None:
        self._emit(self.drive.push(samples))

    def flush(self) -> None:
        self._emit(self.drive.flush())

    def close(self) -> None:
        self.closed = True
