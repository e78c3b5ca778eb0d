"""The tuning preview and the evaluator through the gateway's public API (real servers on 127.0.0.1)."""
import json

import cv2
import grpc
import numpy as np
import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client import LipsyncClient
from lipsync_client.client import LipsyncError
from lipsync_client.cli import main as cli
from tests import helpers


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preview")
    return {"image": helpers.write_png(str(tmp / "face.png"), helpers.face_image()),
            "video": helpers.face_video(str(tmp / "face.mp4"), n=8),
            "blank": helpers.write_png(str(tmp / "blank.png"), np.full((96, 128, 3), 200, np.uint8)),
            "speech": helpers.write_wav(str(tmp / "speech.wav"), helpers.speech_like([(1.0, True)])),
            "tmp": tmp}


def test_preview_draws_the_first_face_and_keeps_the_source_prepared(client, face):
    first = client.preview(face["video"], common_pb2.LipsyncOptions(bbox_shift=3))
    img = cv2.imdecode(np.frombuffer(first.png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (480, 640) and first.frame == 0
    b = first.crop_box
    assert 0 <= b.x1 < b.x2 <= 640 and 0 <= b.y1 < b.y2 <= 480
    assert first.bbox_shift_range.min <= 0 <= first.bbox_shift_range.max and not first.cached
    again = client.preview(face["video"], common_pb2.LipsyncOptions(bbox_shift=3))
    assert again.cached and again.source_id == first.source_id and again.png == first.png
    other = client.preview(face["video"], common_pb2.LipsyncOptions(bbox_shift=3, parsing_mode="raw",
                                                                     left_cheek_width=100))
    assert other.source_id != first.source_id          # the parsing options are part of the cache key


def test_preview_errors(client, face, stack):
    with pytest.raises(LipsyncError) as e:
        client.preview(face["blank"])
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "no face" in e.value.message
    with pytest.raises(LipsyncError) as e:
        client.preview(face["image"], common_pb2.LipsyncOptions(parsing_mode="neck"))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "parsing_mode" in e.value.message
    from lipsync.v1 import gateway_pb2_grpc
    reqs = [gateway_pb2.LipsyncRequest(options=common_pb2.LipsyncOptions()),
            gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(kind=gateway_pb2.MEDIA_KIND_AUDIO,
                                                                    chunk=common_pb2.Chunk(data=b"RIFF", last=True)))]
    with grpc.insecure_channel(stack.addrs["gateway"]) as ch, pytest.raises(grpc.RpcError) as e:
        gateway_pb2_grpc.LipsyncGatewayStub(ch).Preview(iter(reqs))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "face only" in e.value.details()


def test_cli_preview_writes_the_png_and_prints_the_range(stack, face, capsys):
    out = face["tmp"] / "p.png"
    assert cli(["--target", stack.addrs["gateway"], "preview", "--image", face["image"], "--bbox-shift", "2",
                "--out", str(out)]) == 0
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "bbox_shift range: [" in printed and "the current value: 2" in printed


def test_evaluate_and_compare_through_the_gateway(client, face, tmp_path):
    out = str(tmp_path / "gen.mp4")
    client.lipsync(face["image"], face["speech"], out)
    one = client.evaluate(face["image"], out, face["speech"])
    assert {m.name for m in one.metrics} >= {"sync_conf_free", "lmd", "csim_dlib"}
    cmp = client.compare(face["image"], face["speech"], {"a": out, "b": out}, report_html=True)
    assert json.loads(cmp.json)["models"] == ["a", "b"] and b"data:image/png" in cmp.report_html
    with pytest.raises(LipsyncError) as e:
        client.compare(face["image"], face["speech"], {"a": out})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_no_evaluator_is_failed_precondition(stack, face, tmp_path):
    """A gateway without EVALUATOR_ADDR says so (a second gateway on the same services)."""
    from tools.stack import Stack
    other = Stack.start(str(tmp_path / "gw"), services=("gateway",),
                        external={k: stack.addrs[k] for k in ("preprocess", "generator", "render")})
    try:
        with LipsyncClient(other.addrs["gateway"]) as c, pytest.raises(LipsyncError) as e:
            c.evaluate(face["image"], face["image"], face["speech"])
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "EVALUATOR_ADDR" in e.value.message
    finally:
        other.stop()
    assert gateway_pb2.DESCRIPTOR.services_by_name["LipsyncGateway"].methods_by_name["Compare"]
