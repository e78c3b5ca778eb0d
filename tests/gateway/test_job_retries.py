"""JobStore's retry policy: a call that a service refused because it was down (UNAVAILABLE) or that it cancelled
while stopping (CANCELLED) is tried again; any other failure ends the job at once."""
import asyncio

import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from gateway.jobs import JobStore
from gateway.upload import Failure


class _Attempts:
    """The pipeline's place in JobStore: each run fails with the next code of `codes`."""

    def __init__(self, codes):
        self.codes, self.runs = list(codes), 0

    async def run(self, options, face, audio, emit):
        self.runs += 1
        code = self.codes.pop(0)
        raise Failure(code, f"attempt {self.runs}: {code}")


async def _job_after(tmp_path, codes):
    pipeline = _Attempts(codes)
    store = JobStore(str(tmp_path), pipeline, workers=1, max_queued=4, retries=3, retry_base_s=0.0)
    await store.start()
    job_id, _ = store.new_folder()
    store.submit(job_id, common_pb2.LipsyncOptions())
    for _ in range(500):
        if store.get(job_id).state == gateway_pb2.JOB_STATE_FAILED:
            break
        await asyncio.sleep(0.01)
    await store.stop()
    return store.get(job_id), pipeline.runs


@pytest.mark.parametrize("transient", ["UNAVAILABLE", "CANCELLED"])
def test_a_service_down_or_stopping_is_tried_again(tmp_path, transient):
    job, runs = asyncio.run(_job_after(tmp_path, [transient, "INVALID_ARGUMENT"]))
    assert runs == 2 and job.error_code == "INVALID_ARGUMENT", (runs, job)


def test_other_failures_end_the_job_at_once(tmp_path):
    job, runs = asyncio.run(_job_after(tmp_path, ["INTERNAL", "INVALID_ARGUMENT"]))
    assert runs == 1 and job.state == gateway_pb2.JOB_STATE_FAILED and job.error_code == "INTERNAL"
