"""Per-frame mouth drive from speech audio: how open (0..1) and how wide (-1 round .. +1 spread).

Opening follows the energy of the voiced band (100-1000 Hz, where F1 lives: it rises as the jaw opens),
relative to the clip's own speech level, with an absolute gate so silence and room noise give a closed mouth.
Width follows the share of energy above 2 kHz (spread vowels and sibilants) against the low band (rounded).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsync_common.options import frame_count
from services.generator.engines.base import SAMPLE_RATE

WINDOW = 1024          # 64 ms analysis window at 16 kHz
GATE_DBFS = -50.0      # below this the frame is silence
RANGE_DB = 30.0        # speech dynamic range mapped onto 0..1 opening


@dataclass
class MouthDrive:
    opening: np.ndarray  # float32 [frames] in 0..1
    width: np.ndarray    # float32 [frames] in -1..1


def mouth_drive(audio: np.ndarray, sample_rate: int, fps: float) -> MouthDrive:
    """audio: float32 mono [samples]. One value per output frame (frame t covers t/fps .. (t+1)/fps)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio must be {SAMPLE_RATE} Hz mono, got {sample_rate} Hz")
    n = frame_count(len(audio), sample_rate, fps)
    padded = np.pad(audio.astype(np.float32), (WINDOW, WINDOW))
    centres = ((np.arange(n) + 0.5) / fps * sample_rate).astype(np.int64) + WINDOW
    idx = centres[:, None] + np.arange(-WINDOW // 2, WINDOW // 2)[None, :]
    frames = padded[idx] * np.hanning(WINDOW).astype(np.float32)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(WINDOW, 1 / sample_rate)
    norm = (np.hanning(WINDOW) ** 2).sum() * WINDOW / 2  # full-scale sine -> 0 dBFS
    low = spec[:, (freqs >= 100) & (freqs < 1000)].sum(1) / norm
    high = spec[:, (freqs >= 2000) & (freqs < 7000)].sum(1) / norm
    total = spec[:, freqs >= 60].sum(1) / norm
    total_db = 10 * np.log10(total + 1e-12)
    low_db = 10 * np.log10(low + 1e-12)
    voiced = total_db > GATE_DBFS
    if voiced.any():
        ref = np.percentile(low_db[voiced], 95)
        opening = np.clip((low_db - (ref - RANGE_DB)) / RANGE_DB, 0, 1) ** 1.5
    else:
        opening = np.zeros(n)
    opening = np.where(voiced, opening, 0.0)
    ratio = high / (low + high + 1e-12)
    width = np.where(voiced, np.clip((ratio - 0.25) * 3, -1, 1), 0.0)
    kernel = np.array([0.25, 0.5, 0.25])
    if n >= 3:
        opening = np.convolve(np.pad(opening, 1, mode="edge"), kernel, mode="valid")
        width = np.convolve(np.pad(width, 1, mode="edge"), kernel, mode="valid")
    return MouthDrive(opening.astype(np.float32), width.astype(np.float32))


class LiveDrive:
    """`mouth_drive` for audio that arrives as it is spoken: the same per-frame analysis and smoothing, with the
    speech level taken from what was heard so far (the 95th percentile of the voiced frames of the last minute,
    leaning on a typical level until a second of speech was heard) instead of the whole clip's. A frame's values
    come out once the samples its window and the smoothing need have arrived: `lookahead` frames later."""

    PRIOR_DB = -25.0        # a typical level of the voiced band for speech near full scale
    PRIOR_FRAMES = 25

    def __init__(self, fps: float, sample_rate: int = SAMPLE_RATE):
        self.fps, self.sr = fps, sample_rate
        self.lookahead = int(np.ceil(1.5 + WINDOW / 2 * fps / sample_rate)) - 1
        self._audio = np.zeros(WINDOW, np.float32)    # the last samples, preceded by the start's zero padding
        self._start = -WINDOW                          # absolute sample index of _audio[0]
        self._raw: list[tuple[float, float]] = []      # (opening, width) before smoothing, frames not yet out
        self._next_raw = 0                             # frames analysed
        self._out = 0                                  # frames given out
        self._voiced_db: list[float] = []

    def _centre(self, t: int) -> int:
        return int((t + 0.5) / self.fps * self.sr)

    def push(self, samples: np.ndarray) -> list[tuple[float, float]]:
        """Append samples; the (opening, width) of every frame now final, in order."""
        self._audio = np.concatenate([self._audio, samples.astype(np.float32)])
        return self._advance(final=False)

    def flush(self) -> list[tuple[float, float]]:
        """The frames of every sample pushed, with silence after them (as mouth_drive at a clip's end)."""
        end = self._start + len(self._audio)
        n = frame_count(end, self.sr, self.fps)
        self._audio = np.concatenate([self._audio, np.zeros(WINDOW, np.float32)])
        out = self._advance(final=True, frames=n)
        self._audio = self._audio[:len(self._audio) - WINDOW]
        return out

    def _advance(self, final: bool, frames: int | None = None) -> list[tuple[float, float]]:
        end = self._start + len(self._audio)
        while (frames is None or self._next_raw < frames) and self._centre(self._next_raw) + WINDOW // 2 <= end:
            self._raw.append(self._analyse(self._next_raw))
            self._next_raw += 1
        out = []
        last = self._next_raw if final else self._next_raw - 1      # smoothing needs the next frame's value
        while self._out < last:
            k = self._out - (self._next_raw - len(self._raw))        # index of frame _out in _raw
            prev = self._raw[max(k - 1, 0)]
            nxt = self._raw[min(k + 1, len(self._raw) - 1)] if self._out + 1 < self._next_raw else self._raw[k]
            out.append(tuple(0.25 * p + 0.5 * c + 0.25 * n for p, c, n in zip(prev, self._raw[k], nxt)))
            self._out += 1
        keep = self._out - 1 - (self._next_raw - len(self._raw))    # frame _out - 1 is the next one's "prev"
        if keep > 0:
            del self._raw[:keep]
        drop = self._centre(self._next_raw) - WINDOW - self._start   # samples no window needs any more
        if drop > 0:
            self._audio, self._start = self._audio[drop:], self._start + drop
        return out

    def _analyse(self, t: int) -> tuple[float, float]:
        c = self._centre(t) - self._start
        window = self._audio[c - WINDOW // 2:c + WINDOW // 2] * np.hanning(WINDOW).astype(np.float32)
        spec = np.abs(np.fft.rfft(window)) ** 2
        freqs = np.fft.rfftfreq(WINDOW, 1 / self.sr)
        norm = (np.hanning(WINDOW) ** 2).sum() * WINDOW / 2
        low = spec[(freqs >= 100) & (freqs < 1000)].sum() / norm
        high = spec[(freqs >= 2000) & (freqs < 7000)].sum() / norm
        total_db = 10 * np.log10(spec[freqs >= 60].sum() / norm + 1e-12)
        low_db = 10 * np.log10(low + 1e-12)
        if total_db <= GATE_DBFS:
            return 0.0, 0.0
        self._voiced_db = (self._voiced_db + [float(low_db)])[-60 * int(self.fps):]
        prior = [self.PRIOR_DB] * max(0, self.PRIOR_FRAMES - len(self._voiced_db))
        ref = np.percentile(self._voiced_db + prior, 95)
        opening = float(np.clip((low_db - (ref - RANGE_DB)) / RANGE_DB, 0, 1) ** 1.5)
        width = float(np.clip((high / (low + high + 1e-12) - 0.25) * 3, -1, 1))
        return opening, width
