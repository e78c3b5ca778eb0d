"""Two per-request / per-process costs of the fifth session (BENCHMARKS.md), in-process on this machine:

- a 10 s 16 kHz 16-bit WAV decoded whole (`media.decode_audio`, the standard library's reader) vs through PyAV's
  decoder and resampler (`media._decode_audio_av`, the path every other format takes);
- one full pass of Python's collector in a process holding the generator's imports (torch, diffusers,
  transformers), before and after `gc.freeze()` (what every service does after its warm-up, GC_FREEZE=1).
Prints one JSON line a measurement: `python -m tools.bench_start_paths`.
"""
from __future__ import annotations

import gc
import json
import os
import tempfile
import time

from lipsync_common.formats import media
from tools import synth


def ms(fn, repeats: int = 5) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(round((time.perf_counter() - t0) * 1000, 2))
    return out


def wav_paths() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = synth.write_wav(os.path.join(tmp, "a.wav"), synth.speech_like([(10.0, True)]))
        for name, fn in (("whole file (standard library)", lambda: media.decode_audio(path, 600)),
                         ("PyAV decoder + resampler", lambda: media._decode_audio_av(path, 600, None))):
            print(json.dumps({"run": f"10 s 16 kHz WAV, {name}", "ms": ms(fn)}), flush=True)


def collector() -> None:
    import diffusers  # noqa: F401 - the generator's imports: what a full pass has to scan
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    from transformers import WhisperModel  # noqa: F401
    import services.generator.server  # noqa: F401
    print(json.dumps({"run": "full collector pass, generator's imports", "objects": len(gc.get_objects()),
                      "ms": ms(gc.collect, 3)}), flush=True)
    gc.freeze()
    junk = [{"a": [i]} for i in range(20000)]      # what requests would have made since
    print(json.dumps({"run": "full collector pass after gc.freeze (+20k new objects)",
                      "frozen": gc.get_freeze_count(), "ms": ms(gc.collect, 3)}), flush=True)
    del junk
    gc.unfreeze()


if __name__ == "__main__":
    wav_paths()
    collector()
