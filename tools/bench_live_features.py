"""Where a live token job's time went (the side thread's whisper pass for N sessions at once), on the GPU machine:
log-mel of N 30 s windows through the feature extractor (the path the engine used before `MuseTalk.log_mels`), the
whisper encoder over them, MuseTalk's windows for every frame of each window (the engine now asks for the new
frames only). Full-size random whisper
weights (speed only).  python -m tools.bench_live_features   (LIVE_FEATURE_N=1,4,16)"""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import torch

from services.generator.engines.musetalk.model import SAMPLE_RATE, load_whisper, whisper_windows
from services.generator.engines.musetalk.model import MuseTalkFiles
from tools.bench_gpu import write_full_size_models


def timed(fn, repeat: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeat


def main() -> None:
    root = tempfile.mkdtemp()
    write_full_size_models(root)
    extractor, whisper = load_whisper(MuseTalkFiles.layout(root, "v15"))
    whisper = whisper.to("cuda", torch.float16)
    audio = (0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE * 30)).astype(np.float32)
    for n in [int(v) for v in os.environ.get("LIVE_FEATURE_N", "1,4,16").split(",")]:
        windows = [audio] * n
        mel_cpu = timed(lambda: extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features)
        mel_gpu = timed(lambda: extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="np",
                                          device="cuda").input_features)
        mels = torch.from_numpy(extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features)
        with torch.no_grad():
            enc = timed(lambda: torch.stack(whisper(mels.to("cuda", torch.float16),
                                                    output_hidden_states=True).hidden_states, 2))
            states = torch.stack(whisper(mels.to("cuda", torch.float16), output_hidden_states=True).hidden_states, 2)
        win = timed(lambda: [whisper_windows(states[i:i + 1], len(audio), 25.0, 750) for i in range(n)])
        print(json.dumps({"sessions": n, "mel_cpu_ms": round(mel_cpu, 2), "mel_gpu_ms": round(mel_gpu, 2),
                          "encoder_ms": round(enc, 2), "windows_ms": round(win, 2)}), flush=True)


if __name__ == "__main__":
    main()
