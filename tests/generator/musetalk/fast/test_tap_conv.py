"""The per-tap form of a 3x3 convolution to few channels (tap_conv.py): the same function, the same keys."""
import pytest
import torch
from torch import nn

from services.generator.engines.musetalk.fast.tap_conv import TapConv2d, eligible, replace_conv_out


@pytest.mark.parametrize("cin,out,h,w", [(16, 3, 9, 7), (8, 1, 5, 5), (32, 8, 4, 6)])
def test_tap_conv_equals_conv(cin, out, h, w):
    torch.manual_seed(cin)
    conv = nn.Conv2d(cin, out, 3, padding=1).double()
    tap = TapConv2d(conv)
    x = torch.randn(2, cin, h, w, dtype=torch.float64)
    assert (tap(x) - conv(x)).abs().max() < 1e-12
    assert list(tap.state_dict()) == list(conv.state_dict())


def test_only_small_3x3_output_convolutions_are_replaced():
    assert eligible(nn.Conv2d(128, 3, 3, padding=1))
    assert not eligible(nn.Conv2d(128, 64, 3, padding=1))          # many output channels: cuDNN is fine
    assert not eligible(nn.Conv2d(128, 3, 3, padding=1, stride=2))
    assert not eligible(nn.Conv2d(128, 3, 1))
    net = nn.Module()
    net.conv_out = nn.Conv2d(16, 3, 3, padding=1)
    assert replace_conv_out(net) and isinstance(net.conv_out, TapConv2d)
    assert not replace_conv_out(net)                                 # already replaced
