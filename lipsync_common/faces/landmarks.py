"""Face landmarks for every frame with MediaPipe Face Mesh (weights ship inside the mediapipe wheel).

Face Mesh gives 468 points; MuseTalk's crop rule is written for the 68-point (iBUG/dlib) layout, so
`to_68` picks the Face Mesh point that sits where each of the 68 points does.
"""
from __future__ import annotations

import numpy as np

from lipsync_common.faces.points import (  # noqa: F401 - re-exported for the preprocess modules
    CHIN, FACE_OVAL, LOWER_INNER, LOWER_INNER_LIP, LOWER_LIP_BOTTOM, MESH_TO_68, MOUTH_LEFT, MOUTH_RIGHT,
    NOSE_BOTTOM, NUM_POINTS, UPPER_INNER, UPPER_INNER_LIP, UPPER_LIP_TOP)


def to_68(mesh: np.ndarray) -> np.ndarray:
    """(..., 468, 2) Face Mesh points -> (..., 68, 2) in the iBUG layout."""
    return mesh[..., MESH_TO_68, :]


class Landmarker:
    """Face Mesh on a window around the face, so that small faces in large frames are found too.

    The full-range face detector (BlazeFace, up to ~5 m) finds the face when there is no window yet (and when
    it finds none, Face Mesh's own close-range detector looks at the whole frame); Face Mesh
    then runs in tracking mode on a square window that follows the landmarks from frame to frame, and the
    detector runs again only when the face is lost. Load once, open a `session` per source, `close` at the end.
    """

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp  # heavy import, kept local to the model's lifecycle

        self._mp = mp
        self.min_confidence = min_confidence

    def session(self, static: bool = False) -> "LandmarkSession":
        """A per-source session: tracking state is kept from one frame to the next."""
        mp = self._mp
        mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=self.min_confidence, min_tracking_confidence=self.min_confidence)
        detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                              min_detection_confidence=self.min_confidence)
        verifier = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                   min_detection_confidence=self.min_confidence)
        return LandmarkSession(mesh, verifier, detector)

    def close(self) -> None:
        pass


def _square(cx: float, cy: float, side: float) -> tuple[int, int, int]:
    side = max(int(round(side)), 32)
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def _window(rgb: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The square [x0, x0+side) x [y0, y0+side) of the frame, padded with black where it leaves the frame."""
    h, w = rgb.shape[:2]
    out = np.zeros((side, side, 3), np.uint8)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if xb > xa and yb > ya:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = rgb[ya:yb, xa:xb]
    return out


def _iou(a, b) -> float:
    ax, ay, aw, ah = a[1:]
    bx, by, bw, bh = b[1:]
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter + 1e-9)


class LandmarkSession:
    def __init__(self, mesh, verifier, detector):
        self.mesh = mesh          # tracks the face in its window from frame to frame
        self.verifier = verifier  # static: confirms a detector candidate
        self.detector = detector
        self.window: tuple[int, int, int] | None = None
        # a box (x1, y1, x2, y2) that names the face to follow; it then moves with that face, so a re-detection
        # after a loss picks the face nearest to where it was
        self.hint: tuple[float, float, float, float] | None = None
        self.redetect_every = 5   # while no face is tracked, fine tiles on every 5th frame only
        self._misses = 0

    def _boxes(self, rgb: np.ndarray, x0: int = 0, y0: int = 0) -> list[tuple[float, float, float, float, float]]:
        """(score, x, y, w, h) in frame pixels for each face the detector sees in rgb (a tile at x0, y0)."""
        h, w = rgb.shape[:2]
        out = []
        for d in self.detector.process(np.ascontiguousarray(rgb)).detections or []:
            b = d.location_data.relative_bounding_box
            out.append((float(d.score[0]), x0 + b.xmin * w, y0 + b.ymin * h, b.width * w, b.height * h))
        return out

    def _detect(self, rgb: np.ndarray, fine: bool = True) -> list[tuple[int, int, int]]:
        """Windows around candidate faces, largest first; Face Mesh confirms them.

        The detector sees the frame at 192 px, so small faces are looked for in overlapping tiles of half the
        short side too, then of a quarter and so on (down to 384 px)
        while none is found. Runs when no face is tracked: the first frame, after a loss, then every
        `redetect_every` frames while there is none."""
        h, w = rgb.shape[:2]
        found = self._boxes(rgb)
        side = min(h, w) // 2
        # finer tiles only while nothing is found: a 4K frame needs ~500 px tiles for a 50 px face
        while side == min(h, w) // 2 or (fine and side >= 384 and not found):
            stride = max(side // 2, 1)
            for y in range(0, max(1, h - side + stride), stride):
                for x in range(0, max(1, w - side + stride), stride):
                    found += self._boxes(rgb[y:y + side, x:x + side], x, y)
            side //= 2
        faces: list[tuple[float, float, float, float, float]] = []
        for f in sorted(found, key=lambda f: -f[0]):   # drop duplicates of a face seen in several tiles
            if all(_iou(f, g) < 0.3 for g in faces):
                faces.append(f)
        faces.sort(key=lambda f: -f[3] * f[4])
        return [_square(x + bw / 2, y + bh / 2, 2.0 * max(bw, bh)) for _, x, y, bw, bh in faces]

    def _mesh(self, rgb: np.ndarray, window: tuple[int, int, int], mesh=None) -> np.ndarray | None:
        x0, y0, side = window
        result = (mesh or self.mesh).process(_window(rgb, x0, y0, side))
        if not result.multi_face_landmarks:
            return None
        lms = result.multi_face_landmarks[0].landmark[:NUM_POINTS]
        return np.array([(x0 + p.x * side, y0 + p.y * side) for p in lms], np.float32)

    def process(self, rgb: np.ndarray, face_index: int = -1) -> np.ndarray | None:
        """468 points (frame pixels) of the largest face, or of the `face_index`-th largest; None when absent."""
        pts = self._mesh(rgb, self.window) if self.window is not None else None
        if pts is None:
            self.window = None
            # candidates are confirmed by a static Face Mesh (false detections give no mesh); the detector
            # misses faces that fill the frame, so then Face Mesh looks at the whole frame itself
            h, w = rgb.shape[:2]
            k = max(face_index, 0)
            by_hint = self.hint is not None
            candidates = self._detect(rgb, fine=self._misses % self.redetect_every == 0) + ([(0, 0, max(h, w))] if face_index <= 0 or by_hint else [])
            confirmed, best = 0, 0.0
            for window in candidates:
                found = self._mesh(rgb, window, self.verifier)
                if found is None:
                    continue
                if by_hint:
                    lo, hi = found.min(0), found.max(0)
                    score = _iou((0, lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]),
                                 (0, self.hint[0], self.hint[1], self.hint[2] - self.hint[0],
                                  self.hint[3] - self.hint[1]))
                    if score > best:
                        pts, best = found, score
                    continue
                if confirmed == k:
                    pts = found
                    break
                confirmed += 1
        if pts is None:
            self._misses += 1
            return None
        self._misses = 0
        lo, hi = pts.min(0), pts.max(0)
        if self.hint is not None:
            self.hint = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        self.window = _square((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 1.6 * float((hi - lo).max()))
        return pts

    def close(self) -> None:
        self.mesh.close()
        self.verifier.close()
        self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
