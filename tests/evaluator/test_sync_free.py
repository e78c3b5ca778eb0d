"""The weight-free sync metric finds a known audio shift on real speech; LMD and the mouth signal behave."""
import numpy as np
import pytest

from services.evaluator import faces, sync_free
from lipsync_common.faces.landmarks import Landmarker


@pytest.fixture(scope="module")
def track(speech_clip):
    return faces.track(speech_clip["video"], Landmarker())


@pytest.mark.parametrize("k", [0, 3, -5, 9])
def test_recovers_a_known_shift(track, speech_clip, k):
    audio = speech_clip["audio"]
    hop = 16000 // 25
    shifted = np.concatenate([np.zeros(k * hop, np.float32), audio]) if k >= 0 else audio[-k * hop:]
    mouth = track.mouth_opening()
    r = sync_free.av_offset(mouth, sync_free.loudness(shifted, track.fps, len(mouth)))
    assert r["offset"] == k and r["confidence"] > 0.2


def test_silence_gives_no_confident_offset(track):
    mouth = track.mouth_opening()
    r = sync_free.av_offset(mouth, sync_free.loudness(np.zeros(16000 * 8, np.float32), track.fps, len(mouth)))
    assert r["offset"] is None or r["confidence"] < 0.2


def test_lmd_is_zero_against_itself_and_grows_with_mouth_change(track):
    idx = np.arange(len(track.points))
    assert sync_free.lmd(track.points, track.points, idx)["lmd"] == pytest.approx(0.0, abs=1e-9)
    other = track.points.copy()
    other[:, 14] += 3.0          # move the lower inner lip 3 px down
    assert sync_free.lmd(track.points, other, idx)["lmd"] > 0
