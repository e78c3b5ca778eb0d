"""How the VAE decode is split within a batch, A/B in one process (full-size random weights, fp16, the engine's
compiled path `generate_uint8` replayed as CUDA graphs). `python -m tools.bench_decode` on the GPU machine.

Variants: the decoder on `DECODE_CHUNK` frames at a time (MUSETALK_DECODE_CHUNK's default), on the whole batch, and
split: its first k up-blocks (32x32 and 64x64 activations) on the whole batch, the later ones chunked. Each is
timed in rounds, the variants taking turns (the GPU's clock under its power cap drifts), and its activation peak is
the compiled function's peak allocation on one call outside a graph. Writes $OUT/decode_split.json.
Random weights: these are speed and memory figures only.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

from tools.bench_gpu import cuda_ms, write_full_size_models
from tools.out import save_json


def variants(chunk: int) -> dict[str, tuple[int, int, int]]:
    """name -> (model.decode_chunk, decoder.chunk, decoder.whole_blocks)."""
    return {f"chunk {chunk}": (chunk, 0, 0), "whole batch": (0, 0, 0),
            **{f"first {k} up-blocks whole, then chunk {chunk}": (0, chunk, k) for k in (1, 2)}}


def main() -> int:
    from services.generator.engines.musetalk.fast.cuda_graphs import SharedPoolGraphs
    from services.generator.engines.musetalk.model import MuseTalk, MuseTalkFiles

    batch = int(os.environ.get("DECODE_BATCH", "32"))
    chunk = int(os.environ.get("DECODE_CHUNK", "16"))
    rounds = int(os.environ.get("DECODE_ROUNDS", "5"))
    models = tempfile.mkdtemp()
    write_full_size_models(models)
    m = MuseTalk(MuseTalkFiles.layout(models, "v15"), device="cuda", dtype=torch.float16)
    m.unet.to(memory_format=torch.channels_last)
    m.vae.to(memory_format=torch.channels_last)
    dec = m.vae.decoder
    lat = torch.randn(batch, 8, 32, 32, device="cuda", dtype=torch.float16)
    tok = torch.randn(batch, 50, 384, device="cuda", dtype=torch.float16)
    runs, rows = {}, []
    for name, (model_chunk, dec_chunk, whole) in variants(chunk).items():
        t0 = time.time()

        # read when traced (dynamo guards on them); the captured graph keeps what it was traced with
        m.decode_chunk, dec.chunk, dec.whole_blocks = model_chunk, dec_chunk, whole
        compiled = torch.compile(m._forward_uint8, dynamic=False)
        with torch.no_grad():
            compiled(lat, tok)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            out = compiled(lat, tok).clone()
            peak = torch.cuda.max_memory_allocated() - base
            graphs = SharedPoolGraphs(compiled)
            graphs(lat, tok)
        runs[name] = graphs
        rows.append(dict(variant=name, batch=batch, compile_s=round(time.time() - t0), peak_mib=round(peak / 2**20),
                         out=out))
        print(name, rows[-1]["compile_s"], "s to compile,", rows[-1]["peak_mib"], "MiB peak", flush=True)
    ref = rows[0].pop("out")
    for r in rows[1:]:
        r["max_diff_vs_first"] = int((r.pop("out").int() - ref.int()).abs().max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for _ in range(rounds):
            for name, graphs in runs.items():
                times[name].append(cuda_ms(lambda: graphs(lat, tok), iters=10, warm=2))
    for r in rows:
        ms = sorted(times[r["variant"]])
        r.update(ms_median=round(ms[len(ms) // 2], 3), ms_rounds=[round(t, 3) for t in times[r["variant"]]],
                 fps=round(batch / ms[len(ms) // 2] * 1e3, 1))
        print(json.dumps(r), flush=True)
    save_json("decode_split.json", dict(device=torch.cuda.get_device_name(0), date=time.strftime("%Y-%m-%d %H:%M UTC",
                                        time.gmtime()), torch=torch.__version__, rows=rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
