"""Gateway gRPC edge: the public LipsyncGateway service (streaming and jobs)."""
from __future__ import annotations

import asyncio
from functools import partial
import logging
import math
import os
import shutil
import tempfile
import time

import grpc

from lipsync.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.auth import TokenInterceptor, gateway_tokens
from lipsync_common.formats.chunks import file_chunks
from lipsync_common.edge.server import CHUNK_BYTES
from gateway.config import GatewayConfig
from gateway.batch import receive_batch
from gateway.jobs import JobStore
from gateway.live_edge import LiveRun, read_start
from gateway.pipeline import DEADLINE, Pipeline
from gateway.upload import Failure, UrlPolicy, receive

log = logging.getLogger("gateway")


async def _ignore(_msg) -> None:
    """An emit for progress nobody reads (a live session's prepare)."""


class GatewayServicer(gateway_pb2_grpc.LipsyncGatewayServicer):
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.pipeline = Pipeline(cfg)
        self.urls = UrlPolicy(cfg.url_timeout_s, cfg.url_allow_loopback)
        self.jobs = JobStore(cfg.results_dir, self.pipeline, cfg.job_workers, cfg.max_queued_jobs,
                             cfg.job_retries, cfg.job_retry_base_s)
        self.streams = 0
        self.live = 0

    async def Lipsync(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)  # drains the upload, then ends the call
        if self.streams >= self.cfg.max_streams:
            await fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{self.cfg.max_streams} lip-sync streams are running; retry shortly or use SubmitJob")
        self.streams += 1
        folder = tempfile.mkdtemp(prefix="lipsync-", dir=self.cfg.tmp_dir or None)
        out: asyncio.Queue = asyncio.Queue(maxsize=64)
        try:
            try:
                options, face, audio = await receive(request_iterator, folder, self.cfg.max_upload_bytes, self.urls)
            except Failure as e:
                await fail(calls.status(e.code), e.message)

            async def emit(msg):
                await out.put(msg)

            async def work():
                try:
                    summary = await self.pipeline.run(options, face, audio, emit)
                    await out.put(gateway_pb2.LipsyncResponse(summary=summary))
                finally:
                    await out.put(None)

            left = context.time_remaining()
            if left is not None:
                DEADLINE.set(time.monotonic() + left)     # the task below inherits it
            task = asyncio.create_task(work())
            try:
                while True:
                    msg = await out.get()
                    if msg is None:
                        break
                    yield msg
                await task
            except Failure as e:
                # the upload is complete: only the client's half-close can still be in flight, so a short
                # drain is enough, and a client that keeps its side open gets the error without delay
                await fail(calls.status(e.code), e.message, drain_s=1.0)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        finally:
            self.streams -= 1
            shutil.rmtree(folder, ignore_errors=True)

    async def LiveSession(self, request_iterator, context):
        try:
            if self.live >= self.cfg.max_live:
                raise Failure("RESOURCE_EXHAUSTED", f"{self.cfg.max_live} live sessions are running")
            self.live += 1
            try:
                async for msg in self._live(request_iterator):
                    yield msg
            finally:
                self.live -= 1
        except Failure as e:
            # announced first, then the status: a client that stops sending on `ending` gets the status intact
            # (gRPC Python's asyncio client reports a status that comes while it writes as INTERNAL "Internal
            # error from Core"), and one still sending has calls.LIVE_ENDING_S to read the announcement
            yield gateway_pb2.LiveResponse(ending=gateway_pb2.LiveEnding(code=e.code, message=e.message))
            await asyncio.sleep(calls.LIVE_ENDING_S)
            await calls.abort(context, request_iterator, calls.status(e.code), e.message, **calls.LIVE_DRAIN)

    async def _live(self, request_iterator):
        """A live session's messages; a Failure ends it with its status (LiveSession)."""
        folder = tempfile.mkdtemp(prefix="live-", dir=self.cfg.tmp_dir or None)
        try:
            it = aiter(request_iterator)
            start, face = await read_start(it, folder, self.cfg.max_upload_bytes, self.urls)
            source_id, fps = start.source_id, start.options.fps or 25.0
            if face:
                prepared = await self.pipeline.prepare(start.options, face, _ignore)
                source_id, fps = prepared.source_id, start.options.fps or prepared.fps or 25.0
            margin = max(1, math.ceil(self.cfg.live_margin_ms / 1000 * fps - 1e-9))
            async for msg in LiveRun(self.pipeline, start, source_id, fps, it, margin).run():
                yield msg
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def Preview(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)
        folder = tempfile.mkdtemp(prefix="preview-", dir=self.cfg.tmp_dir or None)
        try:
            try:
                options, face, _ = await receive(request_iterator, folder, self.cfg.max_upload_bytes, self.urls,
                                                 audio=False)
            except Failure as e:
                await fail(calls.status(e.code), e.message)
            left = context.time_remaining()
            if left is not None:
                DEADLINE.set(time.monotonic() + left)
            try:
                return await self.pipeline.preview(options, face)
            except Failure as e:
                await context.abort(calls.status(e.code), e.message)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def Evaluate(self, request_iterator, context):
        evaluator = self.pipeline.evaluator
        return await self._forward(evaluator and evaluator.Evaluate, request_iterator, context)

    async def Compare(self, request_iterator, context):
        evaluator = self.pipeline.evaluator
        return await self._forward(evaluator and evaluator.Compare, request_iterator, context)

    async def _forward(self, method, request_iterator, context):
        """The evaluator's own call (method) with this call's stream: its checks, limits and errors, behind the
        gateway's auth (the internal token added)."""
        if method is None:
            await calls.abort(context, request_iterator, grpc.StatusCode.FAILED_PRECONDITION,
                              "this gateway has no evaluator (set EVALUATOR_ADDR)")
        try:
            return await method(request_iterator, metadata=self.pipeline.metadata, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as e:
            await context.abort(e.code(), e.details())

    async def SubmitJob(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)  # drains the upload, then ends the call
        try:
            job_id, folder = self.jobs.new_folder()
        except Failure as e:
            await fail(calls.status(e.code), e.message)
        try:
            options, _, _ = await receive(request_iterator, folder, self.cfg.max_upload_bytes, self.urls)
        except Failure as e:
            self.jobs.discard(job_id)
            await fail(calls.status(e.code), e.message)
        except BaseException:
            self.jobs.discard(job_id)
            raise
        return self.jobs.submit(job_id, options)

    async def SubmitBatch(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)
        try:
            return await receive_batch(request_iterator, self.jobs, self.cfg.max_upload_bytes)
        except Failure as e:
            await fail(calls.status(e.code), e.message)

    async def GetJob(self, request, context):
        try:
            return self.jobs.get(request.job_id)
        except Failure as e:
            await context.abort(calls.status(e.code), e.message)

    async def CancelJob(self, request, context):
        try:
            return self.jobs.cancel(request.job_id)
        except Failure as e:
            await context.abort(calls.status(e.code), e.message)

    async def DownloadResult(self, request, context):
        try:
            job = self.jobs.get(request.job_id)
        except Failure as e:
            await context.abort(calls.status(e.code), e.message)
        if job.state != gateway_pb2.JOB_STATE_SUCCEEDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"job {job.job_id} is {gateway_pb2.JobState.Name(job.state)}, not SUCCEEDED")
        path = self.jobs.result_path(job.job_id)
        if not os.path.isfile(path):
            await context.abort(grpc.StatusCode.DATA_LOSS, f"the result of job {job.job_id} is missing")
        for offset, data, last in file_chunks(path, CHUNK_BYTES):
            yield gateway_pb2.DownloadResultResponse(chunk=common_pb2.Chunk(offset=offset, data=data, last=last))

def main() -> None:
    cfg = GatewayConfig.from_env()
    boot.setup_logging("gateway", cfg.edge.log_level)

    tokens = gateway_tokens(cfg.auth_mode, cfg.auth_tokens, cfg.auth_tokens_file)   # fails fast when unset
    if tokens is None:
        log.warning("AUTH_MODE=local: the gateway accepts calls without a token")

    async def run() -> None:
        servicer = GatewayServicer(cfg)
        await servicer.jobs.start()

        async def on_stop() -> None:
            await servicer.jobs.stop()
            await servicer.pipeline.close()

        name = gateway_pb2.DESCRIPTOR.services_by_name["LipsyncGateway"].full_name
        await boot.serve(
            name="gateway", listen=cfg.listen, service_names=[name], on_stop=on_stop, edge=cfg.edge,
            interceptors=[] if tokens is None else [TokenInterceptor(tokens)],
            add_servicers=lambda s: gateway_pb2_grpc.add_LipsyncGatewayServicer_to_server(servicer, s))

    asyncio.run(run())


if __name__ == "__main__":
    main()
