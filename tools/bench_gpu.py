"""`make bench-gpu` (run it on the GPU machine): MuseTalk's networks at full size with random weights.

One run reports: the fp16 matmul peak; eager diffusers fp16 UNet + VAE decode at batch 8/32/64 (the baseline);
the engine's path (MuseTalk.generate_uint8: PE + UNet + decode + uint8 crops, compiled with CUDA graphs) at
batch 16/64 (decoding MUSETALK_DECODE_CHUNK frames at a time, the default 16) and, in the same process, with the
whole batch decoded at once; the engine through its cross-request batcher with 4 concurrent requests; a check that
the CUDA graphs sharing one pool give the same frames; and, first, in a process of its own, the GPU memory of an
engine with the default settings (BENCH_MEM_DEFAULT=0 skips it). frames/s, share of the measured peak, peak GPU
memory. Writes JSON and Markdown to $OUT (or bench/).
Random weights: these are speed figures only.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np
import torch

UNET_JSON = {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
             "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 384,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
             "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
             "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
             "sample_size": 64, "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
VAE_CFG = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
               block_out_channels=[128, 256, 512, 512], sample_size=256, down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4)
GFLOP_PER_FRAME = 177.8 + 622.2   # UNet + VAE decode at 256x256 (../shared/bench/RESULTS.md)


def cuda_ms(fn, iters=12, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def write_full_size_models(root: str) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    os.makedirs(os.path.join(root, "musetalkV15"), exist_ok=True)
    unet = UNet2DConditionModel(**{k: v for k, v in UNET_JSON.items() if not k.startswith("_")})
    torch.save(unet.state_dict(), os.path.join(root, "musetalkV15", "unet.pth"))
    with open(os.path.join(root, "musetalkV15", "musetalk.json"), "w") as f:
        json.dump(UNET_JSON, f)
    AutoencoderKL(**VAE_CFG).save_pretrained(os.path.join(root, "sd-vae"))
    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_layers=4, decoder_attention_heads=6, decoder_ffn_dim=1536, num_mel_bins=80)
    WhisperModel(cfg).save_pretrained(os.path.join(root, "whisper"))
    WhisperFeatureExtractor().save_pretrained(os.path.join(root, "whisper"))


def random_source(frames: int, key: str):
    """A cached source of random 256x256 frames, every frame one face crop (speed figures only)."""
    import av

    from lipsync_common.formats import media
    from lipsync_common.formats.source_cache import SourceCache, SourceMeta

    folder = tempfile.mkdtemp()
    video = os.path.join(folder, "source.mp4")
    rng = np.random.default_rng(0)
    with av.open(video, "w") as out:
        stream = out.add_stream("libx264rgb", rate=25)
        stream.width = stream.height = 256
        stream.pix_fmt, stream.options = "rgb24", {"qp": "0", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    w = SourceCache(os.path.join(folder, "cache")).writer(key, video)
    _, decoded = media.read_face_media(video, 10**8, 10**6, timestamps=True)
    for frame, pts, keyframe in decoded:
        w.add(frame, pts, keyframe, (0, 0, 256, 256), frame, np.full((256, 256), 255, np.uint8),
              np.zeros((468, 2), np.float32), True)
    return w.commit(SourceMeta(key, frames, 25.0, 256, 256, False, frames, (0, 0)))


MEM_PROBE = """
import json, sys, numpy as np, torch
from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings
from tools.bench_gpu import random_source
torch.zeros(1, device="cuda")                       # the CUDA context first: the rest is the engine's
free0, total = torch.cuda.mem_get_info()
engine = MuseTalkEngine(sys.argv[1], MuseTalkSettings())          # the defaults: max_batch 32, CUDA graphs
engine.load()
load_peak = torch.cuda.max_memory_allocated()
torch.cuda.reset_peak_memory_stats()
entry = random_source(40, "cd" * 16)
audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
frames = sum(len(b) for b in engine.generate(entry, audio, 16000, 25, 8).batches)
model = engine.models["v15"]
lat = torch.randn(32, 8, 32, 32, device="cuda", dtype=torch.float16)
tok = torch.randn(32, 50, 384, device="cuda", dtype=torch.float16)
for _ in range(3):
    model.generate_uint8(lat, tok)
a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
a.record()
for _ in range(10):
    model.generate_uint8(lat, tok)
b.record()
torch.cuda.synchronize()
free, total = torch.cuda.mem_get_info()
pools = {}
for seg in torch.cuda.memory_snapshot():
    p = pools.setdefault(str(tuple(seg["segment_pool_id"])), [0, 0])
    p[0] += seg["total_size"] / 2**30
    p[1] += seg["allocated_size"] / 2**30
print(json.dumps(dict(setting="default settings (max_batch 32, CUDA graphs), one process: GPU memory", frames=frames,
                      b32_ms=round(a.elapsed_time(b) / 10, 2), pools_reserved_allocated_gb={k: [round(a, 2), round(b, 2)] for k, (a, b) in pools.items()},
                      load_peak_allocated_gb=round(load_peak / 2**30, 2),
                      peak_allocated_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      reserved_gb=round(torch.cuda.memory_reserved() / 2**30, 2),
                      engine_device_gb=round((free0 - free) / 2**30, 2), context_gb=round((total - free0) / 2**30, 2))))
"""


def default_memory(models: str) -> dict:
    """GPU memory of an engine with the default settings, in a process of its own (the ≤ 8 GB target)."""
    import subprocess
    res = subprocess.run([sys.executable, "-c", MEM_PROBE, models], capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode != 0:
        return dict(setting="default settings: GPU memory", error=res.stderr.strip().splitlines()[-3:])
    return json.loads(res.stdout.strip().splitlines()[-1])


class Rows(list):
    """Result rows, printed as they come."""

    def __init__(self, peak: float):
        super().__init__()
        self.peak = peak

    def add(self, r: dict) -> None:
        self.append(r)
        print(json.dumps(r), flush=True)

    def timing(self, setting: str, bs: int, ms: float, mem: int) -> None:
        fps = bs / ms * 1e3
        self.add(dict(setting=setting, batch=bs, ms=round(ms, 2), fps=round(fps, 1),
                      peak_share=round(fps * GFLOP_PER_FRAME * 1e9 / (self.peak * 1e12), 3),
                      mem_gb=round(mem / 2**30, 2),
                      # CUDA graph pools are allocated before the peak counter is reset: reserved memory shows them
                      reserved_gb=round(torch.cuda.memory_reserved() / 2**30, 2)))


def matmul_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    return 2 * 8192 ** 3 / (cuda_ms(lambda: a @ a, 10, 3) / 1e3) / 1e12


def eager_baseline(rows: Rows, files) -> None:
    """Plain diffusers calls (stock modules, no fast paths): the reference the engine is measured against."""
    from services.generator.engines.musetalk.model import MuseTalk
    eager = MuseTalk(files, device="cuda", dtype=torch.float16, phase_upsample=False, fused_kernels=False)
    for bs in (() if os.environ.get("SKIP_EAGER") else (8, 32, 64)):
        x = torch.randn(bs, 8, 32, 32, device="cuda", dtype=torch.float16)
        c = torch.randn(bs, 50, 384, device="cuda", dtype=torch.float16)
        z = torch.randn(bs, 4, 32, 32, device="cuda", dtype=torch.float16)
        torch.cuda.reset_peak_memory_stats()
        ms = cuda_ms(lambda: eager.unet(x, eager.timestep, encoder_hidden_states=c).sample) + \
            cuda_ms(lambda: eager.vae.decode(z).sample)
        rows.timing("eager diffusers fp16 (UNet + decode)", bs, ms, torch.cuda.max_memory_allocated())
    eager = None  # noqa: F841 - free the eager copy before the engine loads
    torch.cuda.empty_cache()


def engine_end_to_end(rows: Rows, engine) -> None:
    """Latents from crops, whisper features, the batcher, uint8 crops back on the host: 4 requests at once."""
    entry = random_source(50, "ab" * 16)
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 10)).astype(np.float32)
    t0 = time.perf_counter()
    list(engine.generate(entry, audio, 16000, 25, 8).batches)          # first: encodes and caches the latents
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = engine.generate(entry, audio, 16000, 25, 8).batches
    next(stream)
    first_batch = time.perf_counter() - t0
    stream.close()
    done = []

    def request():
        done.append(sum(len(b) for b in engine.generate(entry, audio, 16000, 25, 8).batches))

    torch.cuda.reset_peak_memory_stats()
    busy0 = engine.batchers["v15"].busy_s
    t0 = time.perf_counter()
    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    sizes = engine.batchers["v15"].batch_sizes
    print(f"batcher busy {engine.batchers['v15'].busy_s - busy0:.2f} s of {wall:.2f} s wall; "
          f"batches {len(sizes)}", flush=True)
    print(f"first request (latents encoded): {first:.2f} s for 250 frames; "
          f"first 8 crops of a repeat request after {first_batch * 1e3:.0f} ms", flush=True)
    rows.timing(f"engine end to end, 4 concurrent requests x 250 frames (mean batch {np.mean(sizes):.0f})",
                sum(done), wall * 1e3, torch.cuda.max_memory_allocated())


def networks(rows: Rows, engine, fused_unet: bool) -> None:
    """The compiled networks alone at batch 16 and 64; first a check that the shared graph pool is safe."""
    best = engine.models["v15"]
    chunk = engine.settings.decode_chunk
    lat = torch.randn(16, 8, 32, 32, device="cuda", dtype=torch.float16)
    tok = torch.randn(16, 50, 384, device="cuda", dtype=torch.float16)
    first16 = best.generate_uint8(lat, tok).clone()
    best.generate_uint8(lat.repeat(4, 1, 1, 1), tok.repeat(4, 1, 1))
    again16 = best.generate_uint8(lat, tok)
    eager16 = (best.generate(lat, tok) * 255).round().to(torch.uint8)
    rows.add(dict(setting="check: CUDA graphs in one pool", repeat_equal=bool(torch.equal(first16, again16)),
                  max_diff_vs_uncompiled=int((first16.int() - eager16.int()).abs().max())))
    for bs in (16, 64):
        lat = torch.randn(bs, 8, 32, 32, device="cuda", dtype=torch.float16)
        tok = torch.randn(bs, 50, 384, device="cuda", dtype=torch.float16)
        torch.cuda.reset_peak_memory_stats()
        ms = cuda_ms(lambda: best.generate_uint8(lat, tok), iters=10, warm=2)
        rows.timing("engine: fp16 + channels_last + phase upsampling + Triton GroupNorm/SiLU + per-tap conv_out + "
                    "torch.compile/CUDA graphs (PE + UNet + decode + uint8 crops on the GPU)"
                    + (", UNet norms fused too" if fused_unet else "")
                    + f", decoding {min(chunk or bs, bs)} frames at a time", bs, ms, torch.cuda.max_memory_allocated())
    if os.environ.get("BENCH_DECODE_WHOLE", "1") == "1":    # A/B in this process: the decoder on all 64 at once
        from services.generator.engines.musetalk.fast.cuda_graphs import SharedPoolGraphs
        best.decode_chunk = 0
        whole = SharedPoolGraphs(torch.compile(best._forward_uint8, dynamic=False))
        ms = cuda_ms(lambda: whole(lat, tok), iters=10, warm=2)
        rows.timing("same, decoding the whole batch at once (MUSETALK_DECODE_CHUNK=0)", 64, ms,
                    torch.cuda.max_memory_allocated())


def write_results(rows: Rows, out_dir: str, dev: str) -> None:
    stamp = datetime.date.today().isoformat()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gpu_bench.json"), "w") as f:
        json.dump(dict(device=dev, date=stamp, torch=torch.__version__, peak_tflops=round(rows.peak), rows=rows), f,
                  indent=1)
    lines = [f"## {stamp} - MuseTalk networks on {dev} (torch {torch.__version__}, fp16 peak {rows.peak:.0f} TFLOP/s)",
             "", "| setting | batch | ms/batch | frames/s | share of peak | peak GPU mem GB | reserved GB |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['batch']} | {r['ms']} | {r['fps']} | {r['peak_share']:.0%} | {r['mem_gb']} "
              f"| {r['reserved_gb']} |" for r in rows if "fps" in r]
    lines += ["", *(f"- {json.dumps(r)}" for r in rows if "fps" not in r)]
    with open(os.path.join(out_dir, "gpu_bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings
    from services.generator.engines.musetalk.model import MuseTalkFiles

    torch.backends.cudnn.benchmark = True
    out_dir = os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    dev = torch.cuda.get_device_name(0)
    rows = Rows(matmul_peak())
    print(f"{dev}, torch {torch.__version__}, fp16 matmul peak {rows.peak:.0f} TFLOP/s", flush=True)
    models = tempfile.mkdtemp()
    t0 = time.time()
    write_full_size_models(models)
    print(f"wrote full-size random weights in the official layout in {time.time() - t0:.0f} s", flush=True)
    if os.environ.get("BENCH_MEM_DEFAULT", "1") == "1":    # first, while this process holds little GPU memory
        rows.add(default_memory(models))
        if os.environ.get("BENCH_MEM_ONLY"):
            return 0
    eager_baseline(rows, MuseTalkFiles.layout(models, "v15"))
    fused_unet = os.environ.get("MUSETALK_FUSED_UNET", "0") == "1"      # A/B of the UNet's fused norms
    engine = MuseTalkEngine(models, MuseTalkSettings(max_batch=64, max_wait_ms=4, fused_unet=fused_unet))
    t0 = time.perf_counter()
    engine.load()          # loads, compiles and warms every batch bucket: what the service does before SERVING
    print(f"engine load + compile + warm-up: {time.perf_counter() - t0:.0f} s", flush=True)
    engine_end_to_end(rows, engine)
    networks(rows, engine, fused_unet)
    write_results(rows, out_dir, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
