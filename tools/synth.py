"""Synthetic media made on the spot (nothing downloaded): face video/image, speech-like audio, wav files.

Used by the benchmarks and tools here and, through tests/helpers.py, by the tests: tools never import tests.
"""
from __future__ import annotations

import fractions
import os
import wave

import av
import cv2
import numpy as np
import skimage.data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
DEMO_SPEECH = os.path.join(ROOT, "assets", "demo_speech.wav")


def face_image() -> np.ndarray:
    """RGB 512x512 portrait that ships inside scikit-image."""
    return skimage.data.astronaut()


def write_png(path: str, rgb: np.ndarray) -> str:
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_video(path: str, frames: list[np.ndarray], fps: float = 25, codec: str = "libx264",
                fmt: str | None = None, pix_fmt: str = "yuv420p", rotation: int = 0) -> str:
    """rotation: a display matrix (counter-clockwise degrees), as phones write for portrait video."""
    with av.open(path, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = pix_fmt
        if rotation:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def face_video(path: str, n: int = 30, fps: float = 25, size: tuple[int, int] = (640, 480),
               codec: str = "libx264", pix_fmt: str = "yuv420p") -> str:
    """The portrait on a canvas, drifting slowly: a small talking-head stand-in."""
    img = face_image()
    w, h = size
    frames = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        x = (w - 512) // 2 + int(4 * np.sin(i / 5)) if w >= 520 else 0
        y = (h - 512) // 2 if h >= 512 else 0
        src = img[: min(512, h), : min(512, w)]
        canvas[y:y + src.shape[0], x:x + src.shape[1]] = src
        canvas[:16, :16] = 8 * (i % 30)   # a frame marker in the corner
        frames.append(canvas)
    return write_video(path, frames, fps, codec=codec, pix_fmt=pix_fmt)


def speech_like(seconds_pattern: list[tuple[float, bool]], sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced segments (a 120 Hz harmonic buzz with a moving formant and syllable envelope) and silences."""
    rng = np.random.default_rng(seed)
    parts = []
    for seconds, voiced in seconds_pattern:
        n = int(seconds * sr)
        if not voiced:
            parts.append(np.zeros(n, np.float32))
            continue
        t = np.arange(n) / sr
        f0 = 120 + 10 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        buzz = sum(np.sin(k * phase) / k for k in range(1, 30))
        syllables = 0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)  # 4 syllables a second
        x = buzz * syllables + 0.01 * rng.standard_normal(n)
        parts.append((0.3 * x / np.abs(x).max()).astype(np.float32))
    return np.concatenate(parts)


def write_wav(path: str, audio: np.ndarray, sr: int = 16000) -> str:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


def encode_audio(path: str, audio: np.ndarray, sr: int, codec: str, fmt: str) -> str:
    """Mono float32 -> a compressed file (mp3, m4a) with PyAV."""
    with av.open(path, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=sr, layout="mono")
        frame_size = 1152 if codec == "libmp3lame" else 1024
        for i in range(0, len(audio), frame_size):
            chunk = audio[i:i + frame_size].astype(np.float32)[None, :]
            fmt_name = "s16p" if codec == "libmp3lame" else "fltp"
            data = (chunk * 32767).astype(np.int16) if fmt_name == "s16p" else chunk
            f = av.AudioFrame.from_ndarray(data, format=fmt_name, layout="mono")
            f.sample_rate = sr
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def decode_video(path: str) -> tuple[list[np.ndarray], float, bool, float]:
    """(RGB frames, fps, has_audio, audio seconds)."""
    with av.open(path) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        has_audio = bool(c.streams.audio)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    audio_s = 0.0
    if has_audio:
        with av.open(path) as c:
            samples = sum(f.samples for f in c.decode(audio=0))
            audio_s = samples / c.streams.audio[0].sample_rate
    return frames, fps, has_audio, audio_s
