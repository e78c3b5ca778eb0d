"""The weight-free engines: the face's own lips and jaw, moved by the audio with a landmark-driven warp.

No neural face model and no download. Per frame a driver gives a mouth pose (opening, width, teeth, rounding);
the lower lip and jaw are displaced to that opening (or pulled up to close a mouth that is open in the source),
the upper lip lifts a little, the corners spread or round, and the gap between the lips is painted as a dark
mouth cavity with a hint of upper teeth. Everything is computed from the 468 Face Mesh points in crop
coordinates, so it follows the face's own shape, identity and lighting.

Two drivers, two engine names:
- `visemes`: timed phonemes (speech.py: whisper words, CMUdict / espeak-ng phones, pocketsphinx alignment) ->
  six mouth shapes with co-articulation; lips close on m/b/p, round on o/u, spread on e/i, teeth on f/v; the
  loudness still scales the opening. With no words recognised it falls back to the loudness driver and says so.
- `loudness`: loudness and a coarse spectral shape only (audio_features.py); it does not know phonemes.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterator

import cv2
import numpy as np

from lipsync_common.faces import points as L
from lipsync_common.formats.source_cache import CROP, SourceEntry, source_frame
from services.generator.engines.base import INTERACTIVE, EngineUnavailable, Generation, batched
from services.generator.engines.warp import speech as sp
from services.generator.engines.warp.audio_features import mouth_drive

MAX_GAP = 0.45      # widest opening, as a share of mouth width
LIFT = 0.15         # upper lip lift, as a share of the opening
SPREAD = 0.07       # corner movement at width +-1, as a share of mouth width
CAVITY_RGB = np.array([38, 14, 18], np.float32)
TEETH_RGB = np.array([214, 208, 196], np.float32)

log = logging.getLogger("generator")

_YY, _XX = np.mgrid[0:CROP, 0:CROP].astype(np.float32)

# (opening 0..1, width -1..1, teeth 0..1, rounding 0..1) of each viseme shape, in speech.SHAPES order
SHAPE_POSE = np.array([
    [0.00, 0.0, 0.0, 0.0],      # rest: the source mouth, lips together
    [0.00, 0.0, 0.0, 0.0],      # closed: m b p, lips pressed
    [0.85, 0.0, 0.0, 0.0],      # open: a, and the consonants that leave the lips alone
    [0.40, 0.9, 0.0, 0.0],      # wide: i e s, corners spread
    [0.45, -0.9, 0.0, 1.0],     # round: o u w sh, corners in, a rounder opening
    [0.16, 0.1, 1.0, 0.0],      # teeth: f v, upper teeth on the lower lip
], np.float32)


def _line(points: np.ndarray) -> np.ndarray:
    """y of a lip contour at every x column (end values held beyond the corners)."""
    order = np.argsort(points[:, 0])
    return np.interp(_XX[0], points[order, 0], points[order, 1]).astype(np.float32)


def _bump(x: np.ndarray, centre: float, half: float, power: float = 2.0) -> np.ndarray:
    u = (x - centre) / max(half, 1.0)
    return np.where(np.abs(u) < 1, np.abs(np.cos(np.pi / 2 * u)) ** power, 0.0).astype(np.float32)


def warp_mouth(crop: np.ndarray, mesh: np.ndarray, mask: np.ndarray, opening: float, width: float,
               teeth: float = 0.0, rounding: float = 0.0) -> np.ndarray:
    """One 256x256 RGB crop with the mouth set to `opening` (0..1) and `width` (-1..1); `teeth` (0..1) shows the
    upper teeth resting on the lower lip, `rounding` (0..1) narrows the opening towards a round one."""
    left, right = mesh[L.MOUTH_LEFT], mesh[L.MOUTH_RIGHT]
    cx = float(left[0] + right[0]) / 2
    mw = float(np.hypot(*(right - left)))
    inner_half = abs(float(mesh[308, 0] - mesh[78, 0])) / 2
    y_u = _line(mesh[L.UPPER_INNER_LIP])          # source upper inner lip edge per column
    y_l = np.maximum(_line(mesh[L.LOWER_INNER_LIP]), y_u)
    gap0_c = float(max(0.0, mesh[L.LOWER_INNER, 1] - mesh[L.UPPER_INNER, 1]))
    # opening profile between the inner corners; rounding narrows it and makes it blunter (an oval, not a V)
    lens = _bump(_XX[0], cx, inner_half * (1 - 0.35 * float(rounding)), 2.0 - 1.3 * float(rounding))
    wide = _bump(_XX[0], cx, 0.75 * mw)            # the jaw moves as a wider piece
    g = float(opening) * MAX_GAP * mw
    s = LIFT * g
    top_new = y_u - s * lens                       # new upper lip edge
    bottom_new = top_new + g * lens                # new lower lip edge
    shift_lip = bottom_new - y_l                   # how far the lower lip edge moves

    nose_y = float(mesh[L.NOSE_BOTTOM, 1])
    lip_bottom = float(mesh[L.LOWER_LIP_BOTTOM, 1])
    yy = _YY
    below = yy >= y_u[None, :]
    # below the lip: full shift down to the lower lip's bottom, fading to zero at the crop's bottom edge
    depth = np.clip((yy - y_l[None, :]) / max(lip_bottom - float(mesh[L.LOWER_INNER, 1]), 1.0), 0, 1)
    fade = np.clip((CROP - yy) / max(CROP - lip_bottom, 1.0), 0, 1)
    jaw = (g - s - gap0_c) * wide
    d_below = ((1 - depth) * shift_lip[None, :] + depth * jaw[None, :]) * fade
    # above the lip: the upper lip lifts by s, fading to zero at the nose
    up = np.clip((yy - nose_y) / np.maximum(y_u[None, :] - nose_y, 1.0), 0, 1)
    d_above = -s * lens[None, :] * up
    alpha = mask.astype(np.float32) / 255.0
    dy = np.where(below, d_below, d_above) * alpha
    # corners: spread (width > 0) or round (width < 0), strongest on the lip line
    mouth_h = max(float(mesh[L.LOWER_LIP_BOTTOM, 1] - mesh[L.UPPER_LIP_TOP, 1]), 4.0)
    u = np.clip((_XX - cx) / max(mw / 2, 1.0), -1.3, 1.3)
    ring = np.exp(-(((yy - y_u[None, :]) / mouth_h) ** 2))
    dx = float(width) * SPREAD * mw * u * ring * np.clip(1.6 - np.abs(u), 0, 1) * alpha

    out = cv2.remap(crop, _XX - dx, yy - dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    if g > 0.5:
        top = top_new[None, :]
        bot = bottom_new[None, :]
        a = np.clip(yy - top + 0.5, 0, 1) * np.clip(bot - yy + 0.5, 0, 1) * (bot - top > 0.3)
        teeth_h = np.maximum(np.minimum(0.3 * g, 0.08 * mw), float(teeth) * 0.85 * g) * lens[None, :]
        band = np.clip(top + teeth_h - yy + 0.5, 0, 1) * a * (0.8 + 0.15 * float(teeth))
        a = cv2.GaussianBlur(a.astype(np.float32), (3, 3), 0)[..., None]
        band = cv2.GaussianBlur(band.astype(np.float32), (3, 3), 0)[..., None]
        inside = out.astype(np.float32)
        cavity = 0.8 * CAVITY_RGB + 0.2 * inside
        painted = inside * (1 - a) + cavity * a
        painted = painted * (1 - band) + TEETH_RGB * band
        out = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
    return out


def viseme_poses(tracks: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """[frames, 4] poses from viseme tracks; the loudness driver's opening (0..1) scales each shape's opening."""
    poses = tracks @ SHAPE_POSE
    poses[:, 0] *= np.clip(LOUD_BASE + LOUD_GAIN * opening, 0.25, 1.2)
    return poses


SETTLE_S = 0.35      # a frame this far before the end of the speech read so far is final
LOUD_BASE, LOUD_GAIN = 0.15, 1.2    # opening scale = base + gain x loudness opening (0..1)

DESCRIPTIONS = {
    "visemes": "weight-free landmark warp driven by phonemes (whisper words, pocketsphinx phone alignment, six "
               "mouth shapes; no neural face model, nothing downloaded); an approximation of speech, not learned "
               "lip-sync",
    "loudness": "weight-free landmark warp driven by audio loudness and spectrum (no neural network, nothing "
                "downloaded); a visible approximation of speech, not learned lip-sync",
}


class WarpEngine:
    """`driver` "visemes" (timed phonemes -> mouth shapes) or "loudness"; `speech_cache` holds the joined
    multilingual whisper model (None: the generator's default). No model versions: the one asked for is ignored."""

    versions = None

    def __init__(self, driver: str = "visemes", speech_cache: str | None = None):
        if driver not in DESCRIPTIONS:
            raise ValueError(f"unknown warp driver {driver!r}")
        self.name = driver
        self.description = DESCRIPTIONS[driver]
        self.speech_cache = speech_cache
        self.speech: sp.Speech | None = None
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        return (True, "") if self.name == "loudness" else sp.installed()

    def check(self, version: str = "") -> None:
        ok, why = self.available()
        if not ok:
            raise EngineUnavailable(f"engine {self.name}: {why}")

    def _speech(self) -> sp.Speech:
        with self._lock:
            if self.speech is None:
                self.speech = sp.Speech(self.speech_cache)
            return self.speech

    def load(self) -> None:
        # a synthetic face: exercise the code paths once so the first request is not the slow one
        mesh = np.full((L.NUM_POINTS, 2), 128, np.float32)
        xs = np.linspace(100, 156, len(L.UPPER_INNER_LIP), dtype=np.float32)
        mesh[L.UPPER_INNER_LIP] = np.stack([xs, np.full_like(xs, 170)], 1)
        mesh[L.LOWER_INNER_LIP] = np.stack([xs, np.full_like(xs, 171)], 1)
        mesh[L.MOUTH_LEFT], mesh[L.MOUTH_RIGHT] = (96, 170), (160, 170)
        mesh[L.UPPER_LIP_TOP], mesh[L.LOWER_LIP_BOTTOM] = (128, 160), (128, 184)
        mesh[L.NOSE_BOTTOM], mesh[L.CHIN] = (128, 140), (128, 236)
        crop = np.full((CROP, CROP, 3), 160, np.uint8)
        warp_mouth(crop, mesh, np.full((CROP, CROP), 255, np.uint8), 0.5, 0.5, 0.5, 0.5)
        if self.name == "visemes":
            self._speech().multilingual()

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float, batch_size: int, *,
                 version: str = "", priority: str = INTERACTIVE) -> Generation:
        """`version` and `priority` are accepted and ignored (no model versions; no shared accelerator).
        `detail()` says which driver ran (set before the first batch is made)."""
        if sample_rate != sp.SAMPLE_RATE:
            raise ValueError(f"audio must be {sp.SAMPLE_RATE} Hz, got {sample_rate}")
        detail = [""]      # written by the crops as they learn which driver runs
        crops = self._crops(source, audio, sample_rate, fps, detail)
        return Generation(batched(crops, batch_size), lambda: detail[0])

    def _crop(self, source: SourceEntry, fps: float, t: int, pose: np.ndarray) -> np.ndarray:
        m = source.meta
        idx = source_frame(t, m.num_frames, m.fps, fps)
        if not source.has_face[idx]:
            return np.zeros((CROP, CROP, 3), np.uint8)
        return warp_mouth(source.crop(idx), source.mesh[idx], source.mask(idx), *map(float, pose))

    def _crops(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float,
               detail: list[str]) -> Iterator[np.ndarray]:
        """Every frame's crop in order; detail[0] says which driver made them."""
        drive = mouth_drive(audio, sample_rate, fps)
        n = len(drive.opening)
        loudness = np.stack([drive.opening, drive.width, np.zeros(n), np.zeros(n)], 1)
        detail[0] = "loudness: audio loudness and spectrum"
        if self.name == "loudness":
            yield from (self._crop(source, fps, t, loudness[t]) for t in range(n))
            return
        voiced = sp.speaking(audio, fps, n)
        done, transcript, failed = 0, None, ""
        steps = self._speech().steps(audio)
        while done < n:
            try:
                transcript, known = next(steps)
            except StopIteration:
                break
            except Exception as e:   # the speech models must never fail a request: loudness takes over
                log.exception("speech analysis failed; the loudness driver takes over")
                failed = f"{type(e).__name__}: {e}"
                break
            # frames are final once the speech read so far reaches past them (+ anticipation, smoothing)
            upto = n if known == np.inf else min(n, int((known - SETTLE_S) * fps))
            if transcript.phones and upto > done:
                poses = viseme_poses(sp.viseme_tracks(transcript.phones, fps, n, voiced), drive.opening)
                yield from (self._crop(source, fps, t, poses[t]) for t in range(done, upto))
                done = upto
        if done < n:
            why = f"speech analysis failed ({failed})" if failed else transcript.path
            detail[0] = (f"loudness fallback: {why}" if done == 0 else
                         f"{transcript.path}; loudness after {done / fps:.2f} s: {why}")
            yield from (self._crop(source, fps, t, loudness[t]) for t in range(done, n))
        else:
            detail[0] = transcript.path

    def open_live(self, source: SourceEntry, fps: float, on_crop, *, version: str = ""):
        """Live frames follow the loudness driver (warp/live.py): `visemes` says so in the session's detail."""
        from services.generator.engines.warp.live import WarpLive
        return WarpLive(self, source, fps, on_crop)

    def close(self) -> None:
        self.speech = None
