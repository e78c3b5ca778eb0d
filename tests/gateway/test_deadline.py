"""A client deadline propagates through every hop: the call ends DEADLINE_EXCEEDED and the work stops."""
import time

import grpc

from lipsync_client.client import upload_requests
from lipsync.v1 import common_pb2
from tests import helpers
from tests.test_metrics import scrape, value


def test_expired_request_stops_on_every_service(stack, gateway_stub, tmp_path, assert_healthy):
    face = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(60.0, True)]))   # 1500 frames
    key = 'lipsync_frames_total{service="generator"'
    before = value(scrape(stack, "generator"), key)
    t0 = time.time()
    try:
        for _ in gateway_stub.Lipsync(upload_requests(face, audio, common_pb2.LipsyncOptions()), timeout=2.0):
            pass
        raise AssertionError("the call outlived its deadline")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 5
    time.sleep(1.0)
    settled = value(scrape(stack, "generator"), key)
    time.sleep(1.5)
    after = value(scrape(stack, "generator"), key)
    assert after == settled and after - before < 1500     # generation stopped well before the end
