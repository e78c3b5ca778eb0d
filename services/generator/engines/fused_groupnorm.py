"""GroupNorm (+ the SiLU that follows it) for channels_last activations on the GPU, in Triton.

SD-VAE's decoder runs GroupNorm + SiLU on large channels_last tensors (up to 256 channels at 256x256 per frame);
these passes are memory-bound. Here each one is three kernels that read whole NHWC rows (coalesced):
1. per tile of pixels, the mean and M2 (sum of squared deviations) of every group -> partials [N, tiles, G];
2. per image, Chan's parallel combination of the partials -> mean and 1/std of every group;
3. normalise, scale and shift (+ SiLU, computed before rounding) into the same layout.
x is read twice and y written once; the normalised tensor before the SiLU never reaches memory.

`fuse_groupnorm_silu(module)` swaps the GroupNorms of diffusers ResnetBlock2Ds without a time embedding (SD-VAE's
decoder) and the decoder's final norm for `GroupNormSiLU`, and makes the block's separate SiLU an identity: the
same function, the same state-dict keys. Shapes the kernels do not cover (CPU, channels not a power of two,
NCHW memory) take PyTorch's path in the same module.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:       # CPU-only installs: the module keeps PyTorch's path
    triton = None

TILE = 8192              # elements per program (pixels x channels)


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


if triton is not None:
    @triton.jit
    def _partials(x_ptr, xb_ptr, mean_ptr, m2_ptr, HW, T, C: tl.constexpr, G: tl.constexpr, BLOCK_P: tl.constexpr,
                  HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, C)
        x = tl.load(x_ptr + n * HW * C + rows[:, None] * C + cols[None, :]).to(tl.float32)
        if HAS_XB:
            x += tl.load(xb_ptr + cols).to(tl.float32)[None, :]
        xg = tl.reshape(x, (BLOCK_P, G, C // G))
        count = BLOCK_P * (C // G)
        mean = tl.sum(tl.sum(xg, axis=2), axis=0) / count
        d = xg - mean[None, :, None]
        s1 = tl.sum(tl.sum(d, axis=2), axis=0)      # corrected two-pass: the first mean's rounding error
        mean += s1 / count
        m2 = tl.sum(tl.sum(d * d, axis=2), axis=0) - s1 * s1 / count
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
    def _apply(x_ptr, xb_ptr, y_ptr, stat_ptr, w_ptr, b_ptr, HW, C: tl.constexpr, G: tl.constexpr,
               BLOCK_P: tl.constexpr, SILU: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, C)
        grp = cols // (C // G)
        mean = tl.load(stat_ptr + n * 2 * G + grp)
        rstd = tl.load(stat_ptr + n * 2 * G + G + grp)
        scale = rstd * tl.load(w_ptr + cols).to(tl.float32)
        if HAS_XB:      # (x + xb - mean): subtract before scaling, so a large mean does not cancel digits
            mean -= tl.load(xb_ptr + cols).to(tl.float32)
        offs = n * HW * C + rows[:, None] * C + cols[None, :]
        x = tl.load(x_ptr + offs).to(tl.float32)
        y = (x - mean[None, :]) * scale[None, :] + tl.load(b_ptr + cols).to(tl.float32)[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty))


def _block_p(c: int, hw: int) -> int:
    return max(1, min(TILE // c, hw))


def supported(x: torch.Tensor, groups: int) -> bool:
    """Shapes the Triton kernels cover: 4-D channels_last, channels and channels per group powers of two, the
    pixels a multiple of the tile."""
    if triton is None or x.dim() != 4 or x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    n, c, h, w = x.shape
    if not (_pow2(c) and c % groups == 0 and _pow2(c // groups) and _pow2(groups) and c <= TILE):
        return False
    return x.is_contiguous(memory_format=torch.channels_last) and (h * w) % _block_p(c, h * w) == 0


def group_norm_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                           silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    n, c, h, w = x.shape
    hw = h * w
    bp = _block_p(c, hw)
    tiles = hw // bp
    part = torch.empty((2, n, tiles, groups), device=x.device, dtype=torch.float32)
    stats = torch.empty((n, 2, groups), device=x.device, dtype=torch.float32)
    y = torch.empty_like(x)      # keeps the channels_last strides
    warps = 8 if bp * c >= 8192 else 4
    xb = x_bias if x_bias is not None else weight     # a placeholder pointer when there is no input bias
    has_xb = x_bias is not None
    _partials[(n, tiles)](x, xb, part[0], part[1], hw, tiles, C=c, G=groups, BLOCK_P=bp, HAS_XB=has_xb,
                          num_warps=warps)
    _combine[(n,)](part[0], part[1], stats, tiles, bp * (c // groups), eps, G=groups,
                   BLOCK_T=min(128, triton.next_power_of_2(tiles)), num_warps=4)
    _apply[(n, tiles)](x, xb, y, stats, weight, bias, hw, C=c, G=groups, BLOCK_P=bp, SILU=silu, HAS_XB=has_xb,
                       num_warps=warps)
    return y


@torch.library.custom_op("lipsync::group_norm_silu", mutates_args=())
def group_norm_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                    silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    return group_norm_silu_triton(x, weight, bias, groups, eps, silu, x_bias)


@group_norm_silu.register_fake
def _(x, weight, bias, groups, eps, silu, x_bias=None):
    return torch.empty_like(x)


class GroupNormSiLU(nn.GroupNorm):
    """nn.GroupNorm, optionally followed by SiLU; the Triton path on CUDA where `supported`, else PyTorch's.

    `bias_of`: a BiasLaterConv2d that feeds this norm; its bias is added here (inside the norm's own passes)
    instead of in a pass of its own over the convolution's output."""

    def __init__(self, norm: nn.GroupNorm, silu: bool, bias_of: nn.Conv2d | None = None):
        super().__init__(norm.num_groups, norm.num_channels, norm.eps, norm.affine, device="meta")
        self.weight, self.bias = norm.weight, norm.bias
        self.silu = silu
        self._bias_of = [bias_of] if bias_of is not None else []    # a list: not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = self._bias_of[0].bias if self._bias_of else None
        if x.is_cuda and self.affine and supported(x, self.num_groups):
            return group_norm_silu(x, self.weight, self.bias, self.num_groups, self.eps, self.silu, xb)
        if xb is not None:
            x = x + xb.view(1, -1, 1, 1)
        y = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.silu(y) if self.silu else y


class BiasLaterConv2d(nn.Conv2d):
    """A Conv2d whose bias is added by the GroupNormSiLU that reads its output (same parameters, same keys).
    torch.compile adds a convolution's bias in a separate pass anyway (cuDNN is slower with it); that pass
    fuses into its consumer unless the consumer is an opaque kernel like ours."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, True, conv.padding_mode, device="meta")
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, None)


def fuse_groupnorm_silu(module: nn.Module, bias_later: bool = True) -> int:
    """Swap GroupNorm (+ SiLU) pairs in diffusers ResnetBlock2Ds without a time embedding, and a decoder's
    conv_norm_out + conv_act; with `bias_later` the bias of conv1 is added inside norm2. Returns how many norms
    were swapped. Same function, same state-dict keys."""
    count = 0
    for m in list(module.modules()):
        kind = type(m).__name__
        if kind == "ResnetBlock2D" and m.time_emb_proj is None and m.time_embedding_norm != "scale_shift" \
                and isinstance(m.nonlinearity, nn.SiLU) \
                and type(m.norm1) is nn.GroupNorm and type(m.norm2) is nn.GroupNorm:
            # conv1's output goes only to norm2 in such a block (no time embedding to add)
            if bias_later and type(m.conv1) is nn.Conv2d and m.conv1.bias is not None:
                m.conv1 = BiasLaterConv2d(m.conv1)
            m.norm1 = GroupNormSiLU(m.norm1, True)
            m.norm2 = GroupNormSiLU(m.norm2, True, m.conv1 if isinstance(m.conv1, BiasLaterConv2d) else None)
            m.nonlinearity = nn.Identity()      # only ever applied right after norm1 and norm2 here
            count += 2
        elif kind == "Decoder" and type(getattr(m, "conv_norm_out", None)) is nn.GroupNorm \
                and isinstance(m.conv_act, nn.SiLU):
            m.conv_norm_out, m.conv_act = GroupNormSiLU(m.conv_norm_out, True), nn.Identity()
            count += 1
    return count
