"""diffusers' ResnetBlock2D and SD-VAE's Decoder with forwards that run their GroupNorms through the fused kernels
(fused_groupnorm.py): the same function, the same parameters and state-dict keys. `fuse_groupnorm_silu` swaps a
loaded module's class for these."""
from __future__ import annotations

import torch
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from services.generator.engines.musetalk.fast.fused_groupnorm import add_norm_silu, norm_silu, upsample_norm_silu


class FusedResnetBlock2D(ResnetBlock2D):
    """ResnetBlock2D's forward for the configurations `fusable` accepts: norm1 + SiLU in one kernel; conv1
    without its bias; its bias and the time embedding added inside norm2 + SiLU."""

    def branch(self, x: torch.Tensor, temb: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """-> (conv2's output without its bias, the shortcut without its bias, both biases summed);
        y: silu(norm1(x)) when the caller has it already."""
        x_bias = self.conv1.bias
        if self.time_emb_proj is not None and temb is not None:
            t = self.time_emb_proj(temb if self.skip_time_act else self.nonlinearity(temb))
            x_bias = t + x_bias[None, :] if x_bias is not None else t                       # [N, C]
        h = norm_silu(self.norm1, x, True) if y is None else y
        if self.upsample is not None:
            if h.shape[0] >= 64:     # as diffusers does (its note: nearest upsampling of large NHWC batches)
                x, h = x.contiguous(), h.contiguous()
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1._conv_forward(h, self.conv1.weight, None)
        h = norm_silu(self.norm2, h, True, x_bias)
        h = self.conv2._conv_forward(self.dropout(h), self.conv2.weight, None)
        bias = self.conv2.bias
        if self.conv_shortcut is not None:
            sc = self.conv_shortcut
            x = sc._conv_forward(x, sc.weight, None) if isinstance(sc, nn.Conv2d) else sc(x)
            if isinstance(sc, nn.Conv2d) and sc.bias is not None:
                bias = sc.bias if bias is None else bias + sc.bias
        return h, x, bias

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs):
        h, skip, bias = self.branch(input_tensor, temb)
        return add_norm_silu(h, skip, bias, self.output_scale_factor, None)[0]

class FusedDecoder(Decoder):
    """SD-VAE's Decoder forward with the hand-overs fused: each residual sum is written with the next norm's
    statistics (add_norm_silu), each upsampler's interleave with the next block's first norm
    (upsample_norm_silu), the last block's sum with the final norm; nothing is read back just for
    statistics."""

    def forward(self, sample: torch.Tensor, latent_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if latent_embeds is not None:
            return super().forward(sample, latent_embeds)
        x = self.mid_block(self.conv_in(sample), None)
        y = None                     # silu(norm1(x)) of the next resnet, when already made
        blocks = self.up_blocks
        for bi, block in enumerate(blocks):
            after = blocks[bi + 1].resnets[0].norm1 if bi + 1 < len(blocks) else self.conv_norm_out
            for i, r in enumerate(block.resnets):
                last = i + 1 == len(block.resnets)
                nxt = None if last and block.upsamplers else (after if last else block.resnets[i + 1].norm1)
                h, skip, bias = r.branch(x, None, y)
                x, y = add_norm_silu(h, skip, bias, r.output_scale_factor, nxt)
            for up in block.upsamplers or []:
                x, y = upsample_norm_silu(up, x, after)
        return self.conv_out(y)
