"""SubmitBatch: each pair its own job; a bad pair fails alone."""
import grpc
import numpy as np
import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from tests import helpers
from tests.gateway.test_bad_input import FACE
from tests.gateway.test_jobs import wait



def test_each_pair_is_its_own_job_and_a_bad_one_fails_alone(client, tmp_path, assert_healthy):
    face = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    video = helpers.face_video(str(tmp_path / "v.mp4"), n=10)
    a1 = helpers.write_wav(str(tmp_path / "a1.wav"), helpers.speech_like([(0.4, True)]))
    a2 = helpers.write_wav(str(tmp_path / "a2.wav"), helpers.speech_like([(0.8, True)]))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    res = client.submit_batch([(face, a1), (str(junk), a1), (video, a2)])
    assert [i.item for i in res.items] == [0, 1, 2] and all(i.job.job_id for i in res.items)
    jobs = [wait(client, i.job.job_id) for i in res.items]
    assert [j.state for j in jobs] == [gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED,
                                       gateway_pb2.JOB_STATE_SUCCEEDED]
    assert jobs[0].summary.frames == 10 and jobs[2].summary.frames == 20
    assert jobs[1].error_code == "INVALID_ARGUMENT" and "face media" in jobs[1].error
    out = str(tmp_path / "o.mp4")
    client.download_result(jobs[2].job_id, out)
    assert len(helpers.decode_video(out)[0]) == 20


def test_an_incomplete_or_disordered_item_gets_an_error_the_rest_jobs(gateway_stub, client, tmp_path,
                                                                       assert_healthy):
    face = open(helpers.write_png(str(tmp_path / "f.png"), helpers.face_image()), "rb").read()
    audio = open(helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.4, True)])), "rb").read()

    def c(item, kind, offset, data, last):
        return gateway_pb2.BatchRequest(media=gateway_pb2.BatchChunk(
            item=item, kind=kind, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))
    AUDIO = gateway_pb2.MEDIA_KIND_AUDIO
    reqs = [gateway_pb2.BatchRequest(options=common_pb2.LipsyncOptions()),
            c(0, FACE, 0, face, True), c(0, AUDIO, 0, audio, True),           # complete
            c(1, FACE, 0, face, True),                                        # no audio
            c(2, FACE, 0, face[:100], False), c(2, FACE, 500, face[500:], True)]   # out of order
    res = gateway_stub.SubmitBatch(iter(reqs))
    by = {i.item: i for i in res.items}
    assert by[0].job.job_id and not by[0].error
    assert not by[1].job.job_id and "audio upload was not complete" in by[1].error
    assert not by[2].job.job_id and "out of order" in by[2].error and by[2].error_code == "INVALID_ARGUMENT"
    # the complete item runs as a job: let it end here, not under a later test that counts generated frames
    assert wait(client, by[0].job.job_id).state == gateway_pb2.JOB_STATE_SUCCEEDED


def test_bad_options_or_no_items_fail_the_call(gateway_stub, assert_healthy):
    with pytest.raises(grpc.RpcError) as e:
        gateway_stub.SubmitBatch(iter([gateway_pb2.BatchRequest(options=common_pb2.LipsyncOptions(fps=-1))]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        gateway_stub.SubmitBatch(iter([gateway_pb2.BatchRequest(options=common_pb2.LipsyncOptions())]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no items" in e.value.details()
