"""Renderer: parallel compositing gives the same file as serial, frames in order, and a bounded mask cache."""
import hashlib

import numpy as np
import pytest

from lipsync_common.source_cache import SourceCache
from services.preprocess.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, prepare
from services.render.render import Renderer, RenderError
from tests import helpers


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    path = helpers.face_video(str(tmp / "v.mp4"), n=12)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache = SourceCache(str(tmp / "cache"))
    meta, _ = prepare(path, digest, PrepareOptions(), cache, Landmarker(), 10**8, 1000)
    return cache.get(meta.source_id)


def render(entry, crops, threads, batch=5):
    out = []
    r = Renderer(entry, 25.0, len(crops), out.append, threads=threads)
    for i in range(0, len(crops), batch):
        r.add(i, crops[i:i + batch])
    r.finish()
    return b"".join(out)


def test_threads_give_the_same_file(entry):
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (30, 256, 256, 3), dtype=np.uint8)   # 30 output frames over 12 source frames
    serial = render(entry, crops, threads=0)
    parallel = render(entry, crops, threads=3)
    assert len(serial) > 1000 and parallel == serial
    assert render(entry, crops[::-1].copy(), threads=3) != serial       # the crops do matter


def test_out_of_order_and_too_many_crops(entry):
    r = Renderer(entry, 25.0, 3, lambda b: None, threads=2)
    crops = np.zeros((2, 256, 256, 3), np.uint8)
    with pytest.raises(RenderError, match="expected frame 0"):
        r.add(1, crops)
    r.add(0, crops)
    with pytest.raises(RenderError, match="more crops"):
        r.add(2, crops)
    r.abort()
    with pytest.raises(RenderError, match="stopped"):
        r.add(2, crops[:1])
