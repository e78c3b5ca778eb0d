"""A 3x3 convolution with very few output channels, computed as one 1x1 convolution per tap and a shifted sum.

SD-VAE's decoder ends in a 3x3 convolution from 128 channels to 3 (RGB) at full resolution. cuDNN has no good
kernel for 3 output channels: on an H100 it takes ~1.4 ms for 64 frames at 256x256, four times the time to read
its input once. Here the nine taps' weights are stacked into one 1x1 convolution (128 -> 27 channels, padded to 32,
a plain matrix product that reads the input once), and the output is the sum of the nine tap maps, each shifted
by its offset, plus the bias; torch.compile fuses that sum with whatever follows. Zero padding of the input is the
same as zero padding of the tap maps. Same parameters, same state-dict keys (the stacked weight is built from the
3x3 weight on every call, a tiny kernel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TapConv2d(nn.Conv2d):
    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, cin, kh, kw = self.weight.shape
        taps = kh * kw * out
        width = -(-taps // 8) * 8                      # 27 -> 32: aligned rows for the matrix product
        k = self.weight.permute(2, 3, 0, 1).reshape(taps, cin, 1, 1)
        p = F.conv2d(x, F.pad(k, (0, 0, 0, 0, 0, 0, 0, width - taps)))
        p = F.pad(p, (1, 1, 1, 1))
        h, w = x.shape[2], x.shape[3]
        y = sum(p[:, (i * kw + j) * out:(i * kw + j + 1) * out, i:i + h, j:j + w] for i in range(kh) for j in range(kw))
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y


def eligible(conv: nn.Module, max_out: int = 8) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and conv.out_channels <= max_out)


def replace_conv_out(net: nn.Module) -> bool:
    """Swap a network's conv_out (VAE decoder: 128 -> 3, UNet: 320 -> 4) for a TapConv2d when it is a 3x3
    convolution to few channels."""
    if eligible(getattr(net, "conv_out", None)):
        net.conv_out = TapConv2d(net.conv_out)
        return True
    return False
