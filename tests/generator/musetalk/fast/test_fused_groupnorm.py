"""The decoder's replacements: Triton GroupNorm(+SiLU) kernels (run through Triton's CPU interpreter), the module
swaps (same function, same keys) and the per-tap output convolution."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from services.generator.engines.musetalk.fast.fused_groupnorm import GroupNormSiLU, fuse_groupnorm_silu, norm_silu, supported
from services.generator.engines.musetalk.fast.tap_conv import replace_conv_out

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

# Runs with TRITON_INTERPRET=1 (it must be set before triton is imported): each case against float64 PyTorch.
INTERPRETED = r"""
import json, torch, torch.nn.functional as F
from services.generator.engines.musetalk.fast.groupnorm_kernels import group_norm_silu_triton
torch.manual_seed(0)
out = []
for n, c, h, w, g, dtype, silu, xbias, offset in [
        (2, 128, 16, 16, 32, torch.float32, True, False, 0.0),
        (1, 256, 8, 8, 32, torch.float32, False, False, 0.0),
        (2, 512, 4, 4, 32, torch.float32, True, True, 0.0),
        (1, 64, 32, 16, 8, torch.float32, True, True, 0.0),
        (2, 128, 8, 8, 32, torch.float32, True, False, 300.0),   # a large mean: the variance must not cancel
        (2, 128, 16, 16, 32, torch.float16, True, True, 2.0),
        (2, 256, 8, 8, 32, torch.float32, True, "per-sample", 0.0),    # a UNet block's time embedding
        (2, 320, 8, 8, 32, torch.float32, True, "per-sample", 0.0),    # 10 channels a group (lanes padded to 16)
        (1, 96, 4, 4, 32, torch.float16, False, False, 1.0),           # 3 channels a group
        (2, 1920, 4, 4, 32, torch.float32, True, False, 0.0)]:
    x = (torch.randn(n, c, h, w) * 3 + offset).to(dtype).to(memory_format=torch.channels_last)
    wt, b = torch.randn(c).to(dtype), torch.randn(c).to(dtype)
    xb = (torch.randn(n, c) if xbias == "per-sample" else torch.randn(c)).to(dtype) * 2 if xbias else None
    y = group_norm_silu_triton(x, wt, b, g, 1e-6, silu, xb)
    x64 = x.double()
    if xbias:
        x64 = x64 + (xb.double()[:, :, None, None] if xb.dim() == 2 else xb.double().view(1, -1, 1, 1))
    ref = F.group_norm(x64, g, wt.double(), b.double(), 1e-6)
    ref = F.silu(ref) if silu else ref
    out.append(dict(shape=[n, c, h, w], dtype=str(dtype), err=(y.double() - ref).abs().max().item(),
                    channels_last=y.is_contiguous(memory_format=torch.channels_last), out_dtype=str(y.dtype)))
from services.generator.engines.musetalk.fast.groupnorm_kernels import add_group_norm_silu_triton
for n, c, h, w, dtype, scale in [(2, 128, 16, 16, torch.float32, 1.0), (1, 256, 8, 8, torch.float16, 2.0)]:
    hh = torch.randn(n, c, h, w).to(dtype).to(memory_format=torch.channels_last)
    skip = torch.randn(n, c, h, w).to(dtype).to(memory_format=torch.channels_last)
    hb, wt, b = (torch.randn(c).to(dtype) for _ in range(3))
    s, y = add_group_norm_silu_triton(hh, skip, hb, scale, wt, b, 32, 1e-6, True)
    s_ref = (skip.double() + hh.double() + hb.double().view(1, -1, 1, 1)) / scale
    y_ref = F.silu(F.group_norm(s.double(), 32, wt.double(), b.double(), 1e-6))   # the norm of the sum as stored
    out.append(dict(shape=[n, c, h, w], dtype=str(dtype), err=max((s.double() - s_ref).abs().max().item(),
                                                                   (y.double() - y_ref).abs().max().item()),
                    channels_last=y.is_contiguous(memory_format=torch.channels_last)
                    and s.is_contiguous(memory_format=torch.channels_last), out_dtype=str(y.dtype)))
from diffusers.models.upsampling import Upsample2D
from services.generator.engines.musetalk.fast.groupnorm_kernels import phase_group_norm_silu_triton
from services.generator.engines.musetalk.fast.phase_upsample import PhaseUpsample
for c, side in [(128, 4), (64, 8)]:
    stock = Upsample2D(c, use_conv=True).eval()
    with torch.no_grad():
        stock.conv.bias.normal_()
    phase = PhaseUpsample(stock)
    x = torch.randn(2, c, side, side).to(memory_format=torch.channels_last)
    wt, b = torch.randn(c), torch.randn(c)
    with torch.no_grad():
        o = F.conv2d(x, phase.weight, None, padding=1).contiguous(memory_format=torch.channels_last)
        up, y = phase_group_norm_silu_triton(o, phase.bias[:c], wt, b, 32, 1e-6, True)
        up_ref = stock(x).double()
    y_ref = F.silu(F.group_norm(up.double(), 32, wt.double(), b.double(), 1e-6))
    out.append(dict(shape=[2, c, side, side], dtype="torch.float32", err=max((up.double() - up_ref).abs().max().item(),
                                                                           (y.double() - y_ref).abs().max().item()),
                    channels_last=up.is_contiguous(memory_format=torch.channels_last)
                    and y.is_contiguous(memory_format=torch.channels_last), out_dtype=str(y.dtype)))
from services.generator.engines.musetalk.fast.fused_groupnorm import self_check
out.append(dict(self_check=[self_check("cpu", torch.float32), self_check("cpu", torch.float16)]))
print(json.dumps(out))
"""


def test_triton_kernels_match_pytorch_in_the_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cases = json.loads(res.stdout.strip().splitlines()[-1])
    assert cases.pop()["self_check"] == [None, None]
    assert len(cases) == 14
    for case in cases:
        assert case["channels_last"] and case["out_dtype"] == case["dtype"], case
        assert case["err"] < (4e-3 if case["dtype"] == "torch.float16" else 2e-5), case


def test_self_check_reports_a_failing_kernel(monkeypatch):
    pytest.importorskip("triton")
    from services.generator.engines.musetalk.fast import fused_groupnorm as fg

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(fg, "group_norm_silu_triton", broken)
    assert fg.self_check("cpu", torch.float32) == "RuntimeError: no kernel image is available for execution on the device"


def test_supported_shapes():
    cl = torch.channels_last
    assert supported(torch.zeros(2, 128, 16, 16).to(memory_format=cl), 32)
    assert supported(torch.zeros(2, 320, 16, 16).to(memory_format=cl), 32)       # 10 channels per group
    assert not supported(torch.zeros(2, 128, 16, 16), 32)                        # NCHW memory
    assert not supported(torch.zeros(2, 96, 16, 16).to(memory_format=cl), 24)    # groups not a power of two
    assert not supported(torch.zeros(2, 64, 5, 5).to(memory_format=cl), 32)      # 25 pixels: not a whole tile
    assert not supported(torch.zeros(2, 128, 16, 16).to(torch.int32).to(memory_format=cl), 32)
    assert not supported(torch.zeros(2, 128, 16), 32)


def tiny_vae():
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=8, latent_channels=4).eval()


@torch.no_grad()
def test_fused_decoder_is_the_same_function_with_the_same_keys():
    vae = tiny_vae()
    for p in vae.parameters():        # biases and norm affines away from their defaults
        p.add_(0.1 * torch.randn_like(p))
    fused = copy.deepcopy(vae)
    n = fuse_groupnorm_silu(fused.decoder)
    assert replace_conv_out(fused.decoder)
    kinds = [type(m).__name__ for m in fused.decoder.modules()]
    assert kinds.count("FusedResnetBlock2D") == 6 and n == 2 * 6 + 1
    assert kinds[0] == "FusedDecoder" and "ResnetBlock2D" not in kinds
    assert list(fused.state_dict()) == list(vae.state_dict())
    z = torch.randn(2, 4, 8, 8)
    assert (fused.decode(z).sample - vae.decode(z).sample).abs().max() < 5e-5
    # loading a state dict after the swap reaches the swapped modules (they share the parameters)
    other = tiny_vae()
    for p in other.parameters():
        p.add_(0.2 * torch.randn_like(p))
    fused.load_state_dict(other.state_dict())
    assert (fused.decode(z).sample - other.decode(z).sample).abs().max() < 5e-5
    assert not any(isinstance(m, GroupNormSiLU) for m in fused.encoder.modules())    # only what was asked


@torch.no_grad()
def test_fused_unet_is_the_same_function_with_the_same_keys():
    from tests.generator.musetalk.tiny_musetalk import tiny_unet
    unet = tiny_unet().eval()
    for p in unet.parameters():
        p.add_(0.05 * torch.randn_like(p))
    fused = copy.deepcopy(unet)
    n = fuse_groupnorm_silu(fused)
    kinds = [type(m).__name__ for m in fused.modules()]
    assert "ResnetBlock2D" not in kinds and kinds.count("FusedResnetBlock2D") > 0
    assert n == 2 * kinds.count("FusedResnetBlock2D") + kinds.count("Transformer2DModel") + 1
    assert list(fused.state_dict()) == list(unet.state_dict())
    x, t, c = torch.randn(2, 8, 16, 16), torch.tensor([0]), torch.randn(2, 50, 384)
    ref = unet(x, t, encoder_hidden_states=c).sample
    assert (fused(x, t, encoder_hidden_states=c).sample - ref).abs().max() < 1e-5 * ref.abs().max()


def test_norm_silu_fallback_adds_the_bias():
    norm = nn.GroupNorm(4, 8)
    x, xb = torch.randn(3, 8, 4, 4), torch.randn(3, 8)
    ref = F.silu(norm(x + xb[:, :, None, None]))
    assert torch.allclose(norm_silu(norm, x, True, xb), ref, atol=1e-6)
    assert torch.allclose(norm_silu(norm, x, False, xb[0]), norm(x + xb[0].view(1, -1, 1, 1)), atol=1e-6)
