"""GroupNorm (+ the SiLU that follows it) in a loaded diffusers model, through the Triton kernels of
groupnorm_kernels.py on the GPU.

In the decoder, a tensor that goes into a norm is written by a pass that also takes its statistics: a residual
sum (conv2's output + biases + shortcut, `add_norm_silu`) or an upsampler's interleaved output
(`upsample_norm_silu`), so it is not read back just for them.

`fuse_groupnorm_silu(module)` rewires a loaded diffusers model, keeping its parameters and state-dict keys:
ResnetBlock2Ds and SD-VAE's Decoder get forwards that call these kernels (`FusedResnetBlock2D`, `FusedDecoder` in
fused_blocks.py), and the final norm + SiLU of a UNet and the input norm of Transformer2DModels become
`GroupNormSiLU`. Shapes the kernels do not cover (CPU tensors, NCHW memory, pixels not a multiple of the tile)
take PyTorch's path: the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.generator.engines.musetalk.fast.groupnorm_kernels import (
    _fused_ok, add_group_norm_silu_triton, group_norm_silu_triton, phase_group_norm_silu_triton, supported, triton)

@torch.library.custom_op("lipsync::group_norm_silu", mutates_args=())
def group_norm_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                    silu: bool, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    return group_norm_silu_triton(x, weight, bias, groups, eps, silu, x_bias)


@group_norm_silu.register_fake
def _(x, weight, bias, groups, eps, silu, x_bias=None):
    return torch.empty_like(x)


@torch.library.custom_op("lipsync::add_group_norm_silu", mutates_args=())
def add_group_norm_silu(h: torch.Tensor, skip: torch.Tensor, h_bias: torch.Tensor, out_scale: float,
                        weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                        silu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return add_group_norm_silu_triton(h, skip, h_bias, out_scale, weight, bias, groups, eps, silu)


@add_group_norm_silu.register_fake
def _(h, skip, h_bias, out_scale, weight, bias, groups, eps, silu):
    return torch.empty_like(h), torch.empty_like(h)


@torch.library.custom_op("lipsync::phase_group_norm_silu", mutates_args=())
def phase_group_norm_silu(o: torch.Tensor, o_bias: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          groups: int, eps: float, silu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return phase_group_norm_silu_triton(o, o_bias, weight, bias, groups, eps, silu)


@phase_group_norm_silu.register_fake
def _(o, o_bias, weight, bias, groups, eps, silu):
    b, c4, h1, w1 = o.shape
    shape = (b, c4 // 4, 2 * (h1 - 1), 2 * (w1 - 1))
    make = lambda: torch.empty(shape, device=o.device, dtype=o.dtype, memory_format=torch.channels_last)  # noqa: E731
    return make(), make()


def upsample_norm_silu(up: nn.Module, x: torch.Tensor, norm: nn.GroupNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """An upsampler's output and silu(norm(output)); for a PhaseUpsample on the GPU, the interleave, its bias
    and the norm's statistics are one pass over the output."""
    from services.generator.engines.musetalk.fast.phase_upsample import PhaseUpsample

    if isinstance(up, PhaseUpsample) and x.is_cuda and norm.affine:
        b, _, h, w = x.shape
        probe = torch.empty((b, up.out_channels, 2 * h, 2 * w), device="meta", dtype=x.dtype,
                            memory_format=torch.channels_last)
        if _fused_ok(probe, norm.num_groups):
            o = F.conv2d(x, up.weight, None, padding=1)                  # [B, 4C, H+1, W+1], bias added in the pass
            if o.is_contiguous(memory_format=torch.channels_last):
                return phase_group_norm_silu(o, up.bias[:up.out_channels], norm.weight, norm.bias, norm.num_groups,
                                             norm.eps, True)
    out = up(x)
    return out, norm_silu(norm, out, True)


def add_norm_silu(h: torch.Tensor, skip: torch.Tensor, h_bias: torch.Tensor | None, out_scale: float,
                  norm: nn.GroupNorm | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A residual block's end and the next block's first norm: out = (h + h_bias + skip) / out_scale, and
    silu(norm(out)) computed in the same passes (None without a norm)."""
    if (norm is not None and h.is_cuda and h_bias is not None and norm.affine and _fused_ok(h, norm.num_groups)
            and skip.shape == h.shape and skip.dtype == h.dtype
            and skip.is_contiguous(memory_format=torch.channels_last)):
        return add_group_norm_silu(h, skip, h_bias, out_scale, norm.weight, norm.bias, norm.num_groups, norm.eps,
                                   True)
    out = (skip + (h if h_bias is None else h + h_bias.view(1, -1, 1, 1))) / out_scale
    return out, (None if norm is None else norm_silu(norm, out, True))


def self_check(device: str | torch.device, dtype: torch.dtype = torch.float16) -> str | None:
    """Run each kernel once on small tensors against PyTorch; None when they agree, else why not (a GPU or a
    Triton build the kernels do not work on). The engine calls this before it rewires a model."""
    if triton is None:
        return "triton is not installed"
    try:
        gen = torch.Generator().manual_seed(0)
        rnd = lambda *shape: torch.randn(*shape, generator=gen).to(device, dtype)  # noqa: E731
        cl = torch.channels_last
        x, skip = rnd(2, 64, 8, 8).to(memory_format=cl), rnd(2, 64, 8, 8).to(memory_format=cl)
        w, b, xb = rnd(64), rnd(64), rnd(64)
        tol = 1e-4 if dtype == torch.float32 else 2e-2

        def ref(t):
            return F.silu(F.group_norm(t.float(), 32, w.float(), b.float(), 1e-6))

        checks = {"group_norm_silu": (group_norm_silu_triton(x, w, b, 32, 1e-6, True, xb), ref(x + xb.view(1, -1, 1, 1)))}
        out, y = add_group_norm_silu_triton(x, skip, xb, 1.0, w, b, 32, 1e-6, True)
        checks["add_group_norm_silu"] = (y, ref(out))
        checks["add_group_norm_silu sum"] = (out, x.float() + skip.float() + xb.float().view(1, -1, 1, 1))
        x3 = rnd(2, 96, 8, 8).to(memory_format=cl)
        w3, b3 = rnd(96), rnd(96)
        checks["group_norm_silu (padded lanes)"] = (group_norm_silu_triton(x3, w3, b3, 32, 1e-6, False),
                                                    F.group_norm(x3.float(), 32, w3.float(), b3.float(), 1e-6))
        for name, (got, want) in checks.items():
            err = (got.float() - want.float()).abs().max().item()
            if not err <= tol * max(1.0, want.float().abs().max().item()):
                return f"{name}: max error {err:.3g} against PyTorch"
    except Exception as e:       # noqa: BLE001 - any failure means: do not use the kernels here
        return f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return None


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


def fusable(m: nn.Module) -> bool:
    """A diffusers ResnetBlock2D whose forward FusedResnetBlock2D restates exactly."""
    return (type(m).__name__ == "ResnetBlock2D" and isinstance(m.nonlinearity, nn.SiLU)
            and m.time_embedding_norm in ("default", "group") and type(m.norm1) is nn.GroupNorm
            and type(m.norm2) is nn.GroupNorm and m.norm1.affine and m.norm2.affine
            and type(m.conv1) is nn.Conv2d and m.conv1.padding_mode == "zeros")


def fuse_groupnorm_silu(module: nn.Module) -> int:
    """Rewire GroupNorm (+ SiLU) in a loaded diffusers model (see the module's docstring); returns how many norms
    now run through `norm_silu`."""
    from services.generator.engines.musetalk.fast.fused_blocks import FusedDecoder as decoder_cls
    from services.generator.engines.musetalk.fast.fused_blocks import FusedResnetBlock2D as resnet_cls

    count = 0
    for m in list(module.modules()):
        kind = type(m).__name__
        if fusable(m):
            m.__class__ = resnet_cls
            count += 2
        elif kind == "Decoder" and type(m.conv_norm_out) is nn.GroupNorm and isinstance(m.conv_act, nn.SiLU) \
                and all(type(b).__name__ == "UpDecoderBlock2D" and len(b.upsamplers or []) <= 1
                        and all(fusable(r) for r in b.resnets) for b in m.up_blocks):
            m.__class__ = decoder_cls     # its resnets are swapped as the loop reaches them
            count += 1
        elif kind in ("Decoder", "UNet2DConditionModel") and type(getattr(m, "conv_norm_out", None)) is nn.GroupNorm \
                and isinstance(getattr(m, "conv_act", None), nn.SiLU):
            m.conv_norm_out, m.conv_act = GroupNormSiLU(m.conv_norm_out, True), nn.Identity()
            count += 1
        elif kind == "Transformer2DModel" and type(getattr(m, "norm", None)) is nn.GroupNorm:
            m.norm = GroupNormSiLU(m.norm, False)
            count += 1
    return count
