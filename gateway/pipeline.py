"""One lip-sync job: audio decode -> Preprocess.Prepare -> Generator.Generate -> Render.Render.

The gRPC client of the internal services. The request becomes a Plan (plan.py) once preprocess has answered;
the generate/render stage consumes it: crops flow from the generator through the gateway into the render
stream as they are made (Relay), and MP4 chunks flow back to the caller as they are written, so the first
bytes arrive long before the end.
"""
from __future__ import annotations

import asyncio
import hashlib
import contextvars
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Awaitable, BinaryIO, Callable

import grpc

from lipsync.v1 import (common_pb2, evaluator_pb2, evaluator_pb2_grpc, gateway_pb2, generator_pb2, generator_pb2_grpc,
                        preprocess_pb2, preprocess_pb2_grpc, render_pb2, render_pb2_grpc)
from lipsync_common.edge.auth import internal_metadata
from lipsync_common.edge.server import CHUNK_BYTES, CLIENT_OPTIONS
from lipsync_common.formats.chunks import file_chunks
from gateway.config import GatewayConfig
from gateway.plan import Plan, load_audio, make_plan, prepare_options
from gateway.upload import Failure

# The caller's deadline (time.monotonic()), set by the gateway's handler; every internal call gets what is left of
# it, so an expired request stops on every service instead of running on.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def remaining() -> float | None:
    deadline = DEADLINE.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Failure("DEADLINE_EXCEEDED", "the request's deadline passed")
    return left


Emit = Callable[[gateway_pb2.LipsyncResponse], Awaitable[None]]


# grpc core reports a connection that broke under a streaming call (the peer was killed) as INTERNAL with one of
# these texts and no status from the peer: the service went away, which is UNAVAILABLE (and worth a retry)
_BROKEN = ("Internal error from Core", "Socket closed", "Stream removed", "Connection reset")


def _failure(service: str, addr: str, code: grpc.StatusCode, details: str | None) -> Failure:
    if code == grpc.StatusCode.INTERNAL and (details or "").startswith(_BROKEN):
        code = grpc.StatusCode.UNAVAILABLE
    if code == grpc.StatusCode.UNAVAILABLE:
        return Failure(code.name, f"the {service} service is unavailable at {addr}: {details}")
    return Failure(code.name, details or f"{service} failed with {code.name}")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _progress(stage, done=0, total=0) -> gateway_pb2.LipsyncResponse:
    return gateway_pb2.LipsyncResponse(progress=common_pb2.Progress(stage=stage, done=done, total=total))


class Tee:
    """An emit that also writes the video bytes to a file (the copy the evaluator scores)."""

    def __init__(self, emit: Emit, out: BinaryIO):
        self.emit, self.out = emit, out

    async def __call__(self, msg: gateway_pb2.LipsyncResponse) -> None:
        if msg.WhichOneof("payload") == "video":
            self.out.write(msg.video.data)
        await self.emit(msg)


class Relay:
    """Generator -> render: the render config and audio first, then every crop batch as the generator makes it.

    A generator failure is kept in `error` and ends the render call; a render failure (a write that fails) just
    stops the relay: the render stream itself then reports it."""

    def __init__(self, plan: Plan, gen_call, render_call, emit: Emit, generator_addr: str, t0: float):
        self.plan, self.gen_call, self.render_call, self.emit = plan, gen_call, render_call, emit
        self.generator_addr, self.t0 = generator_addr, t0
        self.summary: generator_pb2.GenerateSummary | None = None
        self.seconds = 0.0                       # generation time, from the stage's start
        self.error: Failure | None = None

    def cancel_calls(self) -> None:
        self.gen_call.cancel()
        self.render_call.cancel()

    async def run(self) -> None:
        try:
            await self._relay()
        except asyncio.CancelledError:
            self.cancel_calls()
            raise
        except Exception:  # noqa: BLE001 - any failure ends both calls; the cause is reported by the stage
            if self.gen_call.done():
                code = await self.gen_call.code()
                if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                    self.error = _failure("generator", self.generator_addr, code, await self.gen_call.details())
            self.cancel_calls()

    async def _relay(self) -> None:
        for req in self.plan.render_requests():
            await self.render_call.write(req)
        async for resp in self.gen_call:
            if resp.WhichOneof("payload") == "crops":
                await self.render_call.write(render_pb2.RenderRequest(crops=resp.crops))
                done = resp.crops.first_frame + resp.crops.images.shape[0]
                await self.emit(_progress(common_pb2.STAGE_GENERATE, done, self.plan.frames))
            else:
                self.summary = resp.summary
        self.seconds = time.perf_counter() - self.t0
        await self.render_call.done_writing()


@dataclass(frozen=True)
class Rendered:
    summary: render_pb2.RenderSummary | None
    output_bytes: int


async def _read_render(render_call, emit: Emit) -> Rendered:
    """The render stream: video chunks (re-numbered from 0) and progress to the caller, then the summary."""
    summary, offset = None, 0
    async for resp in render_call:
        kind = resp.WhichOneof("payload")
        if kind == "video":
            await emit(gateway_pb2.LipsyncResponse(video=common_pb2.Chunk(offset=offset, data=resp.video.data)))
            offset += len(resp.video.data)
        elif kind == "progress":
            await emit(gateway_pb2.LipsyncResponse(progress=resp.progress))
        else:
            summary = resp.summary
    return Rendered(summary, offset)


class Pipeline:
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.metadata = internal_metadata(cfg.edge.internal_token)
        self.pre_channel = grpc.aio.insecure_channel(cfg.preprocess_addr, options=CLIENT_OPTIONS)
        self.gen_channel = grpc.aio.insecure_channel(cfg.generator_addr, options=CLIENT_OPTIONS)
        self.render_channel = grpc.aio.insecure_channel(cfg.render_addr, options=CLIENT_OPTIONS)
        self.pre = preprocess_pb2_grpc.PreprocessStub(self.pre_channel)
        self.render = render_pb2_grpc.RenderStub(self.render_channel)
        self.gen = generator_pb2_grpc.GeneratorStub(self.gen_channel)
        self.eval_channel = (grpc.aio.insecure_channel(cfg.evaluator_addr, options=CLIENT_OPTIONS)
                             if cfg.evaluator_addr else None)
        self.evaluator = evaluator_pb2_grpc.EvaluatorStub(self.eval_channel) if self.eval_channel else None

    async def close(self) -> None:
        await self.pre_channel.close()
        await self.gen_channel.close()
        await self.render_channel.close()
        if self.eval_channel is not None:
            await self.eval_channel.close()

    async def evaluate(self, face_path: str, output_path: str, audio_path: str) -> common_pb2.EvaluationResult:
        """Scores of a finished output. A failing evaluator never loses the video: the result then holds one
        metric, "evaluation", unavailable with the reason."""
        def requests():
            yield evaluator_pb2.EvaluateRequest(config=evaluator_pb2.EvaluateConfig())
            for role, path in (("source", face_path), ("generated", output_path), ("audio", audio_path)):
                for offset, data, last in file_chunks(path, CHUNK_BYTES):
                    yield evaluator_pb2.EvaluateRequest(file=evaluator_pb2.FileChunk(
                        role=role, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))
        try:
            return await self.evaluator.Evaluate(requests(), metadata=self.metadata, timeout=remaining())
        except grpc.aio.AioRpcError as e:
            why = f"unavailable: evaluator at {self.cfg.evaluator_addr} failed: {e.code().name}: {e.details()}"
            return common_pb2.EvaluationResult(metrics=[common_pb2.Metric(name="evaluation", unavailable=why)])

    async def prepare(self, options: common_pb2.LipsyncOptions, face_path: str, emit: Emit):
        """The prepared face: found by its hash when preprocess has it (the media is not sent again), else sent
        and prepared."""
        sha = await asyncio.to_thread(file_sha256, face_path)
        try:
            found = await self.pre.Lookup(preprocess_pb2.LookupRequest(options=prepare_options(options),
                                                                        media_sha256=sha),
                                          metadata=self.metadata, timeout=remaining())
            return found
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                raise _failure("preprocess", self.cfg.preprocess_addr, e.code(), e.details()) from None

        async def requests():
            yield preprocess_pb2.PrepareRequest(options=prepare_options(options))
            for offset, data, last in file_chunks(face_path, CHUNK_BYTES):
                yield preprocess_pb2.PrepareRequest(media=common_pb2.Chunk(offset=offset, data=data, last=last))

        prepared = None
        try:
            async for resp in self.pre.Prepare(requests(), metadata=self.metadata, timeout=remaining()):
                if resp.WhichOneof("payload") == "progress":
                    await emit(gateway_pb2.LipsyncResponse(progress=resp.progress))
                else:
                    prepared = resp.prepared
        except grpc.aio.AioRpcError as e:
            raise _failure("preprocess", self.cfg.preprocess_addr, e.code(), e.details()) from None
        if prepared is None:
            raise Failure("INTERNAL", "preprocess ended without a prepared source")
        return prepared

    async def preview(self, options: common_pb2.LipsyncOptions, face_path: str) -> common_pb2.PreviewResult:
        """Prepare the face (or find it prepared) and draw its first frame with a face (preprocess's Preview)."""
        async def no_progress(_msg) -> None:
            pass
        prepared = await self.prepare(options, face_path, no_progress)
        try:
            result = await self.pre.Preview(preprocess_pb2.PreviewRequest(source_id=prepared.source_id),
                                            metadata=self.metadata, timeout=remaining())
        except grpc.aio.AioRpcError as e:
            raise _failure("preprocess", self.cfg.preprocess_addr, e.code(), e.details()) from None
        result.cached = prepared.cached
        return result

    async def run(self, options: common_pb2.LipsyncOptions, face_path: str, audio_path: str,
                  emit: Emit) -> common_pb2.Summary:
        if options.evaluate and self.evaluator is None:
            raise Failure("FAILED_PRECONDITION",
                          "evaluation was asked for but this gateway has no evaluator (set EVALUATOR_ADDR)")
        if not options.evaluate:
            return await self._run(options, face_path, audio_path, emit)
        fd, kept = tempfile.mkstemp(prefix="out-", suffix=".mp4", dir=self.cfg.tmp_dir or None)
        try:
            with os.fdopen(fd, "wb") as copy:      # a copy of the output for the evaluator
                summary = await self._run(options, face_path, audio_path, Tee(emit, copy))
            summary.evaluation.CopyFrom(await self.evaluate(face_path, kept, audio_path))
            return summary
        finally:
            os.remove(kept)

    async def _run(self, options: common_pb2.LipsyncOptions, face_path: str, audio_path: str,
                   emit: Emit) -> common_pb2.Summary:
        timings: list[common_pb2.StageTiming] = []

        def timed(stage: int, t0: float) -> None:
            timings.append(common_pb2.StageTiming(stage=stage, seconds=time.perf_counter() - t0))

        # the audio is decoded while the face is prepared (or found prepared): neither waits for the other
        async def audio_stage():
            t0 = time.perf_counter()
            audio = await asyncio.to_thread(load_audio, audio_path, self.cfg.max_audio_s)
            timed(common_pb2.STAGE_AUDIO, t0)
            return audio

        async def face_stage():
            t0 = time.perf_counter()
            prepared = await self.prepare(options, face_path, emit)
            timed(common_pb2.STAGE_PREPROCESS, t0)
            return prepared

        await emit(_progress(common_pb2.STAGE_AUDIO))
        await emit(_progress(common_pb2.STAGE_PREPROCESS))
        tasks = [asyncio.ensure_future(audio_stage()), asyncio.ensure_future(face_stage())]
        try:
            # the first failure ends both (bad audio does not wait for a long prepare)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()
            audio, prepared = tasks[0].result(), tasks[1].result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        plan = make_plan(options, prepared, audio)
        t0 = time.perf_counter()
        await emit(_progress(common_pb2.STAGE_GENERATE, 0, plan.frames))
        relay, rendered = await self._generate_and_render(plan, emit, t0)
        timings.append(common_pb2.StageTiming(stage=common_pb2.STAGE_GENERATE, seconds=relay.seconds))
        timed(common_pb2.STAGE_RENDER, t0)
        summary = plan.summary(rendered.summary, relay.summary, timings, rendered.output_bytes)
        await emit(_progress(common_pb2.STAGE_DONE, summary.frames, summary.frames))
        return summary

    async def _generate_and_render(self, plan: Plan, emit: Emit, t0: float) -> tuple[Relay, Rendered]:
        """Both calls at once: the relay feeds the render call while its output streams back to the caller."""
        gen_call = self.gen.Generate(plan.generate_requests(), metadata=self.metadata, timeout=remaining())
        render_call = self.render.Render(metadata=self.metadata, timeout=remaining())
        relay = Relay(plan, gen_call, render_call, emit, self.cfg.generator_addr, t0)
        relay_task = asyncio.create_task(relay.run())
        try:
            rendered = await _read_render(render_call, emit)
            await relay_task
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
            cancelled = isinstance(e, asyncio.CancelledError)
            # the relay ends the render call when the generator fails: let it finish, then report the cause
            if not relay_task.done() and not cancelled:
                await asyncio.wait({relay_task}, timeout=5)
            if relay.error is not None:
                raise relay.error from None
            if cancelled:
                raise
            raise _failure("render", self.cfg.render_addr, e.code(), e.details()) from None
        finally:
            if not relay_task.done():
                relay_task.cancel()
                relay.cancel_calls()
        if relay.error is not None:
            raise relay.error
        if rendered.summary is None or relay.summary is None:
            raise Failure("INTERNAL", "a service ended its stream without a summary")
        return relay, rendered
