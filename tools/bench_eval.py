"""Where one evaluation's time goes: a 10 s 720p pair (synthetic face video as source and generated, speech-like
audio), evaluated in-process once under cProfile; prints the wall time and the cumulative seconds of its parts
(face tracking, the weight-free sync metrics, CSIM, FID/KID with Inception, dlib's descriptors, Face Mesh).
`python -m tools.bench_eval` (`make bench` reports the total alone)."""
from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import tempfile
import time

from tools import synth

PARTS = {  # (file suffix, function name) -> label
    ("evaluator/faces.py", "track"): "face tracking, both videos",
    ("evaluator/evaluate.py", "_sync_free"): "weight-free sync metrics",
    ("evaluator/evaluate.py", "_identity"): "CSIM",
    ("evaluator/evaluate.py", "_quality"): "FID/KID, full frames and face crops",
    ("evaluator/fid.py", "__call__"): "Inception passes",
    ("<built-in method _dlib_pybind11.compute_face_descriptor>", ""): "dlib face descriptors",
}


def main() -> int:
    from services.evaluator.evaluate import EvalSettings, Evaluator

    tmp = tempfile.mkdtemp()
    video = synth.face_video(os.path.join(tmp, "s.mp4"), n=250, fps=25, size=(1280, 720))
    audio = synth.write_wav(os.path.join(tmp, "a.wav"), synth.speech_like([(10.0, True)]))
    ev = Evaluator(EvalSettings(models_dir=os.environ.get("MODELS_DIR", "models")))
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.runcall(ev.evaluate, video, video, audio)
    rows = [{"run": "one evaluation, 10 s 720p pair, cProfile on", "s": round(time.perf_counter() - t0, 1),
             "cores": os.cpu_count()}]
    for (file, line, name), (_, _, _, cum, _) in pstats.Stats(profile).stats.items():
        for (suffix, fn), label in PARTS.items():
            if (file.endswith(suffix) and name == fn) or (file == "~" and name == suffix):
                rows.append({"run": label, "s": round(cum, 1)})
    for r in rows:
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
