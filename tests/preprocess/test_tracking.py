"""Tracking and smoothing on real faces: a face moved along a known path, jitter on real footage, face choice."""
import hashlib

import numpy as np
import pytest

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import SourceCache
from services.preprocess import crops as C
from lipsync_common.faces.landmarks import Landmarker, to_68
from services.preprocess.prepare import PrepareOptions, prepare
from services.preprocess.smoothing import LandmarkSmoother, box_jitter
from tests import helpers


@pytest.fixture(scope="module")
def landmarker():
    return Landmarker()


def prepared(path, tmp_path, landmarker, **opts):
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache = SourceCache(str(tmp_path / "cache"))
    meta, _ = prepare(path, digest, PrepareOptions(**opts), cache, landmarker, 4096 * 2304, 1000)
    return cache.get(meta.source_id)


def test_box_follows_a_face_moving_on_a_known_path(tmp_path, landmarker):
    img = helpers.face_image()
    path = [(int(300 + 250 * np.sin(i / 8)), int(100 + 60 * np.cos(i / 11))) for i in range(40)]
    frames = []
    for x, y in path:
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        canvas[y:y + 512, x:x + 512] = img
        frames.append(canvas)
    video = helpers.write_video(str(tmp_path / "moving.mp4"), frames)
    for smoothing in (False, True):
        entry = prepared(video, tmp_path, landmarker, smoothing=smoothing)
        assert entry.has_face.all()
        b = entry.boxes.astype(np.float64)
        off = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1) - np.array(path, np.float64)
        # the face moves up to 31 px a frame; its box keeps the same place on it within a few pixels
        assert np.abs(off - np.median(off, axis=0)).max() <= 6.0, smoothing


def test_smoothing_lowers_jitter_on_real_footage(landmarker, shared_file):
    info, frames = media.read_face_media(shared_file("yongen.mp4"), 10**9, 10**6)
    raw, smooth = [], []
    smoother = LandmarkSmoother(info.fps)
    with landmarker.session() as session:
        for _, frame in zip(range(100), frames):
            pts = session.process(frame)
            assert pts is not None
            raw.append(C.crop_box(to_68(pts), info.width, info.height))
            smooth.append(C.crop_box(to_68(smoother(pts)), info.width, info.height))
    ok = np.ones(len(raw), bool)
    before, after = box_jitter(np.array(raw), ok), box_jitter(np.array(smooth), ok)
    assert before > 0.3 and after < 0.6 * before, (before, after)


def test_one_euro_restarts_at_a_cut_and_is_still_on_a_still_face():
    pts = np.random.default_rng(0).uniform(100, 300, (468, 2))
    s = LandmarkSmoother(25)
    for _ in range(5):
        out = s(pts)
    assert np.allclose(out, pts, atol=1e-4)
    moved = pts + 600          # a new shot: no sliding across the cut
    assert np.allclose(s(moved), moved)
    noisy = [moved + np.random.default_rng(i).normal(0, 1.0, moved.shape) for i in range(50)]
    outs = np.array([s(p) for p in noisy])
    assert outs[10:].std(axis=0).mean() < 0.5 * np.array(noisy)[10:].std(axis=0).mean()


def test_box_jitter_measures_noise_not_motion():
    rng = np.random.default_rng(0)
    t = np.arange(400, dtype=np.float64)
    still = np.stack([100 + rng.normal(0, 1, 400), 100 + rng.normal(0, 1, 400)], 1)
    boxes = np.concatenate([still - 50, still + 50], 1)
    assert 0.8 < box_jitter(boxes, np.ones(400, bool)) < 1.2
    moving = np.stack([100 + 3 * t, 100 + 2 * t], 1)
    assert box_jitter(np.concatenate([moving - 50, moving + 50], 1), np.ones(400, bool)) < 1e-9
    assert np.isnan(box_jitter(boxes[:2], np.ones(2, bool)))


def test_face_choice_by_index_and_by_hint(tmp_path, landmarker):
    import cv2
    img = helpers.face_image()
    small = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((600, 1000, 3), 90, np.uint8)
    canvas[40:552, 20:532] = img          # the large face, left
    canvas[150:406, 700:956] = small      # the small face, right
    frames = [canvas] * 4
    video = helpers.write_video(str(tmp_path / "two.mp4"), frames)
    largest = prepared(video, tmp_path, landmarker)
    second = prepared(video, tmp_path, landmarker, face_index=1)
    hinted = prepared(video, tmp_path, landmarker, face_hint=(680.0, 130.0, 980.0, 420.0))
    cx = lambda e: (e.boxes[:, 0] + e.boxes[:, 2]) / 2   # noqa: E731
    assert (cx(largest) < 532).all()
    assert (cx(second) > 700).all() and (cx(hinted) > 700).all()
    assert second.meta.source_id != hinted.meta.source_id != largest.meta.source_id


def test_a_scene_cut_is_followed_at_once(tmp_path, landmarker):
    img = helpers.face_image()
    frames = []
    for i in range(16):
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        x = 40 if i < 8 else 720                       # the face jumps across the frame at frame 8
        canvas[100:612, x:x + 512] = img
        frames.append(canvas)
    entry = prepared(helpers.write_video(str(tmp_path / "cut.mp4"), frames), tmp_path, landmarker)
    cx = (entry.boxes[:, 0] + entry.boxes[:, 2]) / 2
    assert entry.has_face.all()
    before, after = cx[:8] - 40, cx[8:] - 720           # the box's place on the face, before and after
    assert np.abs(after - np.median(before)).max() <= 6    # no sliding across the cut, no lag after it
