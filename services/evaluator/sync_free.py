"""Weight-free lip-sync metrics: they always work offline, with no learned audio-visual model.

- `av_offset`: the mouth opening (Face Mesh inner-lip gap / mouth width, per frame) against the audio's loudness
  in the speech band (100-4000 Hz, log RMS per video frame), both standardised, correlated at every shift of
  -vshift..+vshift frames. offset = the shift with the highest correlation; confidence = that correlation minus
  the median over shifts (the same "peak against the rest" idea as SyncNet's median - min, on correlations).
  Sign: offset k > 0 means the audio is late - the sound for frame t is heard at frame t + k. (syncnet_python
  reports the opposite sign for the same clip; `evaluate` shows both metrics in this convention.)
- `lmd`: mouth landmark distance between generated and source frames (the 20 iBUG-68 mouth points 48-67 from
  Face Mesh), in pixels of a 256-px face box (the landmarks' box scaled to 256), mean over points and frames.
  Lower is better; it measures how close the generated mouth shapes are to the source's, so it only means
  something when the source video was speaking the same audio.

These are cruder than SyncNet: they see how much the mouth opens, not its shape, and any face whose mouth moves
with loudness scores well. They are reported under their own names (`sync_offset_free`, `sync_conf_free`, `lmd`).
"""
from __future__ import annotations

import numpy as np

from lipsync_common.faces.points import MESH_TO_68

AUDIO_RATE = 16000


def loudness(audio: np.ndarray, fps: float, frames: int, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """log RMS of the 100-4000 Hz band in each video frame's span of the audio."""
    audio = np.asarray(audio, np.float64)
    hop = sample_rate / fps
    out = np.full(frames, np.nan)
    for t in range(frames):
        a, b = int(round(t * hop)), int(round((t + 1) * hop))
        seg = audio[a:b]
        if len(seg) < 16:
            continue
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
        freqs = np.fft.rfftfreq(len(seg), 1 / sample_rate)
        band = spec[(freqs >= 100) & (freqs <= 4000)].sum() / len(seg)
        out[t] = 0.5 * np.log10(band + 1e-10)
    return out


def _z(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.full_like(x, np.nan)
    return (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)


def correlations(mouth: np.ndarray, loud: np.ndarray, vshift: int = 15) -> np.ndarray:
    """Pearson correlation of mouth[t] with loud[t + k] for k = -vshift..vshift (NaN where < 10 frames overlap)."""
    m, a = _z(np.asarray(mouth, np.float64)), _z(np.asarray(loud, np.float64))
    n = min(len(m), len(a))
    out = np.full(2 * vshift + 1, np.nan)
    for i, k in enumerate(range(-vshift, vshift + 1)):
        x = m[max(0, -k):n - max(0, k)]          # pairs (mouth[t], loud[t + k]) inside both series
        y = a[max(0, k):n - max(0, -k)]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 10 and x[ok].std() > 1e-9 and y[ok].std() > 1e-9:
            out[i] = np.corrcoef(x[ok], y[ok])[0, 1]
    return out


def av_offset(mouth: np.ndarray, loud: np.ndarray, vshift: int = 15) -> dict:
    corr = correlations(mouth, loud, vshift)
    if not np.isfinite(corr).any():
        return {"offset": None, "confidence": None, "correlations": corr.tolist()}
    best = int(np.nanargmax(corr))
    return {"offset": best - vshift, "confidence": float(corr[best] - np.nanmedian(corr)),
            "correlations": [None if not np.isfinite(c) else float(c) for c in corr]}


def windowed_offsets(mouth: np.ndarray, loud: np.ndarray, fps: float, window_s: float = 3.0,
                     step_s: float = 1.0, vshift: int = 15) -> list[dict]:
    """Offset and confidence over time (for the report's plot)."""
    win, step = max(int(window_s * fps), 2 * vshift + 10), max(int(step_s * fps), 1)
    out = []
    for start in range(0, max(1, len(mouth) - win + 1), step):
        r = av_offset(mouth[start:start + win], loud[start:start + win], vshift)
        out.append({"t": (start + win / 2) / fps, "offset": r["offset"], "confidence": r["confidence"]})
    return out


def mouth68(points: np.ndarray) -> np.ndarray:
    """[T, 468, 2] Face Mesh -> [T, 20, 2] mouth points in a 256-px face box."""
    lm = points[:, MESH_TO_68]
    lo, hi = lm.min(1, keepdims=True), lm.max(1, keepdims=True)
    return (lm[:, 48:68] - lo) * (256.0 / np.maximum(hi - lo, 1e-6))


def lmd(source_points: np.ndarray, generated_points: np.ndarray, source_index: np.ndarray) -> dict:
    """Mean mouth landmark distance; source_index[t] is the source frame shown at generated frame t."""
    src = mouth68(source_points[source_index])
    gen = mouth68(generated_points)
    d = np.linalg.norm(src - gen, axis=2).mean(axis=1)        # per frame
    ok = np.isfinite(d)
    return {"lmd": float(d[ok].mean()) if ok.any() else None,
            "per_frame": [None if not np.isfinite(v) else float(v) for v in d]}
