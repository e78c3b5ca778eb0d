"""The tuning preview: the first frame with a face, with what preparation decided drawn on it and nothing else
changed."""

import cv2
import numpy as np
import pytest

from services.preprocess.preview import BOX, preview
from tests import helpers


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    return helpers.prepared_entry(str(tmp_path_factory.mktemp("preview")), n=6)


def test_preview_draws_box_mask_and_points_and_leaves_the_rest(entry):
    p = preview(entry)
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(p.png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    with entry.frame_reader() as reader:
        frame = reader.get(p.frame)
    assert img.shape == frame.shape and p.frame == int(np.flatnonzero(entry.has_face)[0])
    x1, y1, x2, y2 = p.box
    outside = np.ones(frame.shape[:2], bool)
    outside[max(0, y1 - 3):y2 + 3, max(0, x1 - 3):x2 + 3] = False
    assert np.array_equal(img[outside], frame[outside])            # only the face region is drawn on
    assert tuple(img[(y1 + y2) // 2, x1]) == BOX                   # the crop box's left edge
    alpha = cv2.resize(entry.mask(p.frame), (x2 - x1, y2 - y1))
    ys, xs = np.nonzero(alpha > 200)
    tinted = img[y1 + ys, x1 + xs].astype(int) - frame[y1 + ys, x1 + xs].astype(int)
    assert (tinted[:, 0] > 0).mean() > 0.5                         # the mask region turns red
    assert p.bbox_shift_range == tuple(entry.meta.bbox_shift_range)
    assert p.bbox_shift_range[0] <= 0 <= p.bbox_shift_range[1]
