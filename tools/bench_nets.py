"""A/B of compile settings for MuseTalk's UNet + VAE decode (fp16, full size, random weights), one process.

Each variant recompiles; time is checked so the run ends inside a device call. `python -m tools.bench_nets`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

from tools.out import save_json
from tools.bench_gpu import GFLOP_PER_FRAME, cuda_ms, write_full_size_models

VARIANTS = {
    "baseline": {},
    "freezing": {"freezing": True},
    "freezing+conv_1x1_as_mm": {"freezing": True, "conv_1x1_as_mm": True},
    "bf16": {"_dtype": torch.bfloat16},
}


def main() -> int:
    import torch._dynamo
    import torch._inductor.config as ic

    from services.generator.engines.musetalk.model import MuseTalk, MuseTalkFiles

    start = time.time()
    budget = float(os.environ.get("NETS_BUDGET_S", "400"))
    batch = int(os.environ.get("NETS_BATCH", "64"))
    models = tempfile.mkdtemp()
    write_full_size_models(models)
    files = MuseTalkFiles.layout(models, "v15")
    m = MuseTalk(files, device="cuda", dtype=torch.float16)
    m.unet.to(memory_format=torch.channels_last)
    m.vae.to(memory_format=torch.channels_last)
    names = os.environ.get("NETS_VARIANTS", ",".join(VARIANTS)).split(",")
    rows = []
    defaults = {k: getattr(ic, k) for v in VARIANTS.values() for k in v if not k.startswith("_")}
    for name in names:
        if time.time() - start > budget:
            print(f"skipped {name}: out of time", flush=True)
            continue
        cfg = VARIANTS[name]
        for k, v in defaults.items():
            setattr(ic, k, v)
        for k, v in cfg.items():
            if not k.startswith("_"):
                setattr(ic, k, v)
        dtype = cfg.get("_dtype", torch.float16)
        m.unet.to(dtype)
        m.vae.to(dtype)
        torch._dynamo.reset()
        unet = torch.compile(lambda x, c: m.unet(x, m.timestep, encoder_hidden_states=c).sample, dynamic=False)
        dec = torch.compile(lambda z: m.vae.decode(z).sample, dynamic=False)
        x = torch.randn(batch, 8, 32, 32, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
        c = torch.randn(batch, 50, 384, device="cuda", dtype=dtype)
        t0 = time.time()
        with torch.no_grad():
            fn = lambda: dec(unet(x, c))   # noqa: E731
            fn()
            compile_s = time.time() - t0
            torch.cuda.reset_peak_memory_stats()
            ms = min(cuda_ms(fn, iters=20, warm=3) for _ in range(2))
        fps = batch / ms * 1e3
        rows.append(dict(variant=name, batch=batch, ms=round(ms, 2), fps=round(fps, 1), compile_s=round(compile_s),
                         tflops=round(fps * GFLOP_PER_FRAME / 1e3), mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2)))
        print(json.dumps(rows[-1]), flush=True)
    save_json("nets.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
