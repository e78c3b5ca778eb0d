"""A face the cache already has is found by its hash: the gateway does not send it to preprocess again."""
import re
import urllib.request

import grpc
import pytest

from lipsync.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc
from tests import helpers


def calls(stack, service: str, method: str, code: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics[service]}/metrics", timeout=5).read().decode()
    found = re.findall(r'lipsync_rpc_total\{code="%s",method="%s",service="\w+"\} ([0-9.]+)' % (code, method), text)
    return sum(float(v) for v in found)


def test_a_cached_face_is_not_sent_again(stack, client, tmp_path, assert_healthy):
    image = helpers.face_image()
    image[0, :3] = (1, 2, 3)                  # media no other test sends: the first call prepares it
    face = helpers.write_png(str(tmp_path / "lookup-face.png"), image)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.6, True)]))
    opts = common_pb2.LipsyncOptions(engine="loudness", bbox_shift=3)
    before = calls(stack, "preprocess", "Prepare", "OK")
    client.lipsync(face, audio, str(tmp_path / "1.mp4"), opts)
    prepares, found = calls(stack, "preprocess", "Prepare", "OK"), calls(stack, "preprocess", "Lookup", "OK")
    assert prepares == before + 1                                            # new media: sent and prepared
    second = client.lipsync(face, audio, str(tmp_path / "2.mp4"), opts)
    assert second.frames == 15
    assert calls(stack, "preprocess", "Prepare", "OK") == prepares          # the media was not sent again
    assert calls(stack, "preprocess", "Lookup", "OK") == found + 1
    # other options are another source: looked up, not found, prepared
    client.lipsync(face, audio, str(tmp_path / "3.mp4"), common_pb2.LipsyncOptions(engine="loudness"))
    assert calls(stack, "preprocess", "Prepare", "OK") == prepares + 1


def test_lookup_answers_not_found_and_rejects_a_bad_hash(stack):
    with grpc.insecure_channel(stack.addrs["preprocess"]) as ch:
        stub = preprocess_pb2_grpc.PreprocessStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Lookup(preprocess_pb2.LookupRequest(media_sha256="0" * 64), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stub.Lookup(preprocess_pb2.LookupRequest(media_sha256="xyz"), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
