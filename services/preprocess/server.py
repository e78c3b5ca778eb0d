"""Preprocess gRPC edge: validation, status codes, streaming; the work is in prepare.py and render.py."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
from functools import partial
import hashlib
import logging
import math
import os
import tempfile

import grpc
import numpy as np

from lipsync.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc
from lipsync_common import media, server as boot
from lipsync_common.auth import internal_interceptors
from lipsync_common.metrics import FRAMES
from lipsync_common.chunks import ChunkError, ChunkWriter
from lipsync_common.source_cache import SourceCache, SourceNotFound
from lipsync_common.tensors import TensorError, from_tensor
from services.preprocess import face_parsing
from services.preprocess.config import PreprocessConfig
from services.preprocess.landmarks import Landmarker
from services.preprocess.prepare import NoFaceError, PrepareOptions, prepare
from services.preprocess.render import Renderer, RenderError

log = logging.getLogger("preprocess")
VERSIONS = {common_pb2.MODEL_VERSION_UNSPECIFIED: "v15", common_pb2.MODEL_VERSION_V15: "v15",
            common_pb2.MODEL_VERSION_V1: "v1"}
CODECS = {common_pb2.VIDEO_CODEC_UNSPECIFIED, common_pb2.VIDEO_CODEC_H264, common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB}


def prepare_options(msg: preprocess_pb2.PrepareOptions) -> PrepareOptions:
    if msg.model_version not in VERSIONS:
        raise ValueError(f"unknown model_version {msg.model_version}")
    if not -100 <= msg.bbox_shift <= 100:
        raise ValueError(f"bbox_shift {msg.bbox_shift} is out of range [-100, 100]")
    margin = msg.extra_margin if msg.HasField("extra_margin") else 10
    if not 0 <= margin <= 100:
        raise ValueError(f"extra_margin {margin} is out of range [0, 100]")
    face = msg.face_index if msg.HasField("face_index") else -1
    if face < -1 or face > 16:
        raise ValueError(f"face_index {face} is out of range [-1, 16]")
    hint = None
    if msg.HasField("face_hint"):
        b = msg.face_hint
        if not (b.x2 > b.x1 and b.y2 > b.y1) or not all(map(math.isfinite, (b.x1, b.y1, b.x2, b.y2))):
            raise ValueError("face_hint must be a box with x2 > x1 and y2 > y1")
        hint = (b.x1, b.y1, b.x2, b.y2)
    smoothing = msg.smoothing if msg.HasField("smoothing") else True
    return PrepareOptions(VERSIONS[msg.model_version], msg.bbox_shift, margin, face, smoothing, hint)


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServicer):
    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self.cache = SourceCache(cfg.cache_dir, cfg.cache_max_bytes)
        self.cache.clean_stale_temp()
        self.landmarker: Landmarker | None = None
        self.parser = None     # BiSeNet face parsing, when its weights are in MODELS_DIR
        self.cpu = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    def warmup(self) -> None:
        if not face_parsing.missing_files(self.cfg.models_dir):
            self.parser = face_parsing.FaceParser(self.cfg.models_dir)
        boot.log_event(log, "blend mask", kind="bisenet" if self.parser else "landmarks",
                       models_dir=os.path.abspath(self.cfg.models_dir))
        self.landmarker = Landmarker()
        with self.landmarker.session(static=True) as s:
            s.process(np.zeros((64, 64, 3), np.uint8))

    async def Prepare(self, request_iterator, context):
        fail = partial(boot.abort, context, request_iterator)  # drains the upload, then ends the call
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("payload") != "options":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the options")
        try:
            opts = dataclasses.replace(prepare_options(first.options),
                                       mask="bisenet" if self.parser is not None else "landmarks")
        except ValueError as e:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        fd, path = tempfile.mkstemp(prefix="prep-", dir=self.cfg.tmp_dir or None)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as f:
                writer = ChunkWriter("face media", f, self.cfg.max_upload_bytes)
                async for req in request_iterator:
                    if req.WhichOneof("payload") != "media":
                        await fail(grpc.StatusCode.INVALID_ARGUMENT, "options may be sent only once, first")
                    try:
                        writer.add(req.media.offset, req.media.data, req.media.last)
                    except ChunkError as e:
                        await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                    sha.update(req.media.data)
            if not writer.done:
                await fail(grpc.StatusCode.INVALID_ARGUMENT,
                                    "the face media stream ended before its last chunk (last=true)")
            if writer.size == 0:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, "the face media is empty (0 bytes)")
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()

            def progress(done: int, total: int) -> None:
                if done % 10 == 0:
                    loop.call_soon_threadsafe(events.put_nowait, (done, total))

            async with self.cpu:
                task = asyncio.ensure_future(asyncio.to_thread(
                    prepare, path, sha.hexdigest(), opts, self.cache, self.landmarker,
                    self.cfg.max_pixels, self.cfg.max_frames, progress, self.parser))
                while not task.done():
                    getter = asyncio.ensure_future(events.get())
                    await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        done, total = getter.result()
                        yield preprocess_pb2.PrepareResponse(progress=common_pb2.Progress(
                            stage=common_pb2.STAGE_PREPROCESS, done=done, total=total))
                    else:
                        getter.cancel()
                try:
                    meta, cached = task.result()
                except media.MediaError as e:
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                except NoFaceError as e:
                    await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            boot.log_event(log, "prepared", source_id=meta.source_id, frames=meta.num_frames, cached=cached)
            if not cached:
                FRAMES.labels("preprocess", "prepare").inc(meta.num_frames)
            yield preprocess_pb2.PrepareResponse(prepared=preprocess_pb2.PreparedSource(
                source_id=meta.source_id, num_frames=meta.num_frames, fps=meta.fps, width=meta.width,
                height=meta.height, is_image=meta.is_image, frames_with_face=meta.frames_with_face,
                bbox_shift_range=common_pb2.BboxShiftRange(min=meta.bbox_shift_range[0],
                                                           max=meta.bbox_shift_range[1]),
                cached=cached))
        finally:
            if os.path.exists(path):
                os.remove(path)

    async def Render(self, request_iterator, context):
        fail = partial(boot.abort, context, request_iterator)  # drains the upload, then ends the call
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the render config")
        cfg = first.config
        try:
            entry = self.cache.get(cfg.source_id)
        except SourceNotFound as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        if not 0 < cfg.fps <= 120:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"fps {cfg.fps} is out of range (0, 120]")
        if not 0 < cfg.num_frames <= 10 * self.cfg.max_frames:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"num_frames {cfg.num_frames} is out of range")
        if cfg.codec not in CODECS:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"unknown codec {cfg.codec}")
        crf = cfg.crf if cfg.HasField("crf") else 18
        if not 0 <= crf <= 51:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, f"crf {crf} is out of range [0, 51]")
        if cfg.audio_channels not in (1, 2) or not 8000 <= cfg.audio_sample_rate <= 96000:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "audio must be 1 or 2 channels at 8-96 kHz")

        audio_parts: list[np.ndarray] = []
        pending: collections.deque = collections.deque()   # MP4 bytes from the encoder thread (thread-safe)
        offset = 0
        renderer = None
        # one batch renders in a worker thread while the next message is read, so x264 never waits for the
        # network: at most two add() calls are outstanding (one running, one queued behind its lock)
        inflight: tuple | None = None

        def chunks():
            nonlocal offset
            parts = []
            while pending:
                parts.append(pending.popleft())
            data = b"".join(parts)
            for i in range(0, len(data), boot.CHUNK_BYTES):
                piece = data[i:i + boot.CHUNK_BYTES]
                yield preprocess_pb2.RenderResponse(video=common_pb2.Chunk(offset=offset, data=piece))
                offset += len(piece)

        try:
            async for req in it:
                kind = req.WhichOneof("payload")
                try:
                    if kind == "audio":
                        if renderer is not None:
                            raise ValueError("audio must come before the first crops")
                        audio_parts.append(from_tensor(req.audio, dtype=np.int16, ndim=2,
                                                       trailing=(cfg.audio_channels,)))
                    elif kind == "crops":
                        if renderer is None:
                            pcm = np.concatenate(audio_parts) if audio_parts else np.zeros((0, cfg.audio_channels), np.int16)
                            audio = (pcm.T.astype(np.float32) / 32768.0)
                            renderer = Renderer(entry, cfg.fps, cfg.num_frames, pending.append,
                                                lossless_rgb=cfg.codec == common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB,
                                                crf=crf, audio=audio, audio_rate=cfg.audio_sample_rate,
                                                threads=None if self.cfg.render_threads < 0 else self.cfg.render_threads,
                                                carry=None if self.cfg.render_carry < 0 else self.cfg.render_carry,
                                                color_match=cfg.color_match)
                        crops = from_tensor(req.crops.images, dtype=np.uint8, ndim=4, trailing=(256, 256, 3))
                        previous = inflight

                        async def add_after(prev, first_frame, batch, r=renderer):
                            if prev is not None:      # strictly in order: a thread lock does not queue FIFO
                                await asyncio.gather(prev, return_exceptions=True)
                            await asyncio.to_thread(r.add, first_frame, batch)

                        inflight = (asyncio.ensure_future(add_after(previous[0] if previous else None,
                                                                    req.crops.first_frame, crops)), len(crops))
                        if previous is not None:
                            await previous[0]
                            FRAMES.labels("preprocess", "render").inc(previous[1])
                            for msg in chunks():
                                yield msg
                            yield preprocess_pb2.RenderResponse(progress=common_pb2.Progress(
                                stage=common_pb2.STAGE_RENDER, done=renderer.next_frame, total=cfg.num_frames))
                    else:
                        raise ValueError("the config may be sent only once, first")
                except (TensorError, RenderError, ValueError) as e:
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            if renderer is None:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before any crops")
            try:
                if inflight is not None:
                    last, inflight = inflight, None
                    await last[0]
                    FRAMES.labels("preprocess", "render").inc(last[1])
                await asyncio.to_thread(renderer.finish)
            except RenderError as e:
                await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            for msg in chunks():
                yield msg
            renderer_done, renderer = renderer, None
            yield preprocess_pb2.RenderResponse(summary=preprocess_pb2.RenderSummary(
                frames=renderer_done.next_frame, width=renderer_done.writer.width, height=renderer_done.writer.height,
                bytes=offset,
                duration_s=renderer_done.next_frame / cfg.fps))
        finally:
            if renderer is not None:
                # in a thread: it waits for a running add() before closing the encoder
                await asyncio.shield(asyncio.to_thread(renderer.abort))
            if inflight is not None:      # a queued add() then finds the render stopped: nothing to keep
                await asyncio.gather(inflight[0], return_exceptions=True)


def main() -> None:
    cfg = PreprocessConfig.from_env()
    boot.setup_logging("preprocess")
    servicer = PreprocessServicer(cfg)
    name = preprocess_pb2.DESCRIPTOR.services_by_name["Preprocess"].full_name
    asyncio.run(boot.serve(
        name="preprocess", host=cfg.host, port=cfg.port, port_file=cfg.port_file, grace_s=cfg.grace_s,
        service_names=[name], warmup=servicer.warmup, interceptors=internal_interceptors(),
        add_servicers=lambda s: preprocess_pb2_grpc.add_PreprocessServicer_to_server(servicer, s)))


if __name__ == "__main__":
    main()
