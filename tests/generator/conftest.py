import hashlib

import pytest

from lipsync_common.formats.source_cache import SourceCache
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, prepare
from tests import helpers


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The portrait prepared into a source cache (crops, Face Mesh, masks), and the Landmarker that did it."""
    folder = tmp_path_factory.mktemp("face")
    path = helpers.write_png(str(folder / "f.png"), helpers.face_image())
    cache = SourceCache(str(folder / "cache"))
    lm = Landmarker()
    meta, _ = prepare(path, hashlib.sha256(open(path, "rb").read()).hexdigest(), PrepareOptions(), cache, lm,
                      10**8, 10)
    return cache.get(meta.source_id), lm
