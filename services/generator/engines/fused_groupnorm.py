"""GroupNorm (+ the SiLU that follows it) for channels_last activations on the GPU, in Triton.

SD-VAE's decoder runs GroupNorm + SiLU on large channels_last tensors (up to 256 channels at 256x256 per frame);
these passes are memory-bound, and inductor's own kernels for them ran at half the memory bandwidth or less. Here
each one is three kernels that read whole NHWC rows (coalesced):
1. per tile of pixels, the mean and M2 (sum of squared deviations) of every group -> partials [N, tiles, G];
2. per image, Chan's parallel combination of the partials -> mean and 1/std of every group;
3. normalise, scale and shift (+ SiLU, computed before rounding) into the same layout.
x is read twice and y written once. An optional bias [C] or [N, C] is added to x inside both passes: the bias of
the convolution before the norm (torch.compile adds a convolution's bias in a pass of its own, which fuses into
its consumer unless the consumer is an opaque kernel like this one) and a UNet block's time embedding.

`fuse_groupnorm_silu(module)` rewires a loaded diffusers model, keeping its parameters and state-dict keys:
ResnetBlock2Ds get a forward that calls these kernels (`FusedResnetBlock2D`), and the final norm + SiLU of a
decoder or UNet and the input norm of Transformer2DModels become `GroupNormSiLU`. Shapes the kernels do not cover
(CPU tensors, NCHW memory, pixels not a multiple of the tile) take PyTorch's path: the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:       # CPU-only installs: PyTorch's path
    triton = None

TILE = 8192              # elements per program (pixels x channels, channels rounded up to a power of two)


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


if triton is not None:
    @triton.jit
    def _group_sum(v, onehot):
        """[BLOCK_C] per-channel values -> [G] per-group sums."""
        return tl.sum(tl.where(onehot, v[:, None], 0.0), axis=0)

    @triton.jit
    def _partials(x_ptr, xb_ptr, mean_ptr, m2_ptr, HW, T, xb_stride, C: tl.constexpr, G: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, BLOCK_C)
        cmask = cols < C
        onehot = ((cols // (C // G))[:, None] == tl.arange(0, G)[None, :]) & cmask[:, None]    # [BLOCK_C, G]
        x = tl.load(x_ptr + n * HW * C + rows[:, None] * C + cols[None, :], mask=cmask[None, :], other=0.0)
        x = x.to(tl.float32)
        if HAS_XB:
            x += tl.load(xb_ptr + n * xb_stride + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        count = BLOCK_P * (C // G)
        mean = _group_sum(tl.sum(x, axis=0), onehot) / count                       # [G]
        mean_c = tl.sum(tl.where(onehot, mean[None, :], 0.0), axis=1)               # [BLOCK_C]
        d = tl.where(cmask[None, :], x - mean_c[None, :], 0.0)
        s1 = _group_sum(tl.sum(d, axis=0), onehot)     # corrected two-pass: the first mean's rounding error
        mean += s1 / count
        m2 = _group_sum(tl.sum(d * d, axis=0), onehot) - s1 * s1 / count
        out = (n * T + t) * G + tl.arange(0, G)
        tl.store(mean_ptr + out, mean)
        tl.store(m2_ptr + out, m2)

    @triton.jit
    def _combine(mean_ptr, m2_ptr, stat_ptr, T, per_tile, eps, G: tl.constexpr, BLOCK_T: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        g = tl.arange(0, G)
        total = tl.zeros((G,), tl.float32)
        for start in range(0, T, BLOCK_T):      # tiles hold equal counts: the mean is the mean of tile means
            t = start + tl.arange(0, BLOCK_T)
            ok = (t < T)[:, None]
            total += tl.sum(tl.load(mean_ptr + (n * T + t[:, None]) * G + g[None, :], mask=ok, other=0.0), axis=0)
        mean = total / T
        m2 = tl.zeros((G,), tl.float32)
        for start in range(0, T, BLOCK_T):      # Chan et al.: M2 = sum M2_t + count_t * (mean_t - mean)^2
            t = start + tl.arange(0, BLOCK_T)
            ok = (t < T)[:, None]
            idx = (n * T + t[:, None]) * G + g[None, :]
            mt = tl.load(mean_ptr + idx, mask=ok, other=0.0)
            d = tl.where(ok, mt - mean[None, :], 0.0)
            m2 += tl.sum(tl.load(m2_ptr + idx, mask=ok, other=0.0) + per_tile * d * d, axis=0)
        rstd = 1.0 / tl.sqrt(m2 / (T * per_tile) + eps)
        tl.store(stat_ptr + n * 2 * G + g, mean)
        tl.store(stat_ptr + n * 2 * G + G + g, rstd)

    @triton.jit
    def _apply(x_ptr, xb_ptr, y_ptr, stat_ptr, w_ptr, b_ptr, HW, xb_stride, C: tl.constexpr, G: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, SILU: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, BLOCK_C)
        cmask = cols < C
        grp = cols // (C // G)
        mean = tl.load(stat_ptr + n * 2 * G + grp, mask=cmask, other=0.0)
        rstd = tl.load(stat_ptr + n * 2 * G + G + grp, mask=cmask, other=0.0)
        scale = rstd * tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        if HAS_XB:      # (x + xb - mean): subtract before scaling, so a large mean does not cancel digits
            mean -= tl.load(xb_ptr + n * xb_stride + cols, mask=cmask, other=0.0).to(tl.float32)
        offs = n * HW * C + rows[:, None] * C + cols[None, :]
        x = tl.load(x_ptr + offs, mask=cmask[None, :], other=0.0).to(tl.float32)
        y = (x - mean[None, :]) * scale[None, :] + tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=cmask[None, :])


def _block_p(c: int, hw: int) -> int:
    return max(1, min(TILE // _next_pow2(c), _next_pow2(hw)))


def supported(x: torch.Tensor, groups: int) -> bool:
    """Shapes the Triton kernels cover: 4-D channels_last float, groups a power of two dividing the channels,
    the pixels a multiple of the tile."""
    if triton is None or x.dim() != 4 or x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    _, c, h, w = x.shape
    if c % groups or groups & (groups - 1) or _next_pow2(c) > TILE:
        return False
    return x.is_contiguous(memory_format=torch.channels_last) and (h * w) % _block_p(c, h * w) == 0


def group_norm_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                           silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    n, c, h, w = x.shape
    hw, bc = h * w, _next_pow2(c)
    bp = _block_p(c, hw)
    tiles = hw // bp
    part = torch.empty((2, n, tiles, groups), device=x.device, dtype=torch.float32)
    stats = torch.empty((n, 2, groups), device=x.device, dtype=torch.float32)
    y = torch.empty_like(x)      # keeps the channels_last strides
    has_xb = x_bias is not None
    xb = x_bias.contiguous() if has_xb else weight     # a placeholder pointer when there is no input bias
    xb_stride = c if has_xb and x_bias.dim() == 2 else 0
    warps = 8 if bp * bc >= 8192 else 4
    _partials[(n, tiles)](x, xb, part[0], part[1], hw, tiles, xb_stride, C=c, G=groups, BLOCK_C=bc, BLOCK_P=bp,
                          HAS_XB=has_xb, num_warps=warps)
    _combine[(n,)](part[0], part[1], stats, tiles, bp * (c // groups), eps, G=groups,
                   BLOCK_T=min(128, _next_pow2(tiles)), num_warps=4)
    _apply[(n, tiles)](x, xb, y, stats, weight, bias, hw, xb_stride, C=c, G=groups, BLOCK_C=bc, BLOCK_P=bp,
                       SILU=silu, HAS_XB=has_xb, num_warps=warps)
    return y


@torch.library.custom_op("lipsync::group_norm_silu", mutates_args=())
def group_norm_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                    silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    return group_norm_silu_triton(x, weight, bias, groups, eps, silu, x_bias)


@group_norm_silu.register_fake
def _(x, weight, bias, groups, eps, silu, x_bias=None):
    return torch.empty_like(x)


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor, silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    """silu?(norm(x + x_bias)); x_bias is [C] or [N, C]."""
    if x.is_cuda and norm.affine and supported(x, norm.num_groups):
        return group_norm_silu(x, norm.weight, norm.bias, norm.num_groups, norm.eps, silu, x_bias)
    if x_bias is not None:
        x = x + (x_bias[:, :, None, None] if x_bias.dim() == 2 else x_bias.view(1, -1, 1, 1))
    y = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return F.silu(y) if silu else y


class GroupNormSiLU(nn.GroupNorm):
    """nn.GroupNorm, optionally followed by SiLU, through `norm_silu` (same parameters, same keys)."""

    def __init__(self, norm: nn.GroupNorm, silu: bool):
        super().__init__(norm.num_groups, norm.num_channels, norm.eps, norm.affine, device="meta")
        self.weight, self.bias = norm.weight, norm.bias
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm_silu(self, x, self.silu)


def _resnet_class():
    from diffusers.models.resnet import ResnetBlock2D

    class FusedResnetBlock2D(ResnetBlock2D):
        """ResnetBlock2D's forward for the configurations `fusable` accepts: norm1 + SiLU in one kernel; conv1
        without its bias; its bias and the time embedding added inside norm2 + SiLU."""

        def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs):
            x_bias = self.conv1.bias
            if self.time_emb_proj is not None and temb is not None:
                t = self.time_emb_proj(temb if self.skip_time_act else self.nonlinearity(temb))
                x_bias = t + x_bias[None, :] if x_bias is not None else t                       # [N, C]
            h = norm_silu(self.norm1, input_tensor, True)
            if self.upsample is not None:
                if h.shape[0] >= 64:     # as diffusers does (its note: nearest upsampling of large NHWC batches)
                    input_tensor, h = input_tensor.contiguous(), h.contiguous()
                input_tensor, h = self.upsample(input_tensor), self.upsample(h)
            elif self.downsample is not None:
                input_tensor, h = self.downsample(input_tensor), self.downsample(h)
            h = self.conv1._conv_forward(h, self.conv1.weight, None)
            h = norm_silu(self.norm2, h, True, x_bias)
            h = self.conv2(self.dropout(h))
            if self.conv_shortcut is not None:
                input_tensor = self.conv_shortcut(input_tensor)
            return (input_tensor + h) / self.output_scale_factor

    return FusedResnetBlock2D


def fusable(m: nn.Module) -> bool:
    """A diffusers ResnetBlock2D whose forward FusedResnetBlock2D restates exactly."""
    return (type(m).__name__ == "ResnetBlock2D" and isinstance(m.nonlinearity, nn.SiLU)
            and m.time_embedding_norm in ("default", "group") and type(m.norm1) is nn.GroupNorm
            and type(m.norm2) is nn.GroupNorm and m.norm1.affine and m.norm2.affine
            and type(m.conv1) is nn.Conv2d and m.conv1.padding_mode == "zeros")


def fuse_groupnorm_silu(module: nn.Module) -> int:
    """Rewire GroupNorm (+ SiLU) in a loaded diffusers model (see the module's docstring); returns how many norms
    now run through `norm_silu`."""
    fused_cls, count = _resnet_class(), 0
    for m in list(module.modules()):
        kind = type(m).__name__
        if fusable(m):
            m.__class__ = fused_cls
            count += 2
        elif kind in ("Decoder", "UNet2DConditionModel") and type(getattr(m, "conv_norm_out", None)) is nn.GroupNorm \
                and isinstance(getattr(m, "conv_act", None), nn.SiLU):
            m.conv_norm_out, m.conv_act = GroupNormSiLU(m.conv_norm_out, True), nn.Identity()
            count += 1
        elif kind == "Transformer2DModel" and type(getattr(m, "norm", None)) is nn.GroupNorm:
            m.norm = GroupNormSiLU(m.norm, False)
            count += 1
    return count
