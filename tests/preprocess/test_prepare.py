"""Landmarks on a real portrait, the cache entry, and the no-face error (MediaPipe Face Mesh, real weights)."""
import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import SourceCache
from services.preprocess import crops as C
from lipsync_common.faces import landmarks as L
from lipsync_common.faces.landmarks import Landmarker
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
    assert (meta.width, meta.height) == (640, 480) and entry.crops_at(range(10)).shape == (10, 256, 256, 3)
    assert entry.has_face.all() and all(entry.mask(i).max() == 255 for i in range(10))
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
    assert list(entry.has_face) == [True, False, True] and entry.mask(1).max() == 0 and entry.crop(1).max() == 0


def test_the_entry_gives_back_the_frames_crops_and_masks_prepare_made(tmp_path, landmarker, monkeypatch):
    """The cache keeps the media, not the frames: decoded again they are the same pixels, and so are the crops;
    the masks come back as prepare made them. Checked against what prepare itself saw, forward and backward."""
    decoded, masks = [], []
    read_face_media, lower_face_mask = media.read_face_media, C.lower_face_mask

    def read_spy(*a, **kw):
        info, frames = read_face_media(*a, **kw)
        return info, (decoded.append(item[0].copy()) or item for item in frames)

    def mask_spy(*a, **kw):
        masks.append(lower_face_mask(*a, **kw))
        return masks[-1]
    monkeypatch.setattr(media, "read_face_media", read_spy)
    monkeypatch.setattr(C, "lower_face_mask", mask_spy)
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=40)
    cache = SourceCache(str(tmp_path / "cache"))
    meta, _ = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    monkeypatch.undo()
    entry = cache.get(meta.source_id)
    assert len(decoded) == meta.num_frames == 40 and entry.has_face.all()
    order = list(range(40)) + list(range(39, -1, -1)) + [5, 31, 0, 17]
    with entry.frame_reader(window=8) as reader:
        for i in order:
            assert np.array_equal(reader.get(i), decoded[i]), i
    crops = entry.crops_at(order)
    for k, i in enumerate(order):
        want = C.crop_face(decoded[i], tuple(int(v) for v in entry.boxes[i]))   # what prepare cropped
        assert np.array_equal(crops[k], want), i
    assert np.array_equal(entry.crop(7), crops[7])
    assert len(masks) == 40 and all(np.array_equal(entry.mask(i), masks[i]) for i in range(40))
    # the whole entry is the media file plus the crops (192 kB) and a few kB a frame (raw frames, crops and
    # masks were 1.2 MB a frame here)
    size = sum(f.stat().st_size for f in os.scandir(entry.path))
    assert size - os.path.getsize(path) < (196_608 + 12_000) * 40, size


def test_an_old_or_damaged_entry_is_prepared_again(tmp_path, landmarker):
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=6)
    cache = SourceCache(str(tmp_path / "cache"))
    meta, _ = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    entry_path = cache.path(meta.source_id)
    os.remove(os.path.join(entry_path, "mask_offsets.npy"))     # a volume that lost a file
    again, cached = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    assert not cached and again == meta and cache.get(meta.source_id).mask(0).max() == 255
    for name in os.listdir(entry_path):                          # the entry of format 1: raw frames
        os.remove(os.path.join(entry_path, name))
    json.dump({**dataclasses.asdict(meta), "format_version": 1}, open(os.path.join(entry_path, "meta.json"), "w"))
    for name in ("frames.u8", "crops.u8", "masks.u8"):
        open(os.path.join(entry_path, name), "wb").close()
    _, cached = prepare(path, sha(path), PrepareOptions(), cache, landmarker, 10**8, 1000)
    assert not cached and "masks.z" in os.listdir(entry_path)


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
