import numpy as np
import pytest

from lipsync_common.options import frame_count as num_frames
from services.generator.engines.warp.audio_features import mouth_drive
from tests import helpers


def test_frame_count_follows_duration():
    assert num_frames(16000 * 2, 16000, 25) == 50
    assert num_frames(16000 * 2, 16000, 29.97) == 59
    assert num_frames(100, 16000, 25) == 1
    assert num_frames(0, 16000, 25) == 0


def test_silence_keeps_the_mouth_closed():
    d = mouth_drive(np.zeros(16000 * 2, np.float32), 16000, 25)
    assert len(d.opening) == 50 and d.opening.max() == 0 and np.abs(d.width).max() == 0
    quiet = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 1e-4  # -80 dBFS hiss
    assert mouth_drive(quiet, 16000, 25).opening.max() == 0


def test_opening_follows_voiced_segments():
    x = helpers.speech_like([(1.0, False), (2.0, True), (1.0, False)])
    d = mouth_drive(x, 16000, 25)
    assert len(d.opening) == 100
    silent = np.r_[d.opening[:23], d.opening[77:]]
    voiced = d.opening[27:73]
    assert silent.max() == 0
    assert voiced.mean() > 0.3 and voiced.max() > 0.7
    # syllables (4 per second) show up as opening and closing, not a constant
    assert voiced.std() > 0.1


def test_fricatives_spread_the_mouth_more_than_vowels():
    rng = np.random.default_rng(1)
    hiss = rng.standard_normal(16000).astype(np.float32)
    spec = np.fft.rfft(hiss)
    spec[: int(3000 / 8000 * len(spec))] = 0          # "sss": energy above 3 kHz only
    sss = np.fft.irfft(spec, len(hiss)).astype(np.float32)
    sss *= 0.2 / np.abs(sss).max()
    vowel = helpers.speech_like([(1.0, True)])
    assert mouth_drive(sss, 16000, 25).width.mean() > mouth_drive(vowel, 16000, 25).width.mean() + 0.5


def test_wrong_rate_is_refused():
    with pytest.raises(ValueError, match="16000"):
        mouth_drive(np.zeros(100, np.float32), 8000, 25)
