"""The evaluator's Inception pass on this CPU, A/B of TorchScript settings (FID/KID: evaluation's largest part).

32 720p images through `InceptionFeatures` as the evaluator runs it (channels-last input, TorchScript's optimised
execution off), then the same preprocessed batch with optimised execution on, frozen, frozen +
optimize_for_inference, and NCHW input; best of 2 timed runs after a warm-up, with each variant's largest feature
difference from the evaluator's own. `python -m tools.bench_inception`; writes $OUT/inception.json when OUT is set.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time

import numpy as np


def best_of(fn, runs: int = 2):
    out = fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    import torch

    from services.evaluator import fid
    from tools.bench import cpu_name
    from tools.out import save_json

    inc = fid.InceptionFeatures()
    small = np.random.default_rng(0).integers(0, 255, (32, 45, 80, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(small, 16, axis=1), 16, axis=2)          # 32 frames of 720x1280, blocky
    seconds, ref = best_of(lambda: inc(images))
    rows = [dict(variant="evaluator (channels-last, optimised execution off)", s=round(seconds, 2), max_diff=0.0)]
    x = inc.preprocess(images)

    def run(model, inp, optimised: bool):
        with torch.inference_mode(), torch.jit.optimized_execution(optimised):
            return model(inp).double().numpy()

    last = x.contiguous(memory_format=torch.channels_last)
    frozen = torch.jit.freeze(inc.model.eval())
    variants = {"optimised execution on": (inc.model, last, True), "frozen": (frozen, last, False),
                "frozen + optimize_for_inference": (torch.jit.optimize_for_inference(torch.jit.freeze(
                    inc.model.eval())), last, True), "NCHW input": (inc.model, x.contiguous(), False)}
    for name, (model, inp, optimised) in variants.items():
        seconds, out = best_of(lambda: run(model, inp, optimised))
        rows.append(dict(variant=name, s=round(seconds, 2), max_diff=float(np.abs(out - ref).max())))
    result = dict(device=f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
                  date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  images=len(images), rows=rows)
    print(json.dumps(result, indent=1))
    save_json("inception.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
