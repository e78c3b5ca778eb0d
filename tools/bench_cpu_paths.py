"""CPU cost of the per-frame paths changed for issue 16, in-process on a synthetic 720p talking-face stand-in:

- the renderer composited in RGB (decode -> RGB -> composite -> I420) vs in the decoder's I420 planes;
- the loudness engine alone, crops read from the cache (format 3 stores them raw);
- ways to store a 256x256 crop: raw, zlib level 1, PNG level 1 (bytes, write and read time).
Prints one JSON line a measurement: `python -m tools.bench_cpu_paths`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zlib

import cv2
import numpy as np

from lipsync_common.formats.source_cache import SourceCache
from services.generator.engines.warp.engine import WarpEngine
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, prepare
from services.render.render import Renderer
from tools import synth


def renderer_paths(entry, frames: int = 200, repeats: int = 3) -> None:
    crops = np.random.default_rng(0).integers(0, 255, (frames, 256, 256, 3), dtype=np.uint8)
    for _ in range(repeats):
        for i420 in (False, True):
            r = Renderer(entry, 25.0, frames, lambda b: None, threads=0)
            r._i420 = i420       # the path H.264 output takes by default; False: the RGB round trip
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, frames, 8):
                r.add(i, crops[i:i + 8])
            r.finish()
            print(json.dumps({"run": f"Renderer, composited in {'I420' if i420 else 'RGB'}",
                              "fps": round(frames / (time.perf_counter() - t0), 1),
                              "cpu_ms_per_frame": round((time.process_time() - c0) / frames * 1e3, 2)}), flush=True)


def loudness_engine(entry, seconds: float = 4.0) -> None:
    engine = WarpEngine("loudness")
    engine.load()
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32)
    t0 = time.perf_counter()
    n = sum(len(b) for b in engine.generate(entry, audio, 16000, 25, 8).batches)
    print(json.dumps({"run": "loudness engine alone", "fps": round(n / (time.perf_counter() - t0), 1)}), flush=True)


def crop_storage(entry, count: int = 60) -> None:
    crops = entry.crops_at(range(min(count, entry.meta.num_frames)))
    ways = {"raw": (lambda x: x.tobytes(), lambda b: np.frombuffer(b, np.uint8)),
            "zlib 1": (lambda x: zlib.compress(x.tobytes(), 1), lambda b: np.frombuffer(zlib.decompress(b), np.uint8)),
            "png 1": (lambda x: cv2.imencode(".png", x, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes(),
                      lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED))}
    for name, (enc, dec) in ways.items():
        t0 = time.perf_counter()
        blobs = [enc(c) for c in crops]
        t1 = time.perf_counter()
        for b in blobs:
            dec(b)
        t2 = time.perf_counter()
        print(json.dumps({"run": f"crop stored {name}", "kB": round(np.mean([len(b) for b in blobs]) / 1e3, 1),
                          "write_ms": round((t1 - t0) / len(crops) * 1e3, 2),
                          "read_ms": round((t2 - t1) / len(crops) * 1e3, 2)}), flush=True)


def main() -> None:
    tmp = tempfile.mkdtemp()
    video = synth.face_video(os.path.join(tmp, "v.mp4"), n=100, fps=25, size=(1280, 720))
    cache = SourceCache(os.path.join(tmp, "cache"))
    digest = hashlib.sha256(open(video, "rb").read()).hexdigest()
    meta, _ = prepare(video, digest, PrepareOptions(), cache, Landmarker(), 10**8, 1000)
    entry = cache.get(meta.source_id)
    renderer_paths(entry)
    loudness_engine(entry)
    crop_storage(entry)


if __name__ == "__main__":
    main()
