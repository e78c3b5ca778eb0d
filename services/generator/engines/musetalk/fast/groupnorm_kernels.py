"""GroupNorm (+ the SiLU that follows it) for channels_last activations on the GPU: the Triton kernels and their
launchers. The modules that call them are in fused_groupnorm.py.

SD-VAE's decoder runs GroupNorm + SiLU on large channels_last tensors (up to 256 channels at 256x256 per frame);
these passes are memory-bound, and inductor's own kernels for them ran at half the memory bandwidth or less. Here
each one is three kernels that read whole NHWC rows (coalesced):
1. per tile of pixels, the mean and M2 (sum of squared deviations) of every group -> partials [N, tiles, G];
2. per image, Chan's parallel combination of the partials -> mean and 1/std of every group;
3. normalise, scale and shift (+ SiLU, computed before rounding) into the same layout.
x is read twice and y written once. An optional bias [C] or [N, C] is added to x inside both passes: the bias of
the convolution before the norm (torch.compile adds a convolution's bias in a pass of its own, which fuses into
its consumer unless the consumer is an opaque kernel like this one) and a UNet block's time embedding.

Two variants write the tensor that goes into the norm in the same pass that takes its statistics: a residual sum
(`add_group_norm_silu_triton`) and PhaseUpsample's interleaved output (`phase_group_norm_silu_triton`).
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:       # CPU-only installs: PyTorch's path
    triton = None

TILE = 8192              # elements per program (pixels x channels)


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


if triton is not None:
    @triton.jit
    def _partials(x_ptr, xb_ptr, mean_ptr, m2_ptr, HW, T, xb_stride, C: tl.constexpr, G: tl.constexpr,
                  BLOCK_P: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, C)
        x = tl.load(x_ptr + n * HW * C + rows[:, None] * C + cols[None, :]).to(tl.float32)
        if HAS_XB:
            x += tl.load(xb_ptr + n * xb_stride + cols).to(tl.float32)[None, :]
        _tile_stats(x, mean_ptr, m2_ptr, n, t, T, C, G, BLOCK_P)

    @triton.jit
    def _add_partials(h_ptr, skip_ptr, hb_ptr, out_ptr, mean_ptr, m2_ptr, HW, T, inv_scale, C: tl.constexpr,
                      G: tl.constexpr, BLOCK_P: tl.constexpr):
        """out = (h + hb + skip) * inv_scale, written, and the statistics of out as written (rounded)."""
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, C)
        offs = n * HW * C + rows[:, None] * C + cols[None, :]
        v = tl.load(h_ptr + offs).to(tl.float32) + tl.load(hb_ptr + cols).to(tl.float32)[None, :]
        v = (v + tl.load(skip_ptr + offs).to(tl.float32)) * inv_scale
        v = v.to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + offs, v)
        _tile_stats(v.to(tl.float32), mean_ptr, m2_ptr, n, t, T, C, G, BLOCK_P)

    @triton.jit
    def _phase_partials(o_ptr, ob_ptr, out_ptr, mean_ptr, m2_ptr, H, W, T, C: tl.constexpr, G: tl.constexpr,
                        BLOCK_P: tl.constexpr):
        """PhaseUpsample's interleave (see phase_upsample.py): out[2i+a, 2j+c] = o[i+a, j+c, phase (a, c)] + ob,
        written, and the statistics of out as written."""
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        p = t * BLOCK_P + tl.arange(0, BLOCK_P)          # output pixels, row-major over (2H, 2W)
        yy, xx = p // (2 * W), p % (2 * W)
        src = ((yy // 2 + yy % 2) * (W + 1) + (xx // 2 + xx % 2)).to(tl.int64) * (4 * C) + ((yy % 2) * 2 + xx % 2) * C
        cols = tl.arange(0, C)
        v = tl.load(o_ptr + n * (H + 1) * (W + 1) * 4 * C + src[:, None] + cols[None, :]).to(tl.float32)
        v = (v + tl.load(ob_ptr + cols).to(tl.float32)[None, :]).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + n * 4 * H * W * C + p[:, None] * C + cols[None, :], v)
        _tile_stats(v.to(tl.float32), mean_ptr, m2_ptr, n, t, T, C, G, BLOCK_P)

    @triton.jit
    def _tile_stats(x, mean_ptr, m2_ptr, n, t, T, C: tl.constexpr, G: tl.constexpr, BLOCK_P: tl.constexpr):
        """mean and M2 of each group of a [BLOCK_P, C] fp32 tile -> partials[n, t, :]."""
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
    def _partials_pad(x_ptr, xb_ptr, mean_ptr, m2_ptr, HW, T, xb_stride, C: tl.constexpr, G: tl.constexpr,
                      CGP: tl.constexpr, BLOCK_P: tl.constexpr, HAS_XB: tl.constexpr):
        """_partials for channels per group that are not a power of two (a UNet's 320-2560 channels): the tile is
        [pixels, group, CGP lanes] with lanes past C // G masked."""
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        k = tl.arange(0, CGP)
        ch = tl.arange(0, G)[:, None] * (C // G) + k[None, :]                          # [G, CGP]
        valid = (k < C // G)[None, None, :]
        x = tl.load(x_ptr + n * HW * C + rows[:, None, None] * C + ch[None, :, :], mask=valid, other=0.0)
        x = x.to(tl.float32)
        if HAS_XB:
            x += tl.load(xb_ptr + n * xb_stride + ch, mask=(k < C // G)[None, :], other=0.0).to(tl.float32)[None, :, :]
        count = BLOCK_P * (C // G)
        mean = tl.sum(tl.sum(x, axis=2), axis=0) / count
        d = tl.where(valid, x - mean[None, :, None], 0.0)
        s1 = tl.sum(tl.sum(d, axis=2), axis=0)
        mean += s1 / count
        m2 = tl.sum(tl.sum(d * d, axis=2), axis=0) - s1 * s1 / count
        out = (n * T + t) * G + tl.arange(0, G)
        tl.store(mean_ptr + out, mean)
        tl.store(m2_ptr + out, m2)

    @triton.jit
    def _apply_pad(x_ptr, xb_ptr, y_ptr, stat_ptr, w_ptr, b_ptr, HW, xb_stride, C: tl.constexpr, G: tl.constexpr,
                   CGP: tl.constexpr, BLOCK_P: tl.constexpr, SILU: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        g = tl.arange(0, G)
        k = tl.arange(0, CGP)
        ch = g[:, None] * (C // G) + k[None, :]                                          # [G, CGP]
        ok = k[None, :] < C // G
        mean = tl.load(stat_ptr + n * 2 * G + g)[:, None]
        scale = tl.load(stat_ptr + n * 2 * G + G + g)[:, None] * tl.load(w_ptr + ch, mask=ok, other=0.0).to(tl.float32)
        if HAS_XB:
            mean = mean - tl.load(xb_ptr + n * xb_stride + ch, mask=ok, other=0.0).to(tl.float32)
        offs = n * HW * C + rows[:, None, None] * C + ch[None, :, :]
        x = tl.load(x_ptr + offs, mask=ok[None, :, :], other=0.0).to(tl.float32)
        y = (x - mean[None, :, :]) * scale[None, :, :] + tl.load(b_ptr + ch, mask=ok, other=0.0).to(tl.float32)[None, :, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=ok[None, :, :])

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
               BLOCK_P: tl.constexpr, SILU: tl.constexpr, HAS_XB: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1)
        rows = t * BLOCK_P + tl.arange(0, BLOCK_P)
        cols = tl.arange(0, C)
        grp = cols // (C // G)
        mean = tl.load(stat_ptr + n * 2 * G + grp)
        scale = tl.load(stat_ptr + n * 2 * G + G + grp) * tl.load(w_ptr + cols).to(tl.float32)
        if HAS_XB:      # (x + xb - mean): subtract before scaling, so a large mean does not cancel digits
            mean -= tl.load(xb_ptr + n * xb_stride + cols).to(tl.float32)
        offs = n * HW * C + rows[:, None] * C + cols[None, :]
        x = tl.load(x_ptr + offs).to(tl.float32)
        y = (x - mean[None, :]) * scale[None, :] + tl.load(b_ptr + cols).to(tl.float32)[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty))


def _block_p(c: int, hw: int, groups: int = 1) -> int:
    width = groups * _next_pow2(c // groups)           # lanes per pixel (c itself when c // groups is a power of 2)
    return max(1, min(TILE // width, _next_pow2(hw)))


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def supported(x: torch.Tensor, groups: int) -> bool:
    """Shapes the Triton kernels cover: 4-D channels_last float; groups a power of two dividing the channels (any
    channels per group: lanes are padded to a power of two); the pixels a multiple of the tile."""
    if triton is None or x.dim() != 4 or x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    _, c, h, w = x.shape
    if not (_pow2(groups) and c % groups == 0 and groups * _next_pow2(c // groups) <= TILE):
        return False
    return x.is_contiguous(memory_format=torch.channels_last) and (h * w) % _block_p(c, h * w, groups) == 0


def _fused_ok(x: torch.Tensor, groups: int) -> bool:
    """The residual and upsampler variants: channels a power of two as well (SD-VAE's decoder)."""
    return supported(x, groups) and _pow2(x.shape[1])


def _launch(x: torch.Tensor, groups: int):
    n, c, h, w = x.shape
    bp = _block_p(c, h * w)
    tiles = h * w // bp
    part = torch.empty((2, n, tiles, groups), device=x.device, dtype=torch.float32)
    return n, c, h * w, bp, tiles, part, (8 if bp * c >= 8192 else 4)


def _finish(x, part, weight, bias, groups, eps, silu, xb, xb_stride, n, c, hw, bp, tiles, warps):
    """combine the partials, then normalise x (+ xb) into a new tensor."""
    stats = torch.empty((n, 2, groups), device=x.device, dtype=torch.float32)
    _combine[(n,)](part[0], part[1], stats, tiles, bp * (c // groups), eps, G=groups,
                   BLOCK_T=min(128, _next_pow2(tiles)), num_warps=4)
    y = torch.empty_like(x)      # keeps the channels_last strides
    _apply[(n, tiles)](x, xb if xb is not None else weight, y, stats, weight, bias, hw, xb_stride, C=c, G=groups,
                       BLOCK_P=bp, SILU=silu, HAS_XB=xb is not None, num_warps=warps)
    return y


def group_norm_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                           silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    xb = x_bias.contiguous() if x_bias is not None else None
    n, c, h, w = x.shape
    xb_stride = c if xb is not None and xb.dim() == 2 else 0
    if not _pow2(c // groups):
        cgp, hw = _next_pow2(c // groups), h * w
        bp = _block_p(c, hw, groups)
        tiles = hw // bp
        part = torch.empty((2, n, tiles, groups), device=x.device, dtype=torch.float32)
        stats = torch.empty((n, 2, groups), device=x.device, dtype=torch.float32)
        warps = 8 if bp * groups * cgp >= 8192 else 4
        xbp = xb if xb is not None else weight
        _partials_pad[(n, tiles)](x, xbp, part[0], part[1], hw, tiles, xb_stride, C=c, G=groups, CGP=cgp,
                                  BLOCK_P=bp, HAS_XB=xb is not None, num_warps=warps)
        _combine[(n,)](part[0], part[1], stats, tiles, bp * (c // groups), eps, G=groups,
                       BLOCK_T=min(128, _next_pow2(tiles)), num_warps=4)
        y = torch.empty_like(x)
        _apply_pad[(n, tiles)](x, xbp, y, stats, weight, bias, hw, xb_stride, C=c, G=groups, CGP=cgp, BLOCK_P=bp,
                               SILU=silu, HAS_XB=xb is not None, num_warps=warps)
        return y
    n, c, hw, bp, tiles, part, warps = _launch(x, groups)
    _partials[(n, tiles)](x, xb if xb is not None else weight, part[0], part[1], hw, tiles, xb_stride, C=c,
                          G=groups, BLOCK_P=bp, HAS_XB=xb is not None, num_warps=warps)
    return _finish(x, part, weight, bias, groups, eps, silu, xb, xb_stride, n, c, hw, bp, tiles, warps)


def add_group_norm_silu_triton(h: torch.Tensor, skip: torch.Tensor, h_bias: torch.Tensor, out_scale: float,
                               weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                               silu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, hw, bp, tiles, part, warps = _launch(h, groups)
    out = torch.empty_like(h)
    _add_partials[(n, tiles)](h, skip, h_bias, out, part[0], part[1], hw, tiles, 1.0 / out_scale, C=c, G=groups,
                              BLOCK_P=bp, num_warps=warps)
    return out, _finish(out, part, weight, bias, groups, eps, silu, None, 0, n, c, hw, bp, tiles, warps)


def phase_group_norm_silu_triton(o: torch.Tensor, o_bias: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                                 groups: int, eps: float, silu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    b, c4, h1, w1 = o.shape
    c, h, w = c4 // 4, h1 - 1, w1 - 1
    out = torch.empty((b, c, 2 * h, 2 * w), device=o.device, dtype=o.dtype, memory_format=torch.channels_last)
    n, c, hw, bp, tiles, part, warps = _launch(out, groups)
    _phase_partials[(n, tiles)](o, o_bias, out, part[0], part[1], h, w, tiles, C=c, G=groups, BLOCK_P=bp,
                                num_warps=warps)
    return out, _finish(out, part, weight, bias, groups, eps, silu, None, 0, n, c, hw, bp, tiles, warps)
