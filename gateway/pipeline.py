"""One lip-sync job: audio decode -> Preprocess.Prepare -> Generator.Generate -> Render.Render.

Crops flow from the generator through the gateway into the render stream as they are made, and MP4 chunks
flow back to the caller as they are written, so the first bytes arrive long before the end.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import tempfile
import time
from typing import Awaitable, Callable

import grpc
import numpy as np
import soxr

from lipsync.v1 import (common_pb2, evaluator_pb2, evaluator_pb2_grpc, gateway_pb2, generator_pb2, generator_pb2_grpc,
                        preprocess_pb2, preprocess_pb2_grpc, render_pb2, render_pb2_grpc)
from lipsync_common.formats import media
from lipsync_common.edge.auth import internal_metadata
from lipsync_common.formats.chunks import file_chunks
from lipsync_common.edge.server import CHUNK_BYTES, CLIENT_OPTIONS
from lipsync_common.formats.tensors import to_tensor
from gateway.config import GatewayConfig
from gateway.upload import Failure, invalid

# The caller's deadline (time.monotonic()), set by the gateway's handler; every internal call gets what is left of
# it, so an expired request stops on every service instead of running on.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def remaining() -> float | None:
    deadline = DEADLINE.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "the request's deadline passed")
    return left


AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
GEN_RATE = 16000
Emit = Callable[[gateway_pb2.LipsyncResponse], Awaitable[None]]


# grpc core reports a connection that broke under a streaming call (the peer was killed) as INTERNAL with one of
# these texts and no status from the peer: the service went away, which is UNAVAILABLE (and worth a retry)
_BROKEN = ("Internal error from Core", "Socket closed", "Stream removed", "Connection reset")


def _failure(service: str, addr: str, code: grpc.StatusCode, details: str | None) -> Failure:
    if code == grpc.StatusCode.INTERNAL and (details or "").startswith(_BROKEN):
        code = grpc.StatusCode.UNAVAILABLE
    if code == grpc.StatusCode.UNAVAILABLE:
        return Failure(code, f"the {service} service is unavailable at {addr}: {details}")
    return Failure(code, details or f"{service} failed with {code.name}")


def _progress(stage, done=0, total=0) -> gateway_pb2.LipsyncResponse:
    return gateway_pb2.LipsyncResponse(progress=common_pb2.Progress(stage=stage, done=done, total=total))


def load_audio(path: str, max_s: float) -> tuple[np.ndarray, int, np.ndarray]:
    """(audio for muxing [C, S] float32, its rate, 16 kHz mono for the generator).

    The 16 kHz track is made as librosa.load(sr=16000) makes it for MuseTalk: channels averaged, then the
    soxr "HQ" resampler, so the musetalk engine sees the samples MuseTalk's own code would."""
    try:
        native, rate = media.decode_audio(path, max_s)
        if native.shape[1] == 0:
            raise invalid("the audio has zero length")
        mono = native.mean(axis=0)
        mono16 = mono if rate == GEN_RATE else soxr.resample(mono, rate, GEN_RATE, quality="soxr_hq")
        if rate not in AAC_RATES:
            native, rate = media.decode_audio(path, max_s, sample_rate=48000)
    except media.MediaError as e:
        raise invalid(str(e)) from None
    return native, rate, np.ascontiguousarray(mono16, dtype=np.float32)


class Pipeline:
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
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
            return await self.evaluator.Evaluate(requests(), metadata=internal_metadata(self.cfg.edge.internal_token), timeout=remaining())
        except grpc.aio.AioRpcError as e:
            why = f"unavailable: evaluator at {self.cfg.evaluator_addr} failed: {e.code().name}: {e.details()}"
            return common_pb2.EvaluationResult(metrics=[common_pb2.Metric(name="evaluation", unavailable=why)])

    async def prepare(self, options: common_pb2.LipsyncOptions, face_path: str, emit: Emit):
        opts = preprocess_pb2.PrepareOptions(model_version=options.model_version, bbox_shift=options.bbox_shift)
        if options.HasField("extra_margin"):
            opts.extra_margin = options.extra_margin
        if options.HasField("face_index"):
            opts.face_index = options.face_index
        if options.HasField("smoothing"):
            opts.smoothing = options.smoothing
        if options.HasField("face_hint"):
            opts.face_hint.CopyFrom(options.face_hint)

        async def requests():
            yield preprocess_pb2.PrepareRequest(options=opts)
            for offset, data, last in file_chunks(face_path, CHUNK_BYTES):
                yield preprocess_pb2.PrepareRequest(media=common_pb2.Chunk(offset=offset, data=data, last=last))

        prepared = None
        try:
            async for resp in self.pre.Prepare(requests(), metadata=internal_metadata(self.cfg.edge.internal_token), timeout=remaining()):
                if resp.WhichOneof("payload") == "progress":
                    await emit(gateway_pb2.LipsyncResponse(progress=resp.progress))
                else:
                    prepared = resp.prepared
        except grpc.aio.AioRpcError as e:
            raise _failure("preprocess", self.cfg.preprocess_addr, e.code(), e.details()) from None
        if prepared is None:
            raise Failure(grpc.StatusCode.INTERNAL, "preprocess ended without a prepared source")
        return prepared

    async def run(self, options: common_pb2.LipsyncOptions, face_path: str, audio_path: str,
                  emit: Emit) -> common_pb2.Summary:
        if options.evaluate and self.evaluator is None:
            raise Failure(grpc.StatusCode.FAILED_PRECONDITION,
                          "evaluation was asked for but this gateway has no evaluator (set EVALUATOR_ADDR)")
        if options.evaluate:      # keep a copy of the output for the evaluator
            fd, kept = tempfile.mkstemp(prefix="out-", suffix=".mp4", dir=self.cfg.tmp_dir or None)
            copy = os.fdopen(fd, "wb")
            inner = emit

            async def emit(msg):  # noqa: F811 - the same emit, teeing the video bytes
                if msg.WhichOneof("payload") == "video":
                    copy.write(msg.video.data)
                await inner(msg)
            try:
                summary = await self._run(options, face_path, audio_path, emit)
                copy.close()
                summary.evaluation.CopyFrom(await self.evaluate(face_path, kept, audio_path))
                return summary
            finally:
                copy.close()
                os.remove(kept)
        return await self._run(options, face_path, audio_path, emit)

    async def _run(self, options: common_pb2.LipsyncOptions, face_path: str, audio_path: str,
                   emit: Emit) -> common_pb2.Summary:
        timings: list[common_pb2.StageTiming] = []
        t0 = time.perf_counter()
        await emit(_progress(common_pb2.STAGE_AUDIO))
        native, rate, mono = await asyncio.to_thread(load_audio, audio_path, self.cfg.max_audio_s)
        timings.append(common_pb2.StageTiming(stage=common_pb2.STAGE_AUDIO, seconds=time.perf_counter() - t0))

        t0 = time.perf_counter()
        await emit(_progress(common_pb2.STAGE_PREPROCESS))
        prepared = await self.prepare(options, face_path, emit)
        timings.append(common_pb2.StageTiming(stage=common_pb2.STAGE_PREPROCESS, seconds=time.perf_counter() - t0))

        fps = options.fps or prepared.fps or 25.0
        frames = max(1, int(np.floor(len(mono) / GEN_RATE * fps + 1e-9))) if len(mono) else 0
        if frames == 0:
            raise invalid("the audio is too short for a single frame")
        t0 = time.perf_counter()

        def gen_requests():
            yield generator_pb2.GenerateRequest(config=generator_pb2.GenerateConfig(
                source_id=prepared.source_id, engine=options.engine, model_version=options.model_version,
                fps=fps, audio_sample_rate=GEN_RATE, priority=options.priority))
            step = CHUNK_BYTES // 4
            for i in range(0, len(mono), step):
                yield generator_pb2.GenerateRequest(audio=to_tensor(mono[i:i + step]))

        render_cfg = render_pb2.RenderConfig(
            source_id=prepared.source_id, fps=fps, num_frames=frames, codec=options.codec,
            audio_sample_rate=rate, audio_channels=native.shape[0], color_match=options.color_match)
        if options.HasField("crf"):
            render_cfg.crf = options.crf
        gen_call = self.gen.Generate(gen_requests(), metadata=internal_metadata(self.cfg.edge.internal_token), timeout=remaining())
        render_call = self.render.Render(metadata=internal_metadata(self.cfg.edge.internal_token), timeout=remaining())
        state = {"gen_summary": None, "gen_s": 0.0, "error": None}

        async def relay():
            """Config and audio to the renderer, then every crop batch from the generator as it comes.

            A generator failure is recorded and ends the render call; a render failure (a write that fails)
            just stops the relay: the render stream itself then reports it."""
            try:
                await render_call.write(render_pb2.RenderRequest(config=render_cfg))
                pcm = (np.clip(native.T, -1, 1) * 32767).astype(np.int16)
                step = CHUNK_BYTES // (2 * pcm.shape[1])
                for i in range(0, len(pcm), step):
                    await render_call.write(render_pb2.RenderRequest(audio=to_tensor(pcm[i:i + step])))
                async for resp in gen_call:
                    if resp.WhichOneof("payload") == "crops":
                        await render_call.write(render_pb2.RenderRequest(crops=resp.crops))
                        done = resp.crops.first_frame + resp.crops.images.shape[0]
                        await emit(_progress(common_pb2.STAGE_GENERATE, done, frames))
                    else:
                        state["gen_summary"] = resp.summary
                state["gen_s"] = time.perf_counter() - t0
                await render_call.done_writing()
            except asyncio.CancelledError:
                gen_call.cancel()
                render_call.cancel()
                raise
            except Exception:  # noqa: BLE001 - any failure ends both calls; the cause is reported below
                if gen_call.done():
                    code = await gen_call.code()
                    if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                        state["error"] = _failure("generator", self.cfg.generator_addr, code,
                                                  await gen_call.details())
                gen_call.cancel()
                render_call.cancel()

        relay_task = asyncio.create_task(relay())
        render_summary = None
        offset = 0
        try:
            async for resp in render_call:
                kind = resp.WhichOneof("payload")
                if kind == "video":
                    await emit(gateway_pb2.LipsyncResponse(video=common_pb2.Chunk(offset=offset, data=resp.video.data)))
                    offset += len(resp.video.data)
                elif kind == "progress":
                    await emit(gateway_pb2.LipsyncResponse(progress=resp.progress))
                else:
                    render_summary = resp.summary
            await relay_task
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
            # the relay ends the render call when the generator fails: let it finish, then report the cause
            if not relay_task.done() and not isinstance(e, asyncio.CancelledError):
                await asyncio.wait({relay_task}, timeout=5)
            if state["error"] is not None:
                raise state["error"] from None
            if isinstance(e, asyncio.CancelledError):
                raise
            raise _failure("render", self.cfg.render_addr, e.code(), e.details()) from None
        finally:
            if not relay_task.done():
                relay_task.cancel()
                gen_call.cancel()
                render_call.cancel()
        if state["error"] is not None:
            raise state["error"]
        gen_summary = state["gen_summary"]
        if render_summary is None or gen_summary is None:
            raise Failure(grpc.StatusCode.INTERNAL, "a service ended its stream without a summary")
        timings.append(common_pb2.StageTiming(stage=common_pb2.STAGE_GENERATE, seconds=state["gen_s"]))
        timings.append(common_pb2.StageTiming(stage=common_pb2.STAGE_RENDER, seconds=time.perf_counter() - t0))
        summary = common_pb2.Summary(
            frames=render_summary.frames, duration_s=render_summary.frames / fps, fps=fps,
            width=render_summary.width, height=render_summary.height, engine=gen_summary.engine,
            engine_description=gen_summary.engine_description, engine_detail=gen_summary.engine_detail,
            timings=timings, output_bytes=offset,
            source_frames=prepared.num_frames, frames_without_face=prepared.num_frames - prepared.frames_with_face)
        await emit(_progress(common_pb2.STAGE_DONE, summary.frames, summary.frames))
        return summary
