"""CSIM with dlib's descriptor: a face with itself ~1, lower across different faces."""
import numpy as np

from lipsync_common.formats import media
from services.evaluator.csim import DlibEmbedder, cosine
from lipsync_common.faces.landmarks import Landmarker
from tests import helpers


def mesh(lm, img):
    with lm.session(static=True) as s:
        return s.process(img)


def test_same_face_near_one_other_face_lower(shared_file):
    yongen = shared_file("yongen.mp4")
    lm, emb = Landmarker(), DlibEmbedder()
    face = helpers.face_image()
    moved = np.roll(face, 6, axis=1)
    noisy = np.clip(face + np.random.default_rng(0).normal(0, 6, face.shape), 0, 255).astype(np.uint8)
    _, frames = media.read_face_media(yongen, 10**9, 10**5)
    other = next(frames)
    ref = emb(face, mesh(lm, face))
    assert cosine(ref, emb(moved, mesh(lm, moved))) > 0.98
    assert cosine(ref, emb(noisy, mesh(lm, noisy))) > 0.97
    assert cosine(ref, emb(other, mesh(lm, other))) < 0.9
