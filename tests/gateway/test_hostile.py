"""More hostile inputs (with test_bad_input.py and test_services.py the corpus passes 30 cases): decompression
bombs, lying headers, NaN audio, non-media files, impossible options, oversized messages. Each gets a clear
status; nothing crashes; nothing is left in the temp folder; the next request works (assert_healthy)."""
import struct
import zlib

import av
import grpc
import numpy as np
import pytest

from lipsync.v1 import common_pb2
from tests import helpers
from tests.gateway.test_bad_input import AUDIO, FACE, INVALID, OPTS, chunk, expect, raw_call

RESOURCE = grpc.StatusCode.RESOURCE_EXHAUSTED


def png_bomb(path, width=16000, height=16000):
    """A valid PNG header declaring 256 M pixels (768 MB decoded) over a few KB of data."""
    def block(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * (1 + width * 3) * 4)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + block(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + block(b"IDAT", raw) + block(b"IEND", b""))
    return path


def ten_hours_flac(path, sr=8000):
    """Ten real hours of (silent) audio: FLAC packs them into ~7 MB."""
    with av.open(path, "w", format="flac") as c:
        s = c.add_stream("flac", rate=sr, layout="mono")
        minute = np.zeros((1, sr * 60), np.int16)
        for m in range(600):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate, frame.pts = sr, m * sr * 60
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def float_wav_with_nan(path, sr=16000):
    a = np.zeros(sr, np.float32)
    a[100:200] = np.nan
    with av.open(path, "w", format="wav") as c:
        s = c.add_stream("pcm_f32le", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(a[None], format="flt", layout="mono")
        frame.sample_rate = sr
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def audio_only_mp4(path):
    return helpers.encode_audio(path, helpers.speech_like([(1.0, True)]), 16000, "aac", "mp4")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    (d / "page.mp4").write_text("<!doctype html><html><body>not a video</body></html>\n" * 40)
    return {
        "face": helpers.write_png(str(d / "face.png"), helpers.face_image()),
        "speech": helpers.write_wav(str(d / "speech.wav"), helpers.speech_like([(1.0, True)])),
        "bomb": png_bomb(str(d / "bomb.png")),
        "ten_hours": ten_hours_flac(str(d / "ten_hours.flac")),
        "nan": float_wav_with_nan(str(d / "nan.wav")),
        "html": str(d / "page.mp4"),
        "audio_only": audio_only_mp4(str(d / "audio_only.mp4")),
    }


@pytest.mark.parametrize("face, audio, code, words", [
    ("bomb", "speech", INVALID, "above the limit"),              # decompression bomb: refused from its header
    ("html", "speech", INVALID, "face media"),                   # a web page named .mp4
    ("audio_only", "speech", INVALID, "no video or image stream"),
    ("face", "ten_hours", INVALID, "above the limit"),           # ten hours declared: refused before decoding
    ("face", "nan", INVALID, "NaN"),                             # NaN samples in a float WAV
    ("face", "html", INVALID, "audio"),
])
def test_hostile_files(client, tmp_path, files, face, audio, code, words, assert_healthy):
    expect(client, tmp_path, files[face], files[audio], code, words)


@pytest.mark.parametrize("options, words", [
    ({"face_index": 99}, "face_index 99"),
    ({"face_hint": common_pb2.FaceBox(x1=10, y1=10, x2=5, y2=20)}, "face_hint"),
    ({"face_hint": common_pb2.FaceBox(x1=float("nan"), y1=0, x2=5, y2=5)}, "face_hint"),
])
def test_impossible_options(client, tmp_path, files, options, words, assert_healthy):
    expect(client, tmp_path, files["face"], files["speech"], INVALID, words, **options)


def test_oversized_message_is_resource_exhausted(gateway_stub, assert_healthy):
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, 0, b"\0" * (5 * 1024 * 1024), True)])
    assert e.code() == RESOURCE


def test_chunks_for_both_kinds_that_never_finish(gateway_stub, files, assert_healthy):
    face = open(files["face"], "rb").read()
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, 0, face, True), chunk(AUDIO, 0, b"RIFF", False)])
    assert e.code() == INVALID and "ended before" in e.details()


def test_negative_offsets_and_repeated_last_chunk(gateway_stub, files, assert_healthy):
    face = open(files["face"], "rb").read()
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, -5, face[:10], False)])
    assert e.code() == INVALID
    e = raw_call(gateway_stub, [OPTS, chunk(FACE, 0, face, True), chunk(FACE, len(face), b"x", True)])
    assert e.code() == INVALID


def test_the_next_request_still_works(client, tmp_path, files, assert_healthy):
    s = client.lipsync(files["face"], files["speech"], str(tmp_path / "o.mp4"))
    assert s.frames == 25
