"""kill -9 in the middle of a job, with real processes: the job is retried after the service comes back, or ends
FAILED with the reason; it is never reported done with a broken file."""
import os
import signal
import time

import numpy as np
import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client import LipsyncClient
from tests import helpers
from tests.gateway.test_jobs import wait
from tools.stack import Stack

ENDED = {gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED}


@pytest.fixture
def stack(tmp_path):
    s = Stack.start(str(tmp_path / "stack"), env={"JOB_RETRY_BASE_S": "1", "MODELS_DIR": str(tmp_path / "m")})
    yield s
    s.stop()


@pytest.fixture
def inputs(tmp_path):
    face = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(30.0, True)]))
    return face, audio


def kill_during_generation(stack, client, job_id, name):
    deadline = time.time() + 60
    while time.time() < deadline:
        job = client.get_job(job_id)
        if job.progress.stage >= common_pb2.STAGE_GENERATE and job.progress.done > 50:
            stack.procs[name].send_signal(signal.SIGKILL)
            stack.procs[name].wait()
            return
        assert job.state not in ENDED, job
        time.sleep(0.05)
    pytest.fail("the job never reached generation")


@pytest.mark.parametrize("victim", ["generator", "render"])
def test_service_killed_then_restarted_the_job_completes(stack, inputs, tmp_path, victim):
    with LipsyncClient(stack.addrs["gateway"]) as client:
        job = client.submit_job(*inputs)
        kill_during_generation(stack, client, job.job_id, victim)
        stack.restart(victim)
        job = wait(client, job.job_id)
        assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED, job.error
        out = str(tmp_path / "o.mp4")
        client.download_result(job.job_id, out)
    frames, fps, has_audio, _ = helpers.decode_video(out)
    assert len(frames) == job.summary.frames == 750 and has_audio
    assert np.isfinite(np.asarray(frames[-1], float)).all()
    log = open(stack.launch["gateway"][2]).read()
    assert '"job retry"' in log


def test_generator_killed_for_good_the_job_fails_with_the_reason(stack, inputs):
    with LipsyncClient(stack.addrs["gateway"]) as client:
        job = client.submit_job(*inputs)
        kill_during_generation(stack, client, job.job_id, "generator")
        job = wait(client, job.job_id)
        assert job.state == gateway_pb2.JOB_STATE_FAILED and job.error_code == "UNAVAILABLE"
        assert "generator" in job.error and "unavailable" in job.error
        with pytest.raises(Exception):
            client.download_result(job.job_id, "/dev/null")
    stack.restart("generator")      # so the fixture stops a clean stack


def test_a_connection_broken_under_a_stream_counts_as_unavailable():
    """grpc core reports a peer killed under a streaming write as INTERNAL 'Internal error from Core' (seen in
    CI when preprocess was killed mid-render): that is a service gone away, retried like UNAVAILABLE."""
    import grpc
    from gateway.pipeline import _failure
    broken = _failure("preprocess", "127.0.0.1:1", grpc.StatusCode.INTERNAL, "Internal error from Core")
    assert broken.code == "UNAVAILABLE" and "unavailable at 127.0.0.1:1" in broken.message
    bug = _failure("preprocess", "127.0.0.1:1", grpc.StatusCode.INTERNAL, "render failed: a bug")
    assert bug.code == "INTERNAL" and bug.message == "render failed: a bug"


@pytest.mark.parametrize("victim", ["render", "generator"])
def test_a_live_session_whose_service_is_killed_ends_unavailable_naming_it(stack, victim):
    """kill -9 under a live session: the client's session ends UNAVAILABLE with the service that went away (a write
    to the dead service's call used to end it UNKNOWN 'RPC already finished'); the gateway serves on."""
    import asyncio
    from lipsync_client.client import LipsyncError
    from lipsync_client.live import LiveSession
    from tests.gateway.test_live import pcm16, realtime, session

    face = helpers.write_png(os.path.join(stack.folder, "face.png"), helpers.face_image())
    pcm = pcm16(helpers.speech_like([(20.0, True)]))

    async def go():
        frames = 0
        async with LiveSession(stack.addrs["gateway"], face=face,
                               options=common_pb2.LipsyncOptions(engine="loudness", fps=25)) as s:
            await s.ready()
            sender = asyncio.create_task(realtime(s, pcm))
            try:
                async for msg in s:
                    frames += msg.WhichOneof("payload") == "frame"
                    if frames == 10:
                        stack.procs[victim].send_signal(signal.SIGKILL)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        return frames

    with pytest.raises(LipsyncError) as err:
        asyncio.run(go())
    assert err.value.code.name == "UNAVAILABLE" and err.value.message.startswith(
        f"the {victim} service is unavailable at"), (err.value.code, err.value.message)
    stack.procs[victim].wait()
    stack.restart(victim)
    # the gateway serves the next session once its channel is back (tried again within 2 s: CLIENT_OPTIONS)
    short = pcm16(helpers.speech_like([(1.0, True)]))
    deadline = time.time() + 10
    while True:
        try:
            _, frames, _ = asyncio.run(session(stack, face, lambda s: realtime(s, short)))
            break
        except LipsyncError as e:
            assert e.code.name == "UNAVAILABLE" and time.time() < deadline, e
            time.sleep(0.5)
    assert len(frames) >= 25
