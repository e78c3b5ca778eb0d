"""Face landmarks for every frame with MediaPipe Face Mesh (weights ship inside the mediapipe wheel).

Face Mesh gives 468 points; MuseTalk's crop rule is written for the 68-point (iBUG/dlib) layout, so
`to_68` picks the Face Mesh point that sits where each of the 68 points does.
"""
from __future__ import annotations

import numpy as np

# Face Mesh index for each iBUG-68 point: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67.
MESH_TO_68 = np.array([
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])

# Lip and face points the warp engine and the masks use.
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17
UPPER_INNER, LOWER_INNER = 13, 14
NOSE_BOTTOM, CHIN = 2, 152
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
NUM_POINTS = 468


def to_68(mesh: np.ndarray) -> np.ndarray:
    """(..., 468, 2) Face Mesh points -> (..., 68, 2) in the iBUG layout."""
    return mesh[..., MESH_TO_68, :]


class Landmarker:
    """Runs Face Mesh frame by frame in tracking mode (the detector runs only when tracking is lost).

    Load once, open a `session` per source, `close` at the end.
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp  # heavy import, kept local to the model's lifecycle

        self._mp = mp
        self.max_faces = max_faces
        self.min_confidence = min_confidence

    def _mesh(self, static: bool):
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=self.max_faces, refine_landmarks=False,
            min_detection_confidence=self.min_confidence, min_tracking_confidence=self.min_confidence)

    def session(self, static: bool = False) -> "LandmarkSession":
        """A per-source session: tracking state is kept from one frame to the next."""
        return LandmarkSession(self._mesh(static))

    def close(self) -> None:
        pass


class LandmarkSession:
    def __init__(self, mesh):
        self.mesh = mesh

    def process(self, rgb: np.ndarray, face_index: int = -1) -> np.ndarray | None:
        """468 points (pixels) of the largest face, or of the `face_index`-th largest; None when absent."""
        h, w = rgb.shape[:2]
        result = self.mesh.process(rgb)
        faces = []
        for lms in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in lms.landmark[:NUM_POINTS]], np.float32)
            span = pts.max(0) - pts.min(0)
            faces.append((float(span[0] * span[1]), pts))
        faces.sort(key=lambda f: -f[0])
        k = 0 if face_index < 0 else face_index
        return faces[k][1] if k < len(faces) else None

    def close(self) -> None:
        self.mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
