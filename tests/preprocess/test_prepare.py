"""Landmarks on a real portrait, the cache entry, and the no-face error (MediaPipe Face Mesh, real weights)."""
import hashlib
import os

import numpy as np
import pytest

from lipsync_common.source_cache import SourceCache
from services.preprocess import landmarks as L
from services.preprocess.landmarks import Landmarker
from services.preprocess.prepare import NoFaceError, PrepareOptions, prepare, source_id
from tests import helpers


@pytest.fixture(scope="module")
def landmarker():
    return Landmarker()


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_landmarks_on_the_portrait(landmarker):
    img = helpers.face_image()
    with landmarker.session(static=True) as s:
        pts = s.process(img)
    assert pts is not None and pts.shape == (468, 2)
    # the astronaut's mouth is near (224, 141) in the 512x512 picture
    mouth = (pts[L.MOUTH_LEFT] + pts[L.MOUTH_RIGHT]) / 2
    assert 190 < mouth[0] < 260 and 115 < mouth[1] < 170
    assert pts[L.CHIN, 1] > mouth[1] > pts[L.NOSE_BOTTOM, 1]
    lm68 = L.to_68(pts)
    assert lm68.shape == (68, 2) and lm68[8, 1] == pts[L.CHIN, 1]


def test_prepare_writes_a_complete_entry_once(tmp_path, landmarker):
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=10)
    cache = SourceCache(str(tmp_path / "cache"))
    seen = []
    meta, cached = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000,
                           progress=lambda d, t: seen.append(d))
    assert not cached and meta.num_frames == 10 and meta.frames_with_face == 10 and seen[-1] == 10
    lo, hi = meta.bbox_shift_range
    assert lo < 0 < hi
    entry = cache.get(meta.source_id)
    assert entry.frames.shape == (10, 480, 640, 3) and entry.crops.shape == (10, 256, 256, 3)
    assert entry.has_face.all() and (entry.masks.reshape(10, -1).max(1) == 255).all()
    x1, y1, x2, y2 = entry.boxes[0]
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert [n for n in os.listdir(cache.root) if n.startswith(".tmp")] == []
    again, cached = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    assert cached and again.source_id == meta.source_id
    other = source_id(sha(path), PrepareOptions(bbox_shift=5))
    assert other != meta.source_id


def test_options_change_the_crop(tmp_path, landmarker):
    path = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    cache = SourceCache(str(tmp_path / "cache"))
    boxes = {}
    for opts in (PrepareOptions("v1", 0), PrepareOptions("v1", 8), PrepareOptions("v15", 0, 10)):
        meta, _ = prepare(path, sha(path), opts, cache, landmarker, 10**8, 10)
        boxes[opts] = cache.get(meta.source_id).boxes[0]
    v1, shifted, v15 = boxes.values()
    assert shifted[1] == v1[1] + 16   # the anchor moves 8 down, the top follows twice as far (chin fixed)
    assert v15[3] == v1[3] + 10 and v15[1] == v1[1]


def test_no_face_anywhere_is_an_error_and_leaves_nothing(tmp_path, landmarker):
    frames = [np.full((240, 320, 3), 40 + 5 * i, np.uint8) for i in range(5)]
    path = helpers.write_video(str(tmp_path / "empty.mp4"), frames)
    cache = SourceCache(str(tmp_path / "cache"))
    with pytest.raises(NoFaceError, match="no face was found in any of the 5 frame"):
        prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    assert os.listdir(cache.root) == []


def test_frames_without_a_face_are_kept_and_flagged(tmp_path, landmarker):
    img = helpers.face_image()
    frames = [img, np.zeros_like(img), img]
    path = helpers.write_video(str(tmp_path / "mixed.mp4"), frames)
    cache = SourceCache(str(tmp_path / "cache"))
    meta, _ = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    entry = cache.get(meta.source_id)
    assert meta.num_frames == 3 and meta.frames_with_face == 2
    assert list(entry.has_face) == [True, False, True] and entry.masks[1].max() == 0


def scene(width=1280, height=720, faces=((256, 200, 150),)):
    """Portraits of the given (size, x, y) on a grey canvas."""
    import cv2
    canvas = np.full((height, width, 3), 100, np.uint8)
    for size, x, y in faces:
        canvas[y:y + size, x:x + size] = cv2.resize(helpers.face_image(), (size, size), interpolation=cv2.INTER_AREA)
    return canvas


def test_small_face_in_a_large_frame(landmarker):
    frame = scene(faces=((220, 900, 400),))
    with landmarker.session() as s:
        pts = s.process(frame)
        again = s.process(frame)          # tracked in the next frame
    assert pts is not None and again is not None
    assert 900 < pts[:, 0].min() and pts[:, 0].max() < 1120 and 400 < pts[:, 1].min()
    assert np.abs(again - pts).max() < 3


def test_largest_face_by_default_or_the_one_asked_for(landmarker):
    frame = scene(faces=((300, 100, 200), (200, 800, 300)))
    with landmarker.session(static=True) as s:
        largest = s.process(frame)
    with landmarker.session(static=True) as s:
        second = s.process(frame, face_index=1)
    with landmarker.session(static=True) as s:
        third = s.process(frame, face_index=2)
    assert largest[:, 0].max() < 400 and second[:, 0].min() > 800 and third is None
