"""Footage users send: a rotated phone video, 30 fps, HEVC, a tiny 160p face, 4K - each prepared correctly."""
import hashlib

import cv2
import numpy as np
import pytest

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import SourceCache
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, prepare
from tests import helpers


@pytest.fixture(scope="module")
def landmarker():
    return Landmarker()


def prepare_file(path, tmp_path, landmarker):
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache = SourceCache(str(tmp_path / "cache"))
    meta, _ = prepare(path, digest, PrepareOptions(), cache, landmarker, 3840 * 2160, 1000)
    return cache.get(meta.source_id)


def portrait(h=640, w=360, face=300):
    canvas = np.full((h, w, 3), 90, np.uint8)
    img = cv2.resize(helpers.face_image(), (face, face), interpolation=cv2.INTER_AREA)
    y, x = (h - face) // 2, (w - face) // 2
    canvas[y:y + face, x:x + face] = img
    return canvas


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_phone_video_is_turned_upright(tmp_path, landmarker, rotation):
    upright = portrait()
    turns = (rotation // 90) % 4
    stored = np.ascontiguousarray(np.rot90(upright, -turns))     # what the phone's sensor wrote
    path = helpers.write_video(str(tmp_path / "phone.mp4"), [stored] * 3, fps=30, rotation=rotation)
    info, frames = media.read_face_media(path, 10**8, 100)
    first = next(frames)
    assert (info.width, info.height, info.rotation % 360) == (360, 640, rotation % 360)
    assert first.shape == (640, 360, 3)
    assert np.abs(first.astype(int) - upright).mean() < 6          # the displayed picture, not the stored one
    entry = prepare_file(path, tmp_path, landmarker)
    assert entry.has_face.all() and (entry.meta.height, entry.meta.width) == (640, 360)
    with entry.frame_reader() as reader:                            # decoded again, upright again
        assert np.array_equal(reader.get(0), first)
    x1, y1, x2, y2 = entry.boxes[0]
    assert 30 < (x1 + x2) / 2 < 330 and 170 < (y1 + y2) / 2 < 470


@pytest.mark.parametrize("codec,fps,size", [("libx264", 30, (640, 480)), ("hevc", 29.97, (640, 480)),
                                            ("libx264", 60, (640, 480))])
def test_codecs_and_frame_rates(tmp_path, landmarker, codec, fps, size):
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=6, fps=fps, size=size, codec=codec)
    entry = prepare_file(path, tmp_path, landmarker)
    assert entry.has_face.all() and abs(entry.meta.fps - fps) < 0.01


def test_tiny_160p_face(tmp_path, landmarker):
    canvas = np.full((160, 284, 3), 90, np.uint8)
    canvas[10:150, 72:212] = cv2.resize(helpers.face_image(), (140, 140), interpolation=cv2.INTER_AREA)
    path = helpers.write_video(str(tmp_path / "tiny.mp4"), [canvas] * 4)
    entry = prepare_file(path, tmp_path, landmarker)
    assert entry.has_face.all()
    x1, y1, x2, y2 = entry.boxes[0]
    assert 72 <= x1 < x2 <= 212 and 10 <= y1 < y2 <= 160


@pytest.mark.parametrize("side", [1024, 256])   # the portrait's face is ~1/5 of it: ~200 px and ~50 px
def test_4k_frame(tmp_path, landmarker, side):
    canvas = np.full((2160, 3840, 3), 90, np.uint8)
    canvas[1000:1000 + side, 2600:2600 + side] = cv2.resize(helpers.face_image(), (side, side),
                                                           interpolation=cv2.INTER_AREA)
    path = helpers.write_video(str(tmp_path / "uhd.mp4"), [canvas] * 2)
    entry = prepare_file(path, tmp_path, landmarker)
    assert entry.has_face.all() and (entry.meta.height, entry.meta.width) == (2160, 3840)
    x1, y1, x2, y2 = entry.boxes[0]
    assert 2600 <= x1 < x2 <= 2600 + side and 1000 <= y1 < y2 <= 1000 + side
