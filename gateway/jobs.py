"""Asynchronous jobs: a queue, a few workers, and a results directory that survives restarts.

Layout: RESULTS_DIR/<job_id>/job.json (the Job message), face + audio (inputs, removed when the job ends),
result.mp4 (written as result.mp4.part and renamed only when complete). Jobs that were queued or running when
the gateway stopped are queued again when it starts.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
import uuid

from prometheus_client import Gauge
from google.protobuf import json_format

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_common.formats import frame_reader
from lipsync_common.edge.server import log_event
from gateway.pipeline import Pipeline
from gateway.upload import Failure

log = logging.getLogger("gateway.jobs")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ENDED = (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED)


JOBS_QUEUED = Gauge("lipsync_gateway_jobs_queued", "Jobs waiting for a worker")


class JobStore:
    def __init__(self, root: str, pipeline: Pipeline, workers: int, max_queued: int, retries: int = 3,
                 retry_base_s: float = 1.0):
        self.root = root
        self.pipeline = pipeline
        self.n_workers = workers
        self.max_queued = max_queued
        self.retries, self.retry_base_s = retries, retry_base_s    # UNAVAILABLE: 1, 2, 4 s backoff
        self.jobs: dict[str, gateway_pb2.Job] = {}
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        JOBS_QUEUED.set_function(self.queue.qsize)
        self.running: dict[str, asyncio.Task] = {}
        self.cancelled: set[str] = set()
        self.workers: list[asyncio.Task] = []
        os.makedirs(root, exist_ok=True)

    def folder(self, job_id: str) -> str:
        return os.path.join(self.root, job_id)

    def result_path(self, job_id: str) -> str:
        return os.path.join(self.folder(job_id), "result.mp4")

    def _save(self, job: gateway_pb2.Job) -> None:
        path = os.path.join(self.folder(job.job_id), "job.json")
        with open(path + ".tmp", "w") as f:
            f.write(json_format.MessageToJson(job))
        os.replace(path + ".tmp", path)

    async def start(self) -> None:
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name, "job.json")
            if not JOB_ID.match(name) or not os.path.isfile(path):
                continue
            with open(path) as f:
                job = json_format.Parse(f.read(), gateway_pb2.Job())
            self.jobs[job.job_id] = job
            if job.state not in ENDED:
                job.state = gateway_pb2.JOB_STATE_QUEUED
                self._save(job)
                self.queue.put_nowait(job.job_id)
        self.workers = [asyncio.create_task(self._worker()) for _ in range(self.n_workers)]

    async def stop(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)

    def new_folder(self) -> tuple[str, str]:
        if self.queue.qsize() >= self.max_queued:
            raise Failure("RESOURCE_EXHAUSTED",
                          f"the job queue is full ({self.max_queued} jobs); retry later")
        job_id = uuid.uuid4().hex
        os.makedirs(self.folder(job_id))
        return job_id, self.folder(job_id)

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def submit(self, job_id: str, submitted: common_pb2.LipsyncOptions) -> gateway_pb2.Job:
        options = submitted
        if options.priority == common_pb2.PRIORITY_UNSPECIFIED:     # jobs are bulk work unless told otherwise
            options = common_pb2.LipsyncOptions(priority=common_pb2.PRIORITY_BATCH)
            options.MergeFrom(submitted)
        job = gateway_pb2.Job(job_id=job_id, state=gateway_pb2.JOB_STATE_QUEUED, options=options,
                              created_unix=time.time())
        self.jobs[job_id] = job
        self._save(job)
        self.queue.put_nowait(job_id)
        log_event(log, "job queued", job_id=job_id)
        return job

    def get(self, job_id: str) -> gateway_pb2.Job:
        if not JOB_ID.match(job_id or ""):
            cut = f" (its first 64 of {len(job_id)} characters)" if len(job_id) > 64 else ""
            raise Failure("INVALID_ARGUMENT", f"invalid job id {job_id[:64]!r}{cut}: a job id is 32 hex digits")
        if job_id not in self.jobs:
            raise Failure("NOT_FOUND", f"no job {job_id}")
        return self.jobs[job_id]

    def cancel(self, job_id: str) -> gateway_pb2.Job:
        job = self.get(job_id)
        if job.state in ENDED:
            return job
        self.cancelled.add(job_id)
        task = self.running.get(job_id)
        if task is not None:
            task.cancel()
        else:
            self._end(job, gateway_pb2.JOB_STATE_CANCELLED)
        return job

    def _end(self, job: gateway_pb2.Job, state, error: str = "", code: str = "") -> None:
        job.state = state
        job.error, job.error_code = error, code
        job.finished_unix = time.time()
        self._save(job)
        for name in ("face", "audio", "result.mp4.part"):
            path = os.path.join(self.folder(job.job_id), name)
            if os.path.exists(path):
                os.remove(path)
        log_event(log, "job ended", job_id=job.job_id, state=gateway_pb2.JobState.Name(state), error=error)

    async def _worker(self) -> None:
        while True:
            job_id = await self.queue.get()
            job = self.jobs[job_id]
            if job.state != gateway_pb2.JOB_STATE_QUEUED:
                continue
            task = asyncio.create_task(self._run(job))
            self.running[job_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the gateway is stopping: leave the job to be queued again on restart
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
            finally:
                self.running.pop(job_id, None)

    async def _attempt(self, job: gateway_pb2.Job, folder: str, part: str) -> common_pb2.Summary:
        with open(part, "wb") as out:     # each attempt starts the file again
            async def emit(msg: gateway_pb2.LipsyncResponse) -> None:
                kind = msg.WhichOneof("payload")
                if kind == "progress":
                    job.progress.CopyFrom(msg.progress)
                elif kind == "video":
                    out.write(msg.video.data)

            return await self.pipeline.run(job.options, os.path.join(folder, "face"),
                                           os.path.join(folder, "audio"), emit)

    async def _run(self, job: gateway_pb2.Job) -> None:
        folder = self.folder(job.job_id)
        part = os.path.join(folder, "result.mp4.part")
        job.state = gateway_pb2.JOB_STATE_RUNNING
        self._save(job)
        try:
            for attempt in range(self.retries + 1):
                try:
                    summary = await self._attempt(job, folder, part)
                    break
                except Failure as e:
                    # a service that is down (killed, restarting, rolling out) is worth another try, and so is
                    # a call it cancelled while stopping (CANCELLED; the user's cancel arrives as CancelledError
                    # here); a bad input or a bug is not
                    if e.code not in ("UNAVAILABLE", "CANCELLED") or attempt == self.retries:
                        raise
                    delay = self.retry_base_s * 2 ** attempt
                    log_event(log, "job retry", job_id=job.job_id, attempt=attempt + 1, in_s=delay, error=e.message)
                    await asyncio.sleep(delay)
            if os.path.getsize(part) != summary.output_bytes:
                raise Failure("INTERNAL", "the result file is incomplete")
            frames = await asyncio.to_thread(frame_reader.count_video_frames, part)
            if frames != summary.frames:   # never report done with a broken file
                raise Failure("INTERNAL",
                              f"the result file holds {frames} frames, {summary.frames} were rendered")
            os.replace(part, self.result_path(job.job_id))
            job.summary.CopyFrom(summary)
            self._end(job, gateway_pb2.JOB_STATE_SUCCEEDED)
        except Failure as e:
            self._end(job, gateway_pb2.JOB_STATE_FAILED, e.message, e.code)
        except asyncio.CancelledError:
            if job.job_id in self.cancelled:
                self._end(job, gateway_pb2.JOB_STATE_CANCELLED)
                return
            raise
        except Exception as e:  # noqa: BLE001 - a bug must fail the job, not the worker
            log.exception("job crashed")
            self._end(job, gateway_pb2.JOB_STATE_FAILED, f"internal error: {e}", "INTERNAL")
