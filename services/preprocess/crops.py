"""MuseTalk's crop rule, 256x256 crops and the lower-face blend mask, from landmarks.

The crop box follows MuseTalk's get_landmark_and_bbox on the 68-point layout: the box spans the landmarks'
x range and runs from the chin (lowest landmark) up to as far above nose point 29 as the chin is below it;
bbox_shift moves point 29 (+ down); v1.5 adds extra_margin pixels below. Unlike MuseTalk we clamp the box
to the frame instead of letting a negative top index wrap around.
"""
from __future__ import annotations

import cv2
import numpy as np

from lipsync_common.faces import landmarks as L

CROP = 256


def crop_box(lm68: np.ndarray, frame_w: int, frame_h: int, bbox_shift: int = 0,
             extra_margin: int = 0) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) for one frame's 68 landmarks (pixels)."""
    lm = lm68.astype(np.int32)
    anchor_y = int(lm[29, 1]) + int(bbox_shift)
    bottom = int(lm[:, 1].max())
    top = anchor_y - (bottom - anchor_y)
    x1, y1, x2, y2 = int(lm[:, 0].min()), int(top), int(lm[:, 0].max()), bottom
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        # MuseTalk falls back to the detector's box here; ours is the landmarks' own extent.
        x1, y1 = int(np.floor(lm68[:, 0].min())), int(np.floor(lm68[:, 1].min()))
        x2, y2 = int(np.ceil(lm68[:, 0].max())), int(np.ceil(lm68[:, 1].max()))
    y2 += int(extra_margin)
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(frame_w, x2), min(frame_h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ValueError("face box is degenerate after clamping to the frame")
    return x1, y1, x2, y2


def bbox_shift_range(lm68_frames: np.ndarray) -> tuple[int, int]:
    """The range MuseTalk prints for bbox_shift: [-mean(y30 - y29), mean(y29 - y28)] over frames with a face."""
    lm = lm68_frames.astype(np.int32)
    minus = (lm[:, 30, 1] - lm[:, 29, 1]).mean()
    plus = (lm[:, 29, 1] - lm[:, 28, 1]).mean()
    return -int(minus), int(plus)


def crop_face(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return cv2.resize(frame[y1:y2, x1:x2], (CROP, CROP), interpolation=cv2.INTER_LANCZOS4)


def to_crop_coords(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    scale = np.array([CROP / (x2 - x1), CROP / (y2 - y1)], np.float32)
    return ((points - np.array([x1, y1], np.float32)) * scale).astype(np.float32)


def lower_face_mask(mesh_crop: np.ndarray, feather: int = 15) -> np.ndarray:
    """uint8 [256, 256] alpha: the face below the nose, feathered; exactly 0 away from it.

    mesh_crop: the frame's 468 Face Mesh points in crop coordinates.
    """
    mask = np.zeros((CROP, CROP), np.uint8)
    oval = np.round(mesh_crop[L.FACE_OVAL]).astype(np.int32)
    cv2.fillPoly(mask, [oval], 255)
    # Keep the face from just below the nose down.
    top = int(round(mesh_crop[L.NOSE_BOTTOM, 1] + 0.25 * (mesh_crop[L.UPPER_LIP_TOP, 1] - mesh_crop[L.NOSE_BOTTOM, 1])))
    mask[:max(0, min(CROP, top))] = 0
    k = max(3, feather | 1)
    mask = cv2.erode(mask, np.ones((k // 2 | 1, k // 2 | 1), np.uint8))
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    mask[mask < 2] = 0
    return mask
