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
