"""Exactness versus the reference implementations (issue 17): one stereo downmix rule, (L+R)/2, as syncnet_python's
``ffmpeg -ac 1 -acodec pcm_s16le`` and the gateway's channel mean take it; SyncNet's lip batch C-contiguous, as
syncnet_python's ``torch.cat`` of clip slices makes it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lipsync_common.formats import media
from services.evaluator.syncnet import lse
from tools import synth


def _stereo(sr: int, seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(sr * seconds)) / sr
    return 0.30 * np.sin(2 * np.pi * 220 * t), 0.20 * np.sin(2 * np.pi * 330 * t + 1.0)


@pytest.mark.parametrize("rate", [None, 16000])
def test_stereo_decodes_to_half_the_channel_sum(tmp_path, rate):
    left, right = _stereo(44100)
    path = synth.write_wav(str(tmp_path / "lr.wav"), np.stack([left, right], 1), sr=44100)
    stereo, r = media.decode_audio(path, 60, sample_rate=rate)
    mono, r_mono = media.decode_audio(path, 60, sample_rate=rate, mono=True)
    assert stereo.shape[0] == 2 and mono.shape == (1, stereo.shape[1]) and r == r_mono
    np.testing.assert_array_equal(mono[0], (stereo[0] + stereo[1]) / 2)
    np.testing.assert_array_equal(mono[0], stereo.mean(axis=0))           # the gateway's rule (gateway/pipeline.py)
    if rate is None:                                                        # the samples themselves (16-bit wav)
        pcm = (np.clip(np.stack([left, right]), -1, 1) * 32767).astype("<i2") / 32768.0
        np.testing.assert_allclose(mono[0], (pcm[0] + pcm[1]) / 2, rtol=0, atol=1e-7)
        assert not np.allclose(mono[0], (pcm[0] + pcm[1]) / np.sqrt(2), atol=1e-3)   # not swresample's float rule


def test_mono_stays_mono_and_empty_mono_has_one_channel(tmp_path):
    x = synth.speech_like([(0.5, True)])
    path = synth.write_wav(str(tmp_path / "m.wav"), x)
    a, _ = media.decode_audio(path, 60)
    b, _ = media.decode_audio(path, 60, mono=True)
    assert a.shape[0] == 1 and np.array_equal(a, b)


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.lip_contiguous: list[bool] = []

    def forward_lip(self, x):
        self.lip_contiguous.append(x.is_contiguous())
        return x.mean(dim=(1, 2, 3, 4))[:, None]

    def forward_aud(self, x):
        return x.mean(dim=(1, 2, 3))[:, None]


def test_syncnet_lip_batch_is_contiguous_as_the_reference():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(12 * 640) * 3000).astype(np.int16)
    rec = _Recorder()
    lse(rec, frames, audio, vshift=2, batch_size=4)
    assert rec.lip_contiguous and all(rec.lip_contiguous)
