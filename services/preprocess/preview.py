"""What the preparation of a source decided, drawn on its first frame with a face: the crop box, the blend mask
(the region the generated mouth replaces, feathered) and the landmarks; MuseTalk's tuning view ("test
inpainting"). Reads a prepared cache entry; imports no gRPC."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lipsync_common.faces.landmarks import to_68
from lipsync_common.formats.source_cache import CROP, SourceEntry

BOX = (60, 220, 60)           # RGB: the crop box
MASK = (235, 60, 60)          # RGB: tint of the blend mask, by its alpha
POINTS = (40, 170, 255)       # RGB: the 68 landmarks
MESH = (255, 255, 255)        # RGB: the other Face Mesh points, faint


@dataclass(frozen=True)
class Preview:
    png: bytes                 # the drawing, RGB PNG at the frame's size
    frame: int                 # which source frame it shows
    box: tuple[int, int, int, int]
    bbox_shift_range: tuple[int, int]   # MuseTalk's "Manually adjust range : [ -a~b ]" as (-a, b)


def first_face(entry: SourceEntry) -> int:
    found = np.flatnonzero(entry.has_face)
    if len(found) == 0:
        raise ValueError("the source has no frame with a face")
    return int(found[0])


def draw(frame: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray, mesh_crop: np.ndarray,
         mask_opacity: float = 0.45) -> np.ndarray:
    """frame (RGB [H, W, 3]) with the crop box, the mask (uint8 [256, 256] over the box) tinted, and the points
    (Face Mesh in crop coordinates, 68 of them highlighted). Returns a new array."""
    out = np.array(frame, copy=True)
    h, w = out.shape[:2]
    x1, y1, x2, y2 = box
    alpha = cv2.resize(mask, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha *= mask_opacity / 255.0
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    region = out[cy1:cy2, cx1:cx2].astype(np.float32)
    a = alpha[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1, None]
    out[cy1:cy2, cx1:cx2] = (region * (1 - a) + np.array(MASK, np.float32) * a).round().astype(np.uint8)
    scale = np.array([(x2 - x1) / CROP, (y2 - y1) / CROP], np.float32)
    pts = mesh_crop * scale + np.array([x1, y1], np.float32)
    xy = np.round(pts).astype(int)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    out[xy[inside, 1], xy[inside, 0]] = MESH                      # the mesh: one pixel a point
    radius = max(1, (x2 - x1) // 90)                              # scales with the face, not the frame
    for x, y in to_68(pts):
        cv2.circle(out, (int(round(x)), int(round(y))), radius, POINTS, -1, cv2.LINE_AA)
    cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), BOX, max(1, (x2 - x1) // 120), cv2.LINE_8)
    return out


def preview(entry: SourceEntry) -> Preview:
    """The first frame with a face, drawn, as a PNG."""
    idx = first_face(entry)
    with entry.frame_reader(threads=1) as reader:
        frame = reader.get(idx)
    box = tuple(int(v) for v in entry.boxes[idx])
    image = draw(frame, box, entry.mask(idx), entry.mesh[idx])
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok, "PNG encoding failed"
    return Preview(png=png.tobytes(), frame=idx, box=box,
                   bbox_shift_range=tuple(int(v) for v in entry.meta.bbox_shift_range))
