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

from services.generator.engines.fused_groupnorm import (BiasLaterConv2d, GroupNormSiLU, fuse_groupnorm_silu,
                                                        supported)
from services.generator.engines.tap_conv import TapConv2d, replace_conv_out

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs with TRITON_INTERPRET=1 (it must be set before triton is imported): each case against float64 PyTorch.
INTERPRETED = r"""
import json, torch, torch.nn.functional as F
from services.generator.engines.fused_groupnorm import group_norm_silu_triton
torch.manual_seed(0)
out = []
for n, c, h, w, g, dtype, silu, xbias, offset in [
        (2, 128, 16, 16, 32, torch.float32, True, False, 0.0),
        (1, 256, 8, 8, 32, torch.float32, False, False, 0.0),
        (2, 512, 4, 4, 32, torch.float32, True, True, 0.0),
        (1, 64, 32, 16, 8, torch.float32, True, True, 0.0),
        (2, 128, 8, 8, 32, torch.float32, True, False, 300.0),   # a large mean: the variance must not cancel
        (2, 128, 16, 16, 32, torch.float16, True, True, 2.0)]:
    x = (torch.randn(n, c, h, w) * 3 + offset).to(dtype).to(memory_format=torch.channels_last)
    wt, b = torch.randn(c).to(dtype), torch.randn(c).to(dtype)
    xb = torch.randn(c).to(dtype) * 2 if xbias else None
    y = group_norm_silu_triton(x, wt, b, g, 1e-6, silu, xb)
    x64 = x.double() + (xb.double().view(1, -1, 1, 1) if xbias else 0)
    ref = F.group_norm(x64, g, wt.double(), b.double(), 1e-6)
    ref = F.silu(ref) if silu else ref
    out.append(dict(shape=[n, c, h, w], dtype=str(dtype), err=(y.double() - ref).abs().max().item(),
                    channels_last=y.is_contiguous(memory_format=torch.channels_last), out_dtype=str(y.dtype)))
print(json.dumps(out))
"""


def test_triton_kernels_match_pytorch_in_the_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cases = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(cases) == 6
    for case in cases:
        assert case["channels_last"] and case["out_dtype"] == case["dtype"], case
        assert case["err"] < (4e-3 if case["dtype"] == "torch.float16" else 2e-5), case


def test_supported_shapes():
    cl = torch.channels_last
    assert supported(torch.zeros(2, 128, 16, 16).to(memory_format=cl), 32)
    assert not supported(torch.zeros(2, 128, 16, 16), 32)                        # NCHW memory
    assert not supported(torch.zeros(2, 320, 16, 16).to(memory_format=cl), 32)   # 10 channels per group
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
    resnets = [m for m in fused.decoder.modules() if type(m).__name__ == "ResnetBlock2D"]
    assert n == 2 * len(resnets) + 1
    assert all(isinstance(r.conv1, BiasLaterConv2d) and isinstance(r.nonlinearity, nn.Identity) for r in resnets)
    assert list(fused.state_dict()) == list(vae.state_dict())
    z = torch.randn(2, 4, 8, 8)
    assert (fused.decode(z).sample - vae.decode(z).sample).abs().max() < 1e-5
    # loading a state dict after the swap reaches the swapped modules (they share the parameters)
    other = tiny_vae()
    for p in other.parameters():
        p.add_(0.2 * torch.randn_like(p))
    fused.load_state_dict(other.state_dict())
    assert (fused.decode(z).sample - other.decode(z).sample).abs().max() < 1e-5
    # the encoder and the UNet-style blocks with a time embedding are left alone
    assert not any(isinstance(m, GroupNormSiLU) for m in fused.encoder.modules())


def test_resnet_with_time_embedding_is_left_alone():
    from diffusers.models.resnet import ResnetBlock2D
    block = ResnetBlock2D(in_channels=32, out_channels=32, temb_channels=16, groups=8)
    assert fuse_groupnorm_silu(block) == 0 and type(block.norm1) is nn.GroupNorm


@pytest.mark.parametrize("cin,out,h,w", [(16, 3, 9, 7), (8, 1, 5, 5), (32, 8, 4, 6)])
def test_tap_conv_equals_conv(cin, out, h, w):
    torch.manual_seed(cin)
    conv = nn.Conv2d(cin, out, 3, padding=1).double()
    tap = TapConv2d(conv)
    x = torch.randn(2, cin, h, w, dtype=torch.float64)
    assert (tap(x) - conv(x)).abs().max() < 1e-12
    assert list(tap.state_dict()) == list(conv.state_dict())
