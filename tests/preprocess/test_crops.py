"""MuseTalk's crop rule on hand-made 68-point landmarks, and the mask/composite guarantees."""
import numpy as np
import pytest

from services.preprocess import crops as C
from services.render.render import composite


def face68(nose29=(100, 120), chin_y=200, x_range=(60, 140)):
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0] = np.linspace(*x_range, 68)
    lm[:, 1] = 110
    lm[28] = (100, nose29[1] - 8)
    lm[29] = nose29
    lm[30] = (100, nose29[1] + 10)
    lm[8] = (100, chin_y)
    return lm


def test_box_is_symmetric_about_nose_point_29():
    x1, y1, x2, y2 = C.crop_box(face68(), 640, 480)
    # chin at 200 is 80 below point 29 (y=120), so the top is 80 above it
    assert (x1, y1, x2, y2) == (60, 40, 140, 200)


def test_bbox_shift_moves_the_anchor_and_v15_margin_extends_the_bottom():
    assert C.crop_box(face68(), 640, 480, bbox_shift=10)[1] == 60   # anchor 130, chin 70 below -> top 60
    assert C.crop_box(face68(), 640, 480, bbox_shift=-10)[1] == 20
    assert C.crop_box(face68(), 640, 480, extra_margin=10)[3] == 210


def test_box_is_clamped_to_the_frame():
    x1, y1, x2, y2 = C.crop_box(face68(nose29=(100, 60), chin_y=230), 640, 235, extra_margin=10)
    assert y1 == 0 and y2 == 235


def test_bbox_shift_range_is_musetalks():
    lm = np.stack([face68(), face68()])
    assert C.bbox_shift_range(lm) == (-10, 8)


def test_composite_keeps_every_pixel_outside_the_mask():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    crop = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    box = (40, 20, 120, 100)
    alpha = np.zeros((80, 80), np.uint8)
    alpha[40:70, 10:70] = 255
    alpha[35:40, 10:70] = 100
    out = composite(frame, crop, box, alpha)
    full = np.zeros(frame.shape[:2], np.uint8)
    full[20:100, 40:120] = alpha
    assert np.array_equal(out[full == 0], frame[full == 0])
    assert not np.array_equal(out[full == 255], frame[full == 255])


@pytest.mark.parametrize("shift", [-5, 0, 5])
def test_mask_is_lower_face_only(shift):
    mesh = np.zeros((468, 2), np.float32)
    from lipsync_common.faces import landmarks as L
    t = np.linspace(0, 2 * np.pi, len(L.FACE_OVAL), endpoint=False)
    mesh[L.FACE_OVAL] = np.stack([128 + 110 * np.sin(t), 128 - 120 * np.cos(t)], 1)
    mesh[L.NOSE_BOTTOM] = (128, 140 + shift)
    mesh[L.UPPER_LIP_TOP] = (128, 160 + shift)
    mask = C.lower_face_mask(mesh)
    assert mask[:140 + shift].max() == 0           # nothing above the nose
    assert mask[200, 128] == 255                   # the chin area is fully generated
    assert mask[128, 5] == 0 and mask[250, 5] == 0  # outside the face oval


def test_colour_matching_moves_the_crop_towards_the_frame_and_keeps_the_outside():
    rng = np.random.default_rng(1)
    frame = np.clip(rng.normal(150, 10, (200, 200, 3)), 0, 255).astype(np.uint8)
    crop = np.clip(rng.normal(90, 30, (256, 256, 3)), 0, 255).astype(np.uint8)     # darker, a colour cast
    box = (40, 40, 160, 160)
    alpha = np.zeros((120, 120), np.uint8)
    alpha[60:110, 20:100] = 255
    plain = composite(frame, crop, box, alpha)
    matched = composite(frame, crop, box, alpha, color_match=True)
    inside = (slice(100, 150), slice(60, 140))
    for out in (plain, matched):
        keep = np.ones((200, 200), bool)
        keep[inside] = False
        assert np.array_equal(out[keep], frame[keep])
    assert abs(plain[inside].mean() - 150) > 40 and abs(matched[inside].mean() - 150) < 3
    assert abs(matched[inside].std() - frame[inside].std()) < 3
