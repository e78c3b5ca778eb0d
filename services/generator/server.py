"""Generator gRPC edge: engine selection, validation, streaming crops in frame order."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
import logging
import sys
import time

import grpc
import numpy as np
from prometheus_client import Histogram

from lipsync.v1 import generator_pb2, generator_pb2_grpc, preprocess_pb2
from lipsync_common import options
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.metrics import FRAMES
from lipsync_common.formats.source_cache import SourceCache, SourceEntry, SourceNotFound
from lipsync_common.formats.tensors import TensorError, from_tensor, to_tensor
from services.generator.config import GeneratorConfig
from services.generator.engines.base import INTERACTIVE, SAMPLE_RATE, Engine, EngineUnavailable
from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings
from services.generator.engines.warp.engine import WarpEngine

log = logging.getLogger("generator")
LIVE_CROP = Histogram("lipsync_generator_live_crop_seconds", "Live sessions: from the moment a frame's crop could be "
                      "made (its lookahead fed) to the crop leaving", ["engine"],
                      buckets=(0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1))


@dataclass
class _Fed:
    """A live call's input so far: frames fed, when each was fed (a frame's crop can come once the frame
    `lookahead` after it was fed), when the last flush came."""
    count: int = 0
    at: dict[int, float] = field(default_factory=dict)
    flushed_at: float | None = None


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, cfg: GeneratorConfig):
        self.cfg = cfg
        self.cache = SourceCache(cfg.cache_dir)
        self.engines: dict[str, Engine] = {
            "visemes": WarpEngine("visemes", cfg.speech_cache_dir),
            "loudness": WarpEngine("loudness", cfg.speech_cache_dir),
            "musetalk": MuseTalkEngine(cfg.models_dir, MuseTalkSettings(
                device=cfg.device, dtype=cfg.dtype, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                latent=cfg.latent, compile=cfg.compile, fused=cfg.fused, fused_unet=cfg.fused_unet,
                decode_chunk=cfg.decode_chunk, phase_upsample=cfg.phase_upsample, live_lookahead=cfg.live_lookahead,
                side_gather_ms=cfg.side_gather_ms, whisper_graphs=cfg.whisper_graphs,
                split_batches=cfg.split_batches, latent_cache_mb=cfg.latent_cache_mb,
                launch_lead_ms=cfg.launch_lead_ms, pending_head_batch=cfg.pending_head_batch,
                live_batch=cfg.live_batch, live_fit=cfg.live_fit, beside_live_batch=cfg.beside_live_batch,
                head_s=cfg.head_s, finish_frames=cfg.finish_frames))}

    def warmup(self) -> None:
        for engine in self.engines.values():
            if engine.available()[0]:
                engine.load()

    def close(self) -> None:
        """On stop: every engine's threads end."""
        for engine in self.engines.values():
            engine.close()

    def pick(self, name: str, version: str = "v15") -> Engine:
        """auto: musetalk when its weights are installed, else the weight-free default; warp: the weight-free
        default (visemes when the speech models are installed, else loudness)."""
        if name in ("", "auto") and version in self.engines["musetalk"].versions:
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
        engine, version, priority, source = await self._setup(cfg, fail)
        audio = await self._audio(it, fail)
        frames = options.frame_count(len(audio), SAMPLE_RATE, cfg.fps)
        if frames == 0:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the audio has zero length")
        if cfg.num_frames and cfg.num_frames != frames:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"num_frames {cfg.num_frames} was planned but the audio "
                       f"gives {frames} frames at {cfg.fps:g} fps")

        try:
            run = engine.generate(source, audio, SAMPLE_RATE, cfg.fps, self.cfg.batch_size, version=version,
                                  priority=priority)
        except EngineUnavailable as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        done = 0
        while True:
            try:
                batch = await asyncio.to_thread(next, run.batches, None)
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
            engine_detail=run.detail()))

    async def GenerateLive(self, request_iterator, context):
        """Audio frame by frame in, one crop per frame out as soon as the engine has the audio it needs; the end
        of the request stream flushes. The engine's stream is closed however the call ends (its queued frames on
        the GPU are dropped)."""
        fail = partial(calls.abort, context, request_iterator, **calls.LIVE_DRAIN)
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the config")
        engine, version, _, source = await self._setup(first.config, fail)
        loop, crops = asyncio.get_running_loop(), asyncio.Queue()
        try:
            stream = await asyncio.to_thread(engine.open_live, source, first.config.fps,
                                             lambda c: loop.call_soon_threadsafe(crops.put_nowait, c), version=version)
        except EngineUnavailable as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        fed = _Fed()
        reader = asyncio.create_task(self._feed_live(it, stream, fed, crops))
        try:
            yield generator_pb2.LiveGenerateResponse(ready=generator_pb2.LiveGenerateReady(
                engine=engine.name, engine_detail=stream.detail, lookahead_frames=stream.lookahead))
            done, ended = 0, False
            while not (ended and done == fed.count):
                crop = await crops.get()
                if crop is None:            # the input ended (and was flushed): every fed frame's crop is coming
                    ended = True
                    continue
                if isinstance(crop, str):
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, crop)
                if isinstance(crop, BaseException):
                    raise crop
                yield generator_pb2.LiveGenerateResponse(crops=preprocess_pb2.CropBatch(
                    first_frame=done, images=to_tensor(crop[None])))
                ready_at = fed.at.pop(done + stream.lookahead, None) or fed.flushed_at
                if ready_at is not None:
                    LIVE_CROP.labels(engine.name).observe(time.monotonic() - ready_at)
                fed.at.pop(done, None)
                done += 1
                FRAMES.labels("generator", engine.name).inc()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            stream.close()

    @staticmethod
    async def _feed_live(it, stream, fed: "_Fed", crops: asyncio.Queue) -> None:
        """Feed frames and flushes in order (in a worker thread unless the stream says its feed only queues work);
        a bad message puts its error text on the crops queue; the end of input flushes, then puts None."""
        try:
            async for req in it:
                kind = req.WhichOneof("payload")
                if kind == "frame":
                    if req.frame.index != fed.count:
                        raise ValueError(f"frame {req.frame.index} arrived, expected frame {fed.count}")
                    samples = from_tensor(req.frame.audio, dtype=np.float32, ndim=1, finite=True)
                    if len(samples) > 2 * SAMPLE_RATE:
                        raise ValueError("a frame's audio is longer than 2 s")
                    fed.at[fed.count] = time.monotonic()
                    if stream.quick_feed:       # no thread hop per frame (two GIL handoffs each)
                        stream.feed(samples)
                    else:
                        await asyncio.to_thread(stream.feed, samples)
                    fed.count += 1
                elif kind == "flush":
                    fed.flushed_at = time.monotonic()
                    if stream.quick_feed:
                        stream.flush()
                    else:
                        await asyncio.to_thread(stream.flush)
                else:
                    raise ValueError("the config may be sent only once, first")
            if stream.quick_feed:
                stream.flush()
            else:
                await asyncio.to_thread(stream.flush)
            crops.put_nowait(None)
        except (ValueError, TensorError) as e:
            crops.put_nowait(str(e))

    async def _setup(self, cfg, fail) -> tuple[Engine, str, str, SourceEntry]:
        """The config checked: the engine that runs it, the model version, the priority, the prepared source."""
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
        try:
            engine.check(version)
        except EngineUnavailable as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        if cfg.audio_sample_rate != SAMPLE_RATE:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"audio_sample_rate must be {SAMPLE_RATE} (mono float32 PCM)")
        try:
            source = self.cache.get(cfg.source_id)
        except SourceNotFound as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return engine, version, priority, source

    async def _audio(self, it, fail) -> np.ndarray:
        """The uploaded audio after the config: float32 mono, within the length limit."""
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
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def main() -> None:
    cfg = GeneratorConfig.from_env()
    boot.setup_logging("generator", cfg.edge.log_level)
    sys.setswitchinterval(cfg.switch_interval_ms / 1000)
    servicer = GeneratorServicer(cfg)
    boot.run_internal("generator", cfg.listen, cfg.edge, generator_pb2.DESCRIPTOR.services_by_name["Generator"],
                      lambda s: generator_pb2_grpc.add_GeneratorServicer_to_server(servicer, s), warmup=servicer.warmup, on_stop=servicer.close)


if __name__ == "__main__":
    main()
