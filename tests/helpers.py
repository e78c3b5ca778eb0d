"""Media made inside the tests (nothing downloaded): face video/image, speech-like audio, wav files.

The code lives in tools/synth.py (the benchmarks use it too, and tools must not import tests); the names stay
here so the tests read `helpers.X` as before (conftest reads helpers.SHARED, which a test may monkeypatch).
"""
from tools.synth import (  # noqa: F401
    DEMO_SPEECH,
    ROOT,
    SHARED,
    decode_video,
    encode_audio,
    face_image,
    face_video,
    speech_like,
    write_png,
    write_video,
    write_wav,
)


def cpu_s(proc) -> float:
    """CPU seconds (user + system) a psutil.Process has used."""
    t = proc.cpu_times()
    return t.user + t.system


def assert_cancel_frees_the_cpu(proc, cancel, working: float, folder: str, service: str, logged: str) -> None:
    """After cancel(): within a second the server process uses under 0.1 s of CPU a second, its log says
    `logged`, and its tmp folder (folder/tmp) is empty within 5 s. working: its CPU seconds a second before."""
    import os
    import time
    cancel()
    time.sleep(1.0)
    before = cpu_s(proc)
    time.sleep(1.0)
    busy = cpu_s(proc) - before
    assert busy < 0.1, (f"the server still used {busy:.2f} s of CPU in a second after the cancellation "
                        f"({working:.2f} s in a second while working)")
    assert logged in open(os.path.join(folder, "log", f"{service}.log")).read()
    deadline = time.time() + 5
    while os.listdir(os.path.join(folder, "tmp")) and time.time() < deadline:
        time.sleep(0.1)
    assert os.listdir(os.path.join(folder, "tmp")) == []


def prepared_entry(folder: str, n: int):
    """A synthetic face video of n frames prepared into a source cache under folder (default options): the
    SourceEntry the generator and render read."""
    import hashlib
    import os

    from lipsync_common.faces.landmarks import Landmarker
    from lipsync_common.formats.source_cache import SourceCache
    from services.preprocess.prepare import PrepareOptions, prepare
    path = face_video(os.path.join(folder, "v.mp4"), n=n)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    cache = SourceCache(os.path.join(folder, "cache"))
    meta, _ = prepare(path, digest, PrepareOptions(), cache, Landmarker(), 10**8, 1000)
    return cache.get(meta.source_id)


def in_flight(stack, service: str, method: str) -> float:
    """Calls of `method` running in `service` now, from its lipsync_rpc_in_flight gauge (the stack with metrics)."""
    import re
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics[service]}/metrics", timeout=5).read().decode()
    found = re.findall(r'lipsync_rpc_in_flight\{method="%s",service="\w+"\} ([0-9.]+)' % method, text)
    assert found, f"{service} has no in-flight gauge for {method}: the call never reached it"
    return sum(float(v) for v in found)
