"""Bounded fuzzing (hypothesis, derandomized so CI is repeatable) of the parsing and probing paths that see
untrusted bytes: media probing/decoding of mutated real files, tensor messages, request options."""
import os

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings, strategies as st

from gateway.upload import Failure, validate_options
from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_common.formats import media
from lipsync_common.formats.tensors import TensorError, from_tensor
from tests import helpers

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    return {
        "mp4": open(helpers.face_video(str(d / "v.mp4"), n=3, size=(96, 64)), "rb").read(),
        "png": open(helpers.write_png(str(d / "f.png"), helpers.face_image()[::8, ::8]), "rb").read(),
        "wav": open(helpers.write_wav(str(d / "a.wav"), helpers.speech_like([(0.2, True)])), "rb").read(),
        "m4a": open(helpers.encode_audio(str(d / "a.m4a"), helpers.speech_like([(0.3, True)]), 16000, "aac", "mp4"),
                    "rb").read(),
    }


def mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, value in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = value
        elif kind == 1:
            del b[i:i + value]
        else:
            b[i:i] = bytes([value]) * (value % 7 + 1)
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12)


@FUZZ
@given(kind=st.sampled_from(["mp4", "png"]), edits=EDITS, cut=st.floats(0.05, 1.0))
def test_face_media_probing_never_breaks(seeds, tmp_path, kind, edits, cut):
    data = mutate(seeds[kind], edits)
    path = os.path.join(tmp_path, f"face.{kind}")
    with open(path, "wb") as f:
        f.write(data[: max(1, int(len(data) * cut))])
    try:
        info, frames = media.read_face_media(path, max_pixels=4096 * 4096, max_frames=50)
        for frame in frames:
            assert frame.dtype == np.uint8 and frame.shape == (info.height, info.width, 3)
    except media.MediaError as e:
        assert str(e)


@FUZZ
@given(kind=st.sampled_from(["wav", "m4a"]), edits=EDITS, cut=st.floats(0.05, 1.0))
@example(kind="wav", edits=[(1, 12, 1)], cut=1.0)      # the standard library's WAV reader raised RuntimeError
def test_audio_decoding_never_breaks(seeds, tmp_path, kind, edits, cut):
    data = mutate(seeds[kind], edits)
    path = os.path.join(tmp_path, f"audio.{kind}")
    with open(path, "wb") as f:
        f.write(data[: max(1, int(len(data) * cut))])
    try:
        audio, rate = media.decode_audio(path, 30, sample_rate=16000)
        assert audio.dtype == np.float32 and rate == 16000 and audio.shape[0] in (1, 2)
    except media.MediaError as e:
        assert str(e)


@FUZZ
@given(dtype=st.integers(-2, 12), shape=st.lists(st.integers(-3, 70), max_size=5), data=st.binary(max_size=512))
def test_tensor_messages(dtype, shape, data):
    msg = common_pb2.Tensor(dtype=dtype, shape=shape, data=data)
    try:
        a = from_tensor(msg, dtype=np.float32, ndim=1)
        assert a.dtype == np.float32 and a.ndim == 1 and a.size * 4 == len(data)
    except TensorError as e:
        assert str(e)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_request_bytes_and_options(raw):
    try:
        req = gateway_pb2.LipsyncRequest.FromString(raw)
    except DecodeError:
        return
    if req.WhichOneof("payload") == "options":
        try:
            validate_options(req.options)
        except Failure as e:
            assert e.message
