"""The warp engine moves the mouth of a real face, measured by re-detecting landmarks on its output."""

import numpy as np

from services.generator.engines.warp.engine import WarpEngine, warp_mouth
from lipsync_common.faces import landmarks as L
from tests import helpers


def lip_gap(lm, crop):
    with lm.session(static=True) as s:
        pts = s.process(crop)
    assert pts is not None, "no face found in the warped crop"
    return float(pts[L.LOWER_INNER, 1] - pts[L.UPPER_INNER, 1])


def test_opening_is_measurable_on_the_output(source):
    entry, lm = source
    crop, mesh, mask = entry.crop(0), entry.mesh[0], entry.mask(0)
    source_gap = lip_gap(lm, crop)           # she smiles with her teeth showing
    gaps = [lip_gap(lm, warp_mouth(crop, mesh, mask, o, 0.0)) for o in (0.0, 0.5, 1.0)]
    assert gaps[0] < 0.5 * source_gap, (source_gap, gaps)  # silence closes the mouth
    assert gaps[1] > gaps[0] + 5, gaps       # opens
    assert gaps[2] > gaps[1] + 5, gaps       # opens more


def test_only_the_masked_region_changes(source):
    entry, _ = source
    crop, mesh, mask = entry.crop(0), entry.mesh[0], entry.mask(0)
    out = warp_mouth(crop, mesh, mask, 1.0, 1.0)
    assert np.array_equal(out[:100], crop[:100])          # eyes and above untouched
    changed = np.abs(out.astype(int) - crop).sum(2) > 0
    assert changed.any() and changed[mask == 0].mean() < 0.02


def test_engine_streams_one_crop_per_frame_in_batches(source):
    entry, _ = source
    audio = helpers.speech_like([(0.6, False), (1.0, True), (0.6, False)])
    batches = list(WarpEngine("loudness").generate(entry, audio, 16000, 25, batch_size=8).batches)
    crops = np.concatenate(batches)
    assert [len(b) for b in batches][:-1] == [8] * (len(batches) - 1)
    assert crops.shape == (55, 256, 256, 3)
    rest = warp_mouth(entry.crop(0), entry.mesh[0], entry.mask(0), 0.0, 0.0)
    diff = np.abs(crops.astype(int) - rest[None]).mean(axis=(1, 2, 3))
    assert diff[:12].max() == 0 and diff[-12:].max() == 0   # silence: the closed mouth, every frame
    assert diff[20:35].mean() > 1.0 and np.ptp(diff[16:40]) > 0.5  # speech: the mouth moves
