"""SyncNet LSE-D / LSE-C: weight file layout, loading, and the syncnet_python arithmetic re-done independently."""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest
import python_speech_features
import torch
from torch import nn

from services.evaluator.syncnet import SYNCNET_FILE, SyncNet, SyncNetUnavailable, lse, load_syncnet

# Names and shapes read off syncnet_python SyncNetModel.py (nn.Sequential indices: conv 0/4/8/11/14/18,
# BatchNorm 1/5/9/12/15/19 in both CNNs; Linear 0 / BatchNorm1d 1 / Linear 3 in both FC heads).
PUBLISHED_SAMPLE = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.1.running_var": (64,),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.bias": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.running_mean": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netcnnlip.19.running_mean": (512,),
    "netfclip.0.weight": (512, 512),
    "netfclip.3.bias": (1024,),
}
PUBLISHED_KEY_COUNT = 88   # 2 x (6 conv x 2 + 6 BN x 4) + 2 x (2 linear x 2 + BN x 4); no num_batches_tracked


def _random_syncnet(seed: int = 0) -> SyncNet:
    torch.manual_seed(seed)
    m = SyncNet()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _save_published(model: nn.Module, path: str) -> None:
    """The published layout: a plain name -> tensor mapping with S's names, saved before BatchNorm had a
    num_batches_tracked buffer, in torch's legacy (non-zip) format."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sd = OrderedDict((k, v.clone()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    torch.save(sd, path, _use_new_zipfile_serialization=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    models = str(tmp_path_factory.mktemp("models"))
    ref = _random_syncnet()
    _save_published(ref, os.path.join(models, SYNCNET_FILE))
    return models, ref


@pytest.fixture(scope="module")
def model(saved):
    return load_syncnet(saved[0])


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (30, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(30 * 640 + 123) * 3000).astype(np.int16)
    return frames, audio


@pytest.fixture(scope="module")
def result(model, clip):
    return lse(model, *clip)


def test_published_layout_and_strict_load(saved, model):
    models, ref = saved
    raw = torch.load(os.path.join(models, SYNCNET_FILE), map_location="cpu", weights_only=True)
    assert len(raw) == PUBLISHED_KEY_COUNT and not any("num_batches_tracked" in k for k in raw)
    for name, shape in PUBLISHED_SAMPLE.items():
        assert tuple(raw[name].shape) == shape, name
    assert set(raw) == {k for k in SyncNet().state_dict() if not k.endswith("num_batches_tracked")}
    got, want = model.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert not model.training


def test_other_dumps_load(tmp_path, saved):
    ref = saved[1]
    full = os.path.join(tmp_path, "full", SYNCNET_FILE)        # modern state dict, counters included
    os.makedirs(os.path.dirname(full))
    torch.save(ref.state_dict(), full)
    assert torch.equal(load_syncnet(str(tmp_path / "full")).state_dict()["netfclip.3.weight"],
                       ref.state_dict()["netfclip.3.weight"])
    pref = os.path.join(tmp_path, "pref", SYNCNET_FILE)        # SyncNetInstance.state_dict(): "__S__." prefix
    os.makedirs(os.path.dirname(pref))
    torch.save({"__S__." + k: v for k, v in ref.state_dict().items()}, pref)
    assert torch.equal(load_syncnet(str(tmp_path / "pref")).state_dict()["netcnnaud.0.weight"],
                       ref.state_dict()["netcnnaud.0.weight"])


def test_missing_and_bad_weights(tmp_path):
    with pytest.raises(SyncNetUnavailable) as e:
        load_syncnet(str(tmp_path))
    assert str(e.value) == "unavailable: syncnet weights not found at " + os.path.abspath(
        os.path.join(str(tmp_path), SYNCNET_FILE))
    bad = os.path.join(tmp_path, SYNCNET_FILE)
    os.makedirs(os.path.dirname(bad))
    sd = {k: v for k, v in SyncNet().state_dict().items() if k != "netfcaud.3.bias"}
    torch.save(sd, bad)
    with pytest.raises(SyncNetUnavailable, match="^unavailable: syncnet weights at .* do not match"):
        load_syncnet(str(tmp_path))


def _medfilt9(x: np.ndarray) -> np.ndarray:
    p = np.concatenate([np.zeros(4), x, np.zeros(4)])
    return np.array([np.median(p[i:i + 9]) for i in range(len(x))])


def test_matches_independent_recomputation(model, clip, result):
    """syncnet_python's evaluate() re-done in plain numpy from the model's embeddings."""
    frames, audio = clip
    vshift = 15
    cc = python_speech_features.mfcc(audio, 16000).T                       # [13, steps]
    n = min(len(frames), len(audio) // 640) - 5                            # lastframe
    lip = np.ascontiguousarray(np.stack([frames[v:v + 5] for v in range(n)]).transpose(0, 4, 1, 2, 3),
                               dtype=np.float32)                            # C-contiguous, as the reference's
    aud = np.stack([cc[None, :, 4 * v:4 * v + 20] for v in range(n)]).astype(np.float32)
    with torch.no_grad():
        L = model.forward_lip(torch.from_numpy(lip)).double().numpy()
        A = model.forward_aud(torch.from_numpy(aud)).double().numpy()
    D = np.empty((n, 2 * vshift + 1))
    for i in range(n):
        for k in range(2 * vshift + 1):
            j = i + k - vshift
            a = A[j] if 0 <= j < n else np.zeros_like(A[0])                 # zero-padded audio embeddings
            D[i, k] = np.linalg.norm(L[i] - a + 1e-6)                      # torch pairwise_distance eps
    mean = D.mean(0)
    kmin = int(np.argmin(mean))
    med = float(np.median(mean))
    assert result["windows"] == n == 25
    np.testing.assert_allclose(result["dists"], mean, rtol=0, atol=1e-5)
    assert result["lse_d"] == pytest.approx(mean[kmin], abs=1e-5)
    assert result["lse_c"] == pytest.approx(med - mean[kmin], abs=1e-5)
    assert result["av_offset"] == vshift - kmin
    np.testing.assert_allclose(result["frame_conf"], _medfilt9(med - D[:, kmin]), rtol=0, atol=1e-5)
    assert np.ptp(mean) > 1e-3          # the random net separates offsets, so argmin is not a tie


def test_batch_size_does_not_matter(model, clip, result):
    other = lse(model, *clip, batch_size=7)
    assert other["av_offset"] == result["av_offset"] and other["windows"] == result["windows"]
    for key in ("lse_d", "lse_c"):
        assert other[key] == pytest.approx(result[key], abs=1e-5)
    for key in ("dists", "frame_conf"):
        np.testing.assert_allclose(other[key], result[key], rtol=0, atol=1e-5)


def test_length_mismatch_uses_min_length(model):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(20 * 640) * 3000).astype(np.int16)
    longer = lse(model, frames, audio, vshift=3)                           # audio past the video is ignored
    exact = lse(model, frames, audio[:12 * 640], vshift=3)
    assert longer["windows"] == exact["windows"] == 12 - 5
    np.testing.assert_allclose(longer["dists"], exact["dists"], rtol=0, atol=1e-5)
    short_audio = audio[:9 * 640 + 639]                                    # 9 whole frames of audio
    shorter = lse(model, frames, short_audio, vshift=3)
    cut = lse(model, frames[:9], short_audio, vshift=3)
    assert shorter["windows"] == cut["windows"] == 9 - 5
    np.testing.assert_allclose(shorter["dists"], cut["dists"], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="too short"):
        lse(model, frames[:5], audio)


class _Probe(nn.Module):
    """Stand-in network: lip embedding = is the window's first frame bright (G channel), audio embedding = is
    MFCC step 4v+1 loud (c0 is log energy; that step covers samples 640v+160 .. 640v+560, inside frame v)."""

    def __init__(self, threshold: float):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.threshold = threshold
        self.lip_in: list[torch.Tensor] = []
        self.aud_in: list[torch.Tensor] = []

    def forward_lip(self, x):
        self.lip_in.append(x.clone())
        return (x[:, 1, 0].mean(dim=(1, 2)) > 127).float()[:, None]

    def forward_aud(self, x):
        self.aud_in.append(x.clone())
        return (x[:, 0, 0, 1] > self.threshold).float()[:, None]


def _pattern_clip(audio_delay: int, n: int = 60):
    rng = np.random.default_rng(3)
    pattern = rng.integers(0, 2, n + 20).astype(bool)
    frames = np.zeros((n, 224, 224, 3), np.uint8)
    frames[..., 0] = 7                                                      # B
    video = pattern[10:10 + n]                                              # video frame k = pattern[10 + k]
    frames[..., 1] = np.where(video, 200, 50)[:, None, None]                # G carries the pattern
    frames[..., 2] = 9                                                      # R
    loud = pattern[10 - audio_delay:10 - audio_delay + n]                   # audio frame j = video frame j - delay
    amp = np.repeat(np.where(loud, 8000.0, 5.0), 640)
    audio = (rng.standard_normal(n * 640) * amp).astype(np.int16)
    if audio_delay > 0:
        assert np.array_equal(loud[audio_delay:], video[:n - audio_delay])
    return frames, audio


def _threshold(audio) -> float:
    c0 = python_speech_features.mfcc(audio, 16000)[1::4, 0]
    return float((c0.min() + c0.max()) / 2)


@pytest.mark.parametrize("delay", [3, 0, -2])
def test_offset_sign_matches_syncnet_python(delay):
    """Audio delayed by n frames -> av_offset = -n (syncnet_python: offset = vshift - argmin)."""
    frames, audio = _pattern_clip(delay)
    r = lse(_Probe(_threshold(audio)), frames, audio)
    assert r["av_offset"] == -delay
    assert r["lse_d"] < 0.1 and r["lse_c"] > 0.3


def test_input_layout_and_audio_scaling():
    frames, audio = _pattern_clip(0, n=12)
    probe = _Probe(_threshold(audio))
    r_int = lse(probe, frames, audio, vshift=2, batch_size=4)
    x = probe.lip_in[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (4, 3, 5, 224, 224)
    assert torch.equal(x[1, :, 2], torch.from_numpy(frames[3].transpose(2, 0, 1).astype(np.float32)))  # BGR, raw
    a = probe.aud_in[0]
    cc = python_speech_features.mfcc(audio, 16000).T
    assert tuple(a.shape) == (4, 1, 13, 20)
    assert torch.equal(a[1, 0], torch.from_numpy(cc[:, 4:24]).float())   # int16-range samples, not [-1, 1]
    r_float = lse(_Probe(_threshold(audio)), frames, audio.astype(np.float32) / 32768.0, vshift=2, batch_size=4)
    assert r_float == r_int
    with pytest.raises(ValueError, match="normalised"):
        lse(probe, frames, audio.astype(np.float32))
    with pytest.raises(ValueError, match="25 fps"):
        lse(probe, frames, audio, fps=30)
