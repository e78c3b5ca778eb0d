"""GroupNorm + SiLU on the GPU: the Triton kernels (fused_groupnorm.py) against inductor's, then the VAE decoder and
UNet + decoder with and without them (fp16, channels_last, torch.compile, full size, random weights), and where
the decoder's time goes. `python -m tools.bench_groupnorm` on the GPU machine; JSON to $OUT.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from tools.out import save_json
from tools.bench_gpu import GFLOP_PER_FRAME, cuda_ms, write_full_size_models

# (channels, side) of the decoder's GroupNorms at 256x256 output
SHAPES = [(512, 32), (512, 64), (512, 128), (256, 128), (256, 256), (128, 256)]


def kernels(batch: int, rows: list) -> None:
    from services.generator.engines.musetalk.fast import groupnorm_kernels as fg

    for c, side in SHAPES:
        x = torch.randn(batch, c, side, side, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
        x = x * 2 + 1
        w = torch.randn(c, device="cuda", dtype=torch.float16)
        b = torch.randn(c, device="cuda", dtype=torch.float16)
        ref = F.silu(F.group_norm(x.float(), 32, w.float(), b.float(), 1e-6))
        comp = torch.compile(lambda t: F.silu(F.group_norm(t, 32, w, b, 1e-6)), dynamic=False)
        r = dict(shape=[batch, c, side, side], inductor_ms=round(cuda_ms(lambda: comp(x), 20, 3), 3),
                 inductor_err=round((comp(x).float() - ref).abs().max().item(), 4))
        for tile in (8192,):
            fg.TILE = tile
            r[f"triton_{tile}_ms"] = round(cuda_ms(lambda: fg.group_norm_silu_triton(x, w, b, 32, 1e-6, True), 20, 3), 3)
            r[f"triton_{tile}_err"] = round((fg.group_norm_silu_triton(x, w, b, 32, 1e-6, True).float() - ref).abs().max().item(), 4)
        fg.TILE = 8192
        r["bound_ms"] = round(3 * x.numel() * 2 / 3.0e12 * 1e3, 3)    # 2 reads + 1 write at ~3 TB/s
        rows.append(r)
        print(json.dumps(r), flush=True)


def _top(fn, calls=3, n=40):
    from torch.profiler import ProfilerActivity, profile as prof
    with prof(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    events = sorted(p.key_averages(), key=lambda e: -e.device_time_total)[:n]
    total = sum(e.device_time_total for e in p.key_averages())
    top = [dict(kernel=e.key[:90], ms_per_call=round(e.device_time_total / calls / 1e3, 3), calls=e.count // calls,
                share=round(e.device_time_total / total, 3)) for e in events]
    for t in top:
        print("   ", json.dumps(t), flush=True)
    return top


def conv_out(batch: int, rows: list) -> None:
    x = torch.randn(batch, 128, 256, 256, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    for out in (3, 4, 8, 16):
        conv = torch.nn.Conv2d(128, out, 3, padding=1).cuda().half().to(memory_format=torch.channels_last)
        with torch.no_grad():
            rows.append(dict(part=f"conv 128->{out} at 256x256", batch=batch, ms=round(cuda_ms(lambda: conv(x), 20, 3), 3)))
        print(json.dumps(rows[-1]), flush=True)


def networks(batch: int, rows: list, profile: bool) -> None:
    """Stock modules (phase upsampling only) against the engine's fused decoder, each network compiled alone."""
    from services.generator.engines.musetalk.fast.fused_groupnorm import fuse_groupnorm_silu
    from services.generator.engines.musetalk.model import MuseTalk, MuseTalkFiles, fuse_decoder
    from services.generator.engines.musetalk.fast.tap_conv import replace_conv_out

    models = tempfile.mkdtemp()
    write_full_size_models(models)
    m = MuseTalk(MuseTalkFiles.layout(models, "v15"), device="cuda", dtype=torch.float16, fused_kernels=False)
    ref_vae = copy.deepcopy(m.vae).float()
    ref_unet = copy.deepcopy(m.unet).float()
    m.unet.to(memory_format=torch.channels_last)
    m.vae.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 8, 32, 32, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    c = torch.randn(batch, 50, 384, device="cuda", dtype=torch.float16)
    z = torch.randn(batch, 4, 32, 32, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref_z = torch.cat([ref_vae.decode(z[i:i + 8].float()).sample for i in range(0, batch, 8)])
        ref_u = torch.cat([ref_unet(x[i:i + 8].float(), m.timestep, encoder_hidden_states=c[i:i + 8].float()).sample
                           for i in range(0, batch, 8)])
        ref_vae = ref_unet = None
        best = {}
        variants = [v.split(":") for v in os.environ.get("GN_NETS", "unet:0,unet:1,decoder:0,decoder:1").split(",")]
        for net, fused in ((net, fused == "1") for net, fused in variants):
            mod = m.unet if net == "unet" else m.vae
            if fused:
                mod = copy.deepcopy(mod)
                if net == "unet":
                    fuse_groupnorm_silu(mod)
                    replace_conv_out(mod)
                else:
                    fuse_decoder(mod.decoder)
            if net == "unet":
                fn = torch.compile(lambda a, b, u=mod: u(a, m.timestep, encoder_hidden_states=b).sample,
                                   dynamic=False)
                call, ref = (lambda f=fn: f(x, c)), ref_u
            else:
                fn = torch.compile(lambda a, v=mod: v.decode(a).sample, dynamic=False)
                call, ref = (lambda f=fn: f(z)), ref_z
            t0 = time.time()
            err = (call().float() - ref).abs()
            compile_s = time.time() - t0
            torch.cuda.reset_peak_memory_stats()
            ms = min(cuda_ms(call, 20, 3) for _ in range(2))
            name = net + (" + fused kernels" if fused else "")
            best[name] = ms
            rows.append(dict(part=name, batch=batch, ms=round(ms, 2), compile_s=round(compile_s),
                             mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                             err_vs_fp32_max=round(err.max().item(), 5), err_vs_fp32_mean=round(err.mean().item(), 6),
                             ref_absmax=round(ref.abs().max().item(), 3)))
            print(json.dumps(rows[-1]), flush=True)
            if profile:
                rows.append(dict(part=f"{name} profile", top=_top(call)))
        for u in [k for k in best if k.startswith("unet")]:
            for d in [k for k in best if k.startswith("decoder")]:
                ms = best[u] + best[d]
                rows.append(dict(part=f"{u} | {d}", batch=batch, ms=round(ms, 2), fps=round(batch / ms * 1e3, 1),
                                 tflops=round(batch / ms * 1e3 * GFLOP_PER_FRAME / 1e3)))
                print(json.dumps(rows[-1]), flush=True)


def main() -> int:
    torch.backends.cudnn.benchmark = True
    batch = int(os.environ.get("GN_BATCH", "64"))
    rows: list = [dict(device=torch.cuda.get_device_name(0), torch=torch.__version__)]
    try:
        if os.environ.get("GN_KERNELS", "1") == "1":
            kernels(batch, rows)
        if os.environ.get("GN_CONV_OUT", "1") == "1":
            conv_out(batch, rows)
        networks(batch, rows, profile=os.environ.get("GN_PROFILE", "1") == "1")
    finally:
        save_json("groupnorm.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
