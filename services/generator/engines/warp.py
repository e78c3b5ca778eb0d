"""The weight-free engine: the face's own lips and jaw, moved by the audio with a landmark-driven warp.

No neural network and no download. Per frame the audio gives a target mouth opening and width
(audio_features.py); the lower lip and jaw are displaced to that opening (or pulled up to close a mouth that is
open in the source), the upper lip lifts a little, the corners spread or round, and the gap between the lips is
painted as a dark mouth cavity with a hint of upper teeth. Everything is computed from the 468 Face Mesh points
in crop coordinates, so it follows the face's own shape, identity and lighting. It is a cartoon of speech,
driven by loudness and a coarse spectral shape: it does not know phonemes (lips do not close on m/b/p).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from lipsync_common.source_cache import CROP, SourceEntry, source_frame
from services.generator.audio_features import mouth_drive
from services.generator.engines.base import batched
from lipsync_common import face_points as L

MAX_GAP = 0.45      # widest opening, as a share of mouth width
LIFT = 0.15         # upper lip lift, as a share of the opening
SPREAD = 0.07       # corner movement at width +-1, as a share of mouth width
CAVITY_RGB = np.array([38, 14, 18], np.float32)
TEETH_RGB = np.array([214, 208, 196], np.float32)

_YY, _XX = np.mgrid[0:CROP, 0:CROP].astype(np.float32)


def _line(points: np.ndarray) -> np.ndarray:
    """y of a lip contour at every x column (end values held beyond the corners)."""
    order = np.argsort(points[:, 0])
    return np.interp(_XX[0], points[order, 0], points[order, 1]).astype(np.float32)


def _bump(x: np.ndarray, centre: float, half: float) -> np.ndarray:
    u = (x - centre) / max(half, 1.0)
    return np.where(np.abs(u) < 1, np.cos(np.pi / 2 * u) ** 2, 0.0).astype(np.float32)


def warp_mouth(crop: np.ndarray, mesh: np.ndarray, mask: np.ndarray, opening: float, width: float) -> np.ndarray:
    """One 256x256 RGB crop with the mouth set to `opening` (0..1) and `width` (-1..1)."""
    left, right = mesh[L.MOUTH_LEFT], mesh[L.MOUTH_RIGHT]
    cx = float(left[0] + right[0]) / 2
    mw = float(np.hypot(*(right - left)))
    inner_half = abs(float(mesh[308, 0] - mesh[78, 0])) / 2
    y_u = _line(mesh[L.UPPER_INNER_LIP])          # source upper inner lip edge per column
    y_l = np.maximum(_line(mesh[L.LOWER_INNER_LIP]), y_u)
    gap0_c = float(max(0.0, mesh[L.LOWER_INNER, 1] - mesh[L.UPPER_INNER, 1]))
    lens = _bump(_XX[0], cx, inner_half)           # opening profile between the inner corners
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
        teeth_h = np.minimum(0.3 * g, 0.08 * mw) * lens[None, :]
        teeth = np.clip(top + teeth_h - yy + 0.5, 0, 1) * a * 0.8
        a = cv2.GaussianBlur(a.astype(np.float32), (3, 3), 0)[..., None]
        teeth = cv2.GaussianBlur(teeth.astype(np.float32), (3, 3), 0)[..., None]
        inside = out.astype(np.float32)
        cavity = 0.8 * CAVITY_RGB + 0.2 * inside
        painted = inside * (1 - a) + cavity * a
        painted = painted * (1 - teeth) + TEETH_RGB * teeth
        out = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
    return out


class WarpEngine:
    name = "warp"
    description = ("weight-free landmark warp driven by audio loudness and spectrum (no neural network, "
                   "nothing downloaded); a visible approximation of speech, not learned lip-sync")

    def available(self) -> tuple[bool, str]:
        return True, ""

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
        warp_mouth(crop, mesh, np.full((CROP, CROP), 255, np.uint8), 0.5, 0.5)

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float,
                 batch_size: int) -> Iterator[np.ndarray]:
        drive = mouth_drive(audio, sample_rate, fps)
        m = source.meta

        def crops():
            for t in range(len(drive.opening)):
                idx = source_frame(t, m.num_frames, m.fps, fps)
                if not source.has_face[idx]:
                    yield np.zeros((CROP, CROP, 3), np.uint8)
                    continue
                yield warp_mouth(np.asarray(source.crops[idx]), source.mesh[idx], np.asarray(source.masks[idx]),
                                 float(drive.opening[t]), float(drive.width[t]))

        return batched(crops(), batch_size)

    def close(self) -> None:
        pass
