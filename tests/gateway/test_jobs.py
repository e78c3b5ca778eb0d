"""The asynchronous API: submit, poll, download, cancel; results survive a gateway restart."""
import threading
import time

import grpc
import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client import LipsyncClient, LipsyncError
from tests import helpers
from tools.stack import Stack

DONE = (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED)


def wait(client, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get_job(job_id)
        if job.state in DONE:
            return job
        time.sleep(0.1)
    raise TimeoutError(job_id)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobs")
    return {"face": helpers.write_png(str(d / "face.png"), helpers.face_image()),
            "short": helpers.write_wav(str(d / "short.wav"), helpers.speech_like([(1.0, True)])),
            "long": helpers.write_wav(str(d / "long.wav"), helpers.speech_like([(60.0, True)])),
            "noface": helpers.write_video(str(d / "noface.mp4"), [helpers.face_image()[:64, :64] * 0] * 3)}


def test_submit_poll_download(client, inputs, tmp_path, assert_healthy):
    job = client.submit_job(inputs["face"], inputs["short"])
    assert len(job.job_id) == 32 and job.state == gateway_pb2.JOB_STATE_QUEUED
    job = wait(client, job.job_id)
    assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED, job.error
    assert job.summary.frames == 25 and job.finished_unix >= job.created_unix > 0
    out = str(tmp_path / "r.mp4")
    assert client.download_result(job.job_id, out) == job.summary.output_bytes
    frames, fps, has_audio, _ = helpers.decode_video(out)
    assert len(frames) == 25 and has_audio
    assert job.options.priority == common_pb2.PRIORITY_BATCH     # jobs are bulk work unless told otherwise


def test_a_job_keeps_the_priority_it_was_given(client, inputs):
    job = client.submit_job(inputs["face"], inputs["short"],
                            common_pb2.LipsyncOptions(priority=common_pb2.PRIORITY_INTERACTIVE))
    assert job.options.priority == common_pb2.PRIORITY_INTERACTIVE
    assert wait(client, job.job_id).state == gateway_pb2.JOB_STATE_SUCCEEDED


def test_failed_job_reports_why(client, inputs, tmp_path, assert_healthy):
    job = wait(client, client.submit_job(inputs["noface"], inputs["short"]).job_id)
    assert job.state == gateway_pb2.JOB_STATE_FAILED
    assert job.error_code == "FAILED_PRECONDITION" and "no face" in job.error
    with pytest.raises(LipsyncError) as e:
        client.download_result(job.job_id, str(tmp_path / "x.mp4"))
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_cancel_a_running_job(client, inputs, assert_healthy):
    job = client.submit_job(inputs["face"], inputs["long"])
    deadline = time.time() + 60
    while client.get_job(job.job_id).state != gateway_pb2.JOB_STATE_RUNNING and time.time() < deadline:
        time.sleep(0.05)
    assert client.cancel_job(job.job_id).state == gateway_pb2.JOB_STATE_CANCELLED or \
        wait(client, job.job_id).state == gateway_pb2.JOB_STATE_CANCELLED
    assert wait(client, job.job_id).state == gateway_pb2.JOB_STATE_CANCELLED


def test_unknown_and_malformed_job_ids(client, assert_healthy):
    with pytest.raises(LipsyncError) as e:
        client.get_job("0" * 32)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(LipsyncError) as e:
        client.get_job("../etc/passwd")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "32 hex digits" in e.value.message
    with pytest.raises(LipsyncError) as e:
        client.cancel_job("x" * 5000)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and len(e.value.message) < 200   # not echoed whole


def test_results_and_unfinished_jobs_survive_a_restart(tmp_path, inputs):
    folder = str(tmp_path / "stack")
    stack = Stack.start(folder)
    try:
        with LipsyncClient(stack.addrs["gateway"]) as c:
            done = wait(c, c.submit_job(inputs["face"], inputs["short"]).job_id)
            assert done.state == gateway_pb2.JOB_STATE_SUCCEEDED
            pending = c.submit_job(inputs["face"], inputs["long"]).job_id
    finally:
        stack.stop()   # the long job is interrupted
    stack = Stack.start(folder)
    try:
        with LipsyncClient(stack.addrs["gateway"]) as c:
            assert c.get_job(done.job_id).state == gateway_pb2.JOB_STATE_SUCCEEDED
            assert c.download_result(done.job_id, str(tmp_path / "a.mp4")) == done.summary.output_bytes
            resumed = wait(c, pending, timeout=300)
            assert resumed.state == gateway_pb2.JOB_STATE_SUCCEEDED and resumed.summary.frames == 1500
    finally:
        stack.stop()


def test_sigterm_drains_the_stream_in_flight(tmp_path, inputs):
    stack = Stack.start(str(tmp_path / "stack"))
    result = {}
    try:
        with LipsyncClient(stack.addrs["gateway"]) as c:
            first = threading.Event()

            def run():
                try:
                    result["summary"] = c.lipsync(inputs["face"], inputs["long"], str(tmp_path / "o.mp4"),
                                                  on_progress=lambda p: p.stage == common_pb2.STAGE_RENDER and first.set())
                except LipsyncError as e:
                    result["error"] = e

            t = threading.Thread(target=run)
            t.start()
            assert first.wait(60)
            stack.procs["gateway"].terminate()
            t.join(120)
            assert "summary" in result, result.get("error")
            assert result["summary"].frames == 1500
            assert stack.procs["gateway"].wait(30) == 0
    finally:
        stack.stop()
