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
