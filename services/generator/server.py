"""Generator gRPC edge: engine selection, validation, streaming crops in frame order."""
from __future__ import annotations

import asyncio
from functools import partial
import logging

import grpc
import numpy as np

from lipsync.v1 import generator_pb2, generator_pb2_grpc, preprocess_pb2
from lipsync_common import options
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.auth import internal_interceptors
from lipsync_common.edge.metrics import FRAMES
from lipsync_common.formats.source_cache import SourceCache, SourceNotFound
from lipsync_common.formats.tensors import TensorError, from_tensor, to_tensor
from services.generator.audio_features import SAMPLE_RATE, num_frames
from services.generator.batcher import INTERACTIVE
from services.generator.config import GeneratorConfig
from services.generator.engines.base import EngineUnavailable
from services.generator.engines.musetalk import MuseTalkEngine, MuseTalkSettings
from services.generator.engines.warp import WarpEngine

log = logging.getLogger("generator")


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, cfg: GeneratorConfig):
        self.cfg = cfg
        self.cache = SourceCache(cfg.cache_dir)
        self.engines = {
            "visemes": WarpEngine("visemes", cfg.speech_cache_dir or "var/cache/speech"),
            "loudness": WarpEngine("loudness"),
            "musetalk": MuseTalkEngine(cfg.models_dir, MuseTalkSettings(
                device=cfg.device, dtype=cfg.dtype, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                latent=cfg.latent, compile=cfg.compile, fused=cfg.fused,
                fused_unet=cfg.fused_unet, decode_chunk=cfg.decode_chunk))}

    def warmup(self) -> None:
        for engine in self.engines.values():
            if engine.available()[0]:
                engine.load()

    def pick(self, name: str, version: str = "v15"):
        """auto: musetalk when its weights are installed, else the weight-free default; warp: the weight-free
        default (visemes when the speech models are installed, else loudness)."""
        if name in ("", "auto") and version in self.engines["musetalk"].models:
            return self.engines["musetalk"]
        if name in ("", "auto", "warp"):
            visemes = self.engines["visemes"]
            return visemes if visemes.available()[0] else self.engines["loudness"]
        if name not in self.engines:
            raise ValueError(f"unknown engine {name!r}; choose one of: auto, warp, {', '.join(self.engines)}")
        return self.engines[name]

    async def ListEngines(self, request, context):
        infos = []
        for engine in self.engines.values():
            ok, why = engine.available()
            infos.append(generator_pb2.EngineInfo(name=engine.name, description=engine.description,
                                                  available=ok, unavailable_reason=why))
        return generator_pb2.ListEnginesResponse(engines=infos)

    async def Generate(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)  # drains the upload, then ends the call
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the config")
        cfg = first.config
        try:
            version = options.model_version(cfg.model_version)
            priority = options.priority(cfg.priority) or INTERACTIVE
            options.INTERNAL_FPS.check("fps", cfg.fps)
        except options.OptionError as e:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        try:
            engine = self.pick(cfg.engine, version)
        except ValueError as e:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if isinstance(engine, MuseTalkEngine):
            try:
                engine.check(version)
            except EngineUnavailable as e:
                await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        elif not engine.available()[0]:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, f"engine {engine.name}: {engine.available()[1]}")
        if cfg.audio_sample_rate != SAMPLE_RATE:
            await fail(grpc.StatusCode.INVALID_ARGUMENT,
                                f"audio_sample_rate must be {SAMPLE_RATE} (mono float32 PCM)")
        try:
            source = self.cache.get(cfg.source_id)
        except SourceNotFound as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))

        parts, total, limit = [], 0, int(self.cfg.max_audio_s * SAMPLE_RATE)
        async for req in it:
            if req.WhichOneof("payload") != "audio":
                await fail(grpc.StatusCode.INVALID_ARGUMENT, "the config may be sent only once, first")
            try:
                part = from_tensor(req.audio, dtype=np.float32, ndim=1, finite=True)
            except TensorError as e:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, f"audio: {e}")
            total += len(part)
            if total > limit:
                await fail(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"audio is longer than the limit of {self.cfg.max_audio_s:.0f} s")
            parts.append(part)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        frames = num_frames(len(audio), SAMPLE_RATE, cfg.fps)
        if frames == 0:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the audio has zero length")

        kwargs = {"version": version, "priority": priority} if isinstance(engine, MuseTalkEngine) else {}
        try:
            batches = engine.generate(source, audio, SAMPLE_RATE, cfg.fps, self.cfg.batch_size, **kwargs)
        except EngineUnavailable as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        done = 0
        while True:
            try:
                batch = await asyncio.to_thread(next, batches, None)
            except EngineUnavailable as e:
                await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            if batch is None:
                break
            yield generator_pb2.GenerateResponse(crops=preprocess_pb2.CropBatch(first_frame=done,
                                                                                images=to_tensor(batch)))
            done += len(batch)
            FRAMES.labels("generator", engine.name).inc(len(batch))
        boot.log_event(log, "generated", source_id=cfg.source_id, engine=engine.name, frames=done)
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
            frames=done, engine=engine.name, engine_description=engine.description,
            engine_detail=getattr(batches, "detail", "")))


def main() -> None:
    cfg = GeneratorConfig.from_env()
    boot.setup_logging("generator")
    servicer = GeneratorServicer(cfg)
    name = generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name
    asyncio.run(boot.serve(
        name="generator", host=cfg.host, port=cfg.port, port_file=cfg.port_file, grace_s=cfg.grace_s,
        service_names=[name], warmup=servicer.warmup, interceptors=internal_interceptors(),
        add_servicers=lambda s: generator_pb2_grpc.add_GeneratorServicer_to_server(servicer, s)))


if __name__ == "__main__":
    main()
