"""One pass of face tracking per video, shared by every metric: landmarks, boxes and face crops.

Landmarks come from the preprocess service's tracker (MediaPipe Face Mesh, weights inside the wheel). Crops are
square, centred on the landmarks' box and 1.4x its larger side (whole face with a margin), resized per metric.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lipsync_common.formats import media
from lipsync_common.faces.points import LOWER_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER
from lipsync_common.faces.landmarks import Landmarker


@dataclass
class FaceTrack:
    frames: list[np.ndarray]    # T frames, uint8 [H, W, 3] RGB (a list: stacking long 4K clips would copy GBs)
    fps: float
    points: np.ndarray          # float32 [T, 468, 2] (NaN where no face)
    has_face: np.ndarray        # bool [T]

    def crops(self, size: int, scale: float = 1.4) -> np.ndarray:
        """uint8 [T, size, size, 3] square face crops (the frame centre where there is no face)."""
        t, (h, w) = len(self.frames), self.frames[0].shape[:2]
        out = np.zeros((t, size, size, 3), np.uint8)
        for i in range(t):
            if self.has_face[i]:
                lo, hi = self.points[i].min(0), self.points[i].max(0)
                cx, cy, side = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, scale * float((hi - lo).max())
            else:
                cx, cy, side = w / 2, h / 2, float(min(h, w))
            m = np.array([[size / side, 0, size / 2 - cx * size / side],
                          [0, size / side, size / 2 - cy * size / side]], np.float32)
            out[i] = cv2.warpAffine(self.frames[i], m, (size, size), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_CONSTANT)
        return out

    def mouth_opening(self) -> np.ndarray:
        """Inner-lip gap over mouth width per frame (NaN without a face)."""
        p = self.points
        gap = np.linalg.norm(p[:, UPPER_INNER] - p[:, LOWER_INNER], axis=1)
        width = np.linalg.norm(p[:, MOUTH_LEFT] - p[:, MOUTH_RIGHT], axis=1)
        return np.where(self.has_face, gap / np.maximum(width, 1e-6), np.nan)


def track(path: str, landmarker: Landmarker, max_frames: int = 18000, max_pixels: int = 3840 * 2160) -> FaceTrack:
    info, frames = media.read_face_media(path, max_pixels=max_pixels, max_frames=max_frames)
    kept, pts = [], []
    with landmarker.session(static=info.is_image) as session:
        for frame in frames:
            kept.append(frame)
            p = session.process(frame)
            pts.append(np.full((468, 2), np.nan, np.float32) if p is None else p)
    points = np.stack(pts).astype(np.float32)
    return FaceTrack(kept, info.fps or 25.0, points, ~np.isnan(points[:, 0, 0]))
