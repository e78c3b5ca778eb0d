"""`make bench`: the embedded default end to end through the gateway at 720p; appends to bench/RESULTS.md.

Source: a 1280x720, 25 fps, 10 s talking-head stand-in (the scikit-image portrait on a moving canvas, H.264);
audio: 10 s of real English speech (../shared/data/eng.wav from 2 s; the bundled demo speech when that is absent).
Each run goes through the real services over gRPC on 127.0.0.1, with the `visemes` engine (new and cached source)
and the `loudness` engine (cached); the weight-free AV offset / confidence of both outputs is reported.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time

from lipsync.v1 import common_pb2
from lipsync_client import LipsyncClient
from tools import synth
from services.render.render import default_threads
from tools.stack import ROOT, Stack

STAGES = {common_pb2.STAGE_AUDIO: "audio", common_pb2.STAGE_PREPROCESS: "preprocess",
          common_pb2.STAGE_GENERATE: "generate", common_pb2.STAGE_RENDER: "generate+render"}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def stage_rows(tmp: str) -> list[str]:
    """Preprocess (decode + landmarks + smoothing + crops + masks into the cache) of a new source, and
    compositing alone (paste-back + colour conversion, no encoding) and with H.264 encoding, at 720p and 1080p."""
    import hashlib

    import numpy as np

    from lipsync_common.formats.source_cache import SourceCache
    from lipsync_common.faces.landmarks import Landmarker
    from services.preprocess.prepare import PrepareOptions, prepare
    from services.render.render import Renderer, frame_mask

    rows = []
    landmarker = Landmarker()
    for w, h in ((1280, 720), (1920, 1080)):
        video = synth.face_video(os.path.join(tmp, f"src{h}.mp4"), n=100, fps=25, size=(w, h))
        cache = SourceCache(os.path.join(tmp, f"cache{h}"))
        digest = hashlib.sha256(open(video, "rb").read()).hexdigest()
        t0 = time.perf_counter()
        meta, _ = prepare(video, digest, PrepareOptions(), cache, landmarker, 10**8, 10**4)
        prep = meta.num_frames / (time.perf_counter() - t0)
        entry = cache.get(meta.source_id)
        with entry.frame_reader() as reader:
            frames = [reader.get(k) for k in range(meta.num_frames)]
        crops = entry.crops_at(range(meta.num_frames))
        n = 250
        r = Renderer(entry, 25.0, n, lambda b: None)
        masks = [frame_mask(entry, k) for k in range(meta.num_frames)]
        jobs = [(frames[i % meta.num_frames], crops[i % meta.num_frames], masks[i % meta.num_frames]) for i in range(n)]
        t0 = time.perf_counter()
        if r._pool is None:
            list(map(r._frame, jobs))
        else:
            list(r._pool.map(r._frame, jobs))
        comp = n / (time.perf_counter() - t0)
        r.abort()
        r = Renderer(entry, 25.0, n, lambda b: None)
        t0 = time.perf_counter()
        for i in range(0, n, 8):
            r.add(i, np.stack([crops[k % meta.num_frames] for k in range(i, min(n, i + 8))]))
        r.finish()
        render = n / (time.perf_counter() - t0)
        rows.append(f"| {w}x{h} | {prep:.1f} | {comp:.1f} | {render:.1f} |")
        print(rows[-1], flush=True)
    return rows


def speech_audio(tmp: str) -> str:
    from lipsync_common.formats.media import decode_audio
    eng = os.path.join(synth.SHARED, "eng.wav")
    if not os.path.isfile(eng):
        return synth.DEMO_SPEECH
    a, _ = decode_audio(eng, 60, 16000, mono=True)
    return synth.write_wav(os.path.join(tmp, "speech.wav"), a[0][16000 * 2:16000 * 12])


def sync_compare(outputs: dict, audio: str, details: dict) -> list[str]:
    from lipsync_common.formats.media import decode_audio
    from services.evaluator import faces, sync_free
    from lipsync_common.faces.landmarks import Landmarker
    a, _ = decode_audio(audio, 60, 16000, mono=True)
    rows = []
    for engine, path in outputs.items():
        track = faces.track(path, Landmarker())
        mouth = track.mouth_opening()
        r = sync_free.av_offset(mouth, sync_free.loudness(a[0], track.fps, len(mouth)))
        rows.append(f"| {engine} | {r['offset']} | {r['confidence']:.3f} | {details[engine]} |")
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        video = synth.face_video(os.path.join(tmp, "src720.mp4"), n=250, fps=25, size=(1280, 720))
        audio = speech_audio(tmp)
        stack = Stack.start(os.path.join(tmp, "stack"))
        rows, outputs, details = [], {}, {}
        try:
            with LipsyncClient(stack.addrs["gateway"]) as client:
                for engine, label in (("visemes", "new source (preprocess included)"),
                                      ("visemes", "cached source (repeat request)"),
                                      ("loudness", "cached source (repeat request)")):
                    outputs[engine] = os.path.join(tmp, f"out-{engine}.mp4")
                    t0 = time.perf_counter()
                    s = client.lipsync(video, audio, outputs[engine], common_pb2.LipsyncOptions(engine=engine))
                    wall = time.perf_counter() - t0
                    details[engine] = s.engine_detail
                    stages = ", ".join(f"{STAGES[t.stage]} {t.seconds:.2f} s" for t in s.timings)
                    rows.append(f"| {s.engine}, {label} | {s.frames} | {wall:.2f} | {s.frames / wall:.1f} | "
                                f"{s.duration_s / wall:.1f}x | {stages} |")
                    print(rows[-1], flush=True)
        finally:
            stack.stop()
        sync_rows = sync_compare(outputs, audio, details)
        stages = stage_rows(tmp)
        from services.evaluator.evaluate import EvalSettings, Evaluator
        ev = Evaluator(EvalSettings(models_dir=os.path.join(ROOT, "models")))
        t0 = time.perf_counter()
        result = ev.evaluate(video, outputs["visemes"], audio)
        eval_s = time.perf_counter() - t0
        eval_row = (f"Evaluation of that 10 s 720p pair (source video, generated video, audio; in-process, "
                    f"{result['frames']['generated']} frames, FID/KID on {result['metrics']['fid_face']['frames']} "
                    f"frames, CSIM on {len(result['per_frame']['csim_frames'])}): {eval_s:.1f} s "
                    f"(target <= 30 s on 2 cores).")
        print(eval_row, flush=True)
    header = (f"\n## {datetime.date.today().isoformat()} - weight-free engines, 720p end to end through the gateway\n\n"
              f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"1280x720 H.264 source, 250 frames at 25 fps; 10 s of speech; output H.264 crf 18 + AAC.\n\n"
              "| engine, run | frames | wall s | frames/s | x real time | per stage (generate and render overlap) |"
              "\n|---|---|---|---|---|---|\n")
    path = os.path.join(ROOT, "bench", "RESULTS.md")
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:
            f.write("# Benchmarks\n\nWritten by `make bench`; newest at the bottom.\n")
        f.write(header + "\n".join(rows) + "\n")
        f.write(f"\nEach stage alone (in-process; compositing threads: {default_threads()}):\n\n"
                "| frame size | preprocess, new source (frames/s) | composite + colour conversion (frames/s) "
                "| composite + H.264 encode (frames/s) |\n|---|---|---|---|\n" + "\n".join(stages) + "\n")
        f.write("\n" + eval_row + "\n")
        f.write("\nWeight-free AV sync of the two outputs (mouth opening vs speech-band loudness, evaluator's "
                "sync_free; it rewards opening that follows loudness, which the loudness engine does by "
                "construction):\n\n| engine | offset (frames) | confidence | driven by |\n|---|---|---|---|\n"
                + "\n".join(sync_rows) + "\n")
    print(f"appended to {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
