"""Temporal smoothing of face landmarks, and the jitter figure it is judged by.

A One Euro filter (Casiez, Roussel, Vogel, CHI 2012): an exponential smoother whose cutoff frequency rises with
the speed of the signal, so a still head is smoothed hard (detector jitter removed) and a moving head is followed
with little lag. Two choices of ours:
- speeds are measured in face sizes per second (the landmarks' extent), so one setting fits every resolution;
- the whole face shares one cutoff (the mean speed of its points): points smoothed at different rates would
  bend the face shape.
Defaults chosen on two clips: yongen.mp4 (real footage, 150 frames) box jitter 0.66 -> 0.27 px per axis, and a face
moving at up to 31 px per frame across a 720p frame followed within 2.5 px.
A jump of more than `cut_jump` face sizes from one frame to the next is a new shot: the filter restarts there
instead of sliding the face across the cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothingParams:
    min_cutoff: float = 1.0     # Hz, for a still face
    beta: float = 20.0          # added Hz per face size per second of speed
    d_cutoff: float = 2.0       # Hz, for the speed estimate
    cut_jump: float = 0.35      # face sizes between consecutive frames that mean a new shot


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class LandmarkSmoother:
    """Feed each frame's points in order: (P, 2) pixels in, smoothed (P, 2) out; `reset` when the face is lost."""

    def __init__(self, fps: float, params: SmoothingParams = SmoothingParams()):
        self.dt = 1.0 / fps if fps > 0 else 1.0 / 25
        self.p = params
        self.reset()

    def reset(self) -> None:
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        scale = max(float(np.ptp(pts, axis=0).max()), 1.0)
        if self.x is None or np.abs(pts - self.x).mean() > self.p.cut_jump * scale:
            self.x, self.dx = pts.copy(), np.zeros_like(pts)
            return pts.astype(np.float32)
        speed = (pts - self.x) / (self.dt * scale)
        self.dx += _alpha(self.p.d_cutoff, self.dt) * (speed - self.dx)
        cutoff = self.p.min_cutoff + self.p.beta * float(np.linalg.norm(self.dx, axis=1).mean())
        self.x += _alpha(cutoff, self.dt) * (pts - self.x)
        return self.x.astype(np.float32)


def box_jitter(boxes: np.ndarray, has_face: np.ndarray) -> float:
    """Frame-to-frame noise of the crop box centre, in pixels (per axis).

    The RMS of the centre's second difference (over x and y) over runs of frames with a face, divided by sqrt(6): for a still
    head with independent per-frame noise of standard deviation s this is s, while smooth head motion (nearly
    constant speed over three frames) adds little to it. NaN with fewer than three consecutive face frames."""
    boxes = np.asarray(boxes, np.float64)
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    ok = np.asarray(has_face, bool)
    valid = ok[2:] & ok[1:-1] & ok[:-2]
    if not valid.any():
        return float("nan")
    second = centre[2:] - 2 * centre[1:-1] + centre[:-2]
    return float(np.sqrt((second[valid] ** 2).mean() / 6))
