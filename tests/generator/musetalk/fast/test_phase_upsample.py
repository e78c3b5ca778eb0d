"""The phase-decomposed upsampler computes the same function as diffusers' Upsample2D and keeps the state dict."""
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.upsampling import Upsample2D

from services.generator.engines.musetalk.fast.phase_upsample import PhaseUpsample, replace_upsamplers


@pytest.mark.parametrize("channels,out_channels,h,w", [(8, 8, 5, 7), (6, 4, 1, 3), (16, 16, 8, 8)])
def test_matches_upsample2d(channels, out_channels, h, w):
    torch.manual_seed(0)
    up = Upsample2D(channels, use_conv=True, out_channels=out_channels).double()
    x = torch.randn(2, channels, h, w, dtype=torch.double)
    fast = PhaseUpsample(up)
    assert torch.allclose(fast(x), up(x), atol=1e-12, rtol=0)
    assert torch.allclose(fast(x.to(memory_format=torch.channels_last)), up(x), atol=1e-12, rtol=0)
    # an output size other than exactly 2x falls back to interpolate + the original 3x3 conv
    size = (2 * h + 1, 2 * w - 1)
    assert torch.equal(fast(x, output_size=size), up(x, output_size=size))


def test_replace_keeps_keys_and_output():
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
                        block_out_channels=[8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3).double().eval()
    z = torch.randn(2, 4, 6, 6, dtype=torch.double)
    keys = list(vae.state_dict())
    with torch.no_grad():
        before = vae.decode(z).sample
        assert replace_upsamplers(vae.decoder) == 2
        after = vae.decode(z).sample
    assert list(vae.state_dict()) == keys
    assert after.shape == before.shape == (2, 3, 24, 24)
    assert (after - before).abs().max().item() < 1e-10
    assert replace_upsamplers(vae.decoder) == 0      # nothing left to replace


def test_conv_transpose_and_plain_upsamplers_are_left_alone():
    m = torch.nn.ModuleList([Upsample2D(4, use_conv_transpose=True), Upsample2D(4, use_conv=False)])
    assert replace_upsamplers(m) == 0
