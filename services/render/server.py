"""Render gRPC edge: validation, status codes, streaming; the work is in render.py.

Workers are stateless (the prepared source comes from the shared cache), so a box runs several of them and a
cluster scales them on their own Deployment; the gateway's round_robin channel spreads renders over all.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from functools import partial
import logging

import grpc
import numpy as np

from lipsync.v1 import common_pb2, render_pb2, render_pb2_grpc
from lipsync_common import options
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.edge.metrics import FRAMES
from lipsync_common.formats.source_cache import SourceCache, SourceNotFound
from lipsync_common.formats.tensors import TensorError, from_tensor
from services.render.config import RenderConfig
from services.render.live import LiveEncoder
from services.render.active import ActiveRenders
from services.render.render import Renderer, RenderError, decoder_threads, encoder_threads

log = logging.getLogger("render")


def check_config(cfg: render_pb2.RenderConfig, max_frames: int) -> int:
    """Raises ValueError (the options table's OptionError) for a bad config; returns the crf."""
    options.INTERNAL_FPS.check("fps", cfg.fps)
    if not 0 < cfg.num_frames <= max_frames:
        raise ValueError(f"num_frames {cfg.num_frames} is out of range [1, {max_frames}]")
    options.codec(cfg.codec)
    if cfg.audio_channels not in (1, 2) or not 8000 <= cfg.audio_sample_rate <= 96000:
        raise ValueError("audio must be 1 or 2 channels at 8-96 kHz")
    return options.crf(cfg)


class RenderServicer(render_pb2_grpc.RenderServicer):
    def __init__(self, cfg: RenderConfig):
        self.cfg = cfg
        self.cache = SourceCache(cfg.cache_dir)
        self.active = ActiveRenders() if cfg.threads_by_load else None     # renders on this box, all workers

    def _renderer(self, entry, cfg, crf: int, on_bytes) -> Renderer:
        """Made when the config comes (in a worker thread): its encoders open and its source frames start decoding
        while the first crops are being made; the audio is set when the crops come."""
        renders = self.active.count() if self.active else 1       # this one included
        return Renderer(entry, cfg.fps, cfg.num_frames, on_bytes,
                        lossless_rgb=cfg.codec == common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB, crf=crf,
                        threads=None if self.cfg.render_threads < 0 else self.cfg.render_threads,
                        carry=None if self.cfg.render_carry < 0 else self.cfg.render_carry,
                        color_match=cfg.color_match, preset=self.cfg.x264_preset,
                        x264_threads=encoder_threads(self.cfg.x264_threads, renders),
                        x264_lookahead=self.cfg.x264_lookahead, first_fragment_s=self.cfg.first_fragment_s,
                        decode_threads=decoder_threads(self.cfg.decode_threads, renders),
                        gop_encoders=self.cfg.gop_encoders, last_fragment_s=self.cfg.last_fragment_s)

    async def _config(self, it, fail) -> tuple:
        """(config, source entry, crf) from the first message, or the call ends with the right status."""
        first = await anext(it, None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the render config")
        cfg = first.config
        try:
            entry = self.cache.get(cfg.source_id)
        except SourceNotFound as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        try:
            return cfg, entry, check_config(cfg, self.cfg.max_frames)
        except ValueError as e:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    async def Render(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)  # drains the upload, then ends the call
        it = aiter(request_iterator)
        cfg, entry, crf = await self._config(it, fail)

        pending: collections.deque = collections.deque()   # MP4 bytes from the encoder thread (thread-safe)
        # the reading and rendering run in a task of their own and say here what they made, as soon as they made
        # it: the MP4's bytes go out when a batch is encoded, not when the next message happens to arrive
        events: asyncio.Queue = asyncio.Queue(maxsize=8)
        state: dict = {"renderer": None}
        offset = 0

        def chunks():
            nonlocal offset
            parts = []
            while pending:
                parts.append(pending.popleft())
            data = b"".join(parts)
            for i in range(0, len(data), boot.CHUNK_BYTES):
                piece = data[i:i + boot.CHUNK_BYTES]
                yield render_pb2.RenderResponse(video=common_pb2.Chunk(offset=offset, data=piece))
                offset += len(piece)

        # counted from the config to the end: renders on the box choose their threads by it (RENDER_THREADS_BY_LOAD)
        with self.active.running() if self.active else contextlib.nullcontext():
            work = asyncio.create_task(self._work(it, entry, cfg, crf, pending.append, events, state))
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "error":
                        work.cancel()
                        await asyncio.gather(work, return_exceptions=True)
                        await fail(grpc.StatusCode.INVALID_ARGUMENT, value)
                    if kind == "raise":
                        raise value
                    for msg in chunks():
                        yield msg
                    if kind == "progress":
                        yield render_pb2.RenderResponse(progress=common_pb2.Progress(
                            stage=common_pb2.STAGE_RENDER, done=value, total=cfg.num_frames))
                    else:       # "done"
                        yield render_pb2.RenderResponse(summary=render_pb2.RenderSummary(
                            frames=value.next_frame, width=value.writer.width, height=value.writer.height, bytes=offset,
                            duration_s=value.next_frame / cfg.fps))
                        return
            finally:
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                if state["renderer"] is not None:
                    # in a thread: it waits for a running add() before closing the encoder
                    await asyncio.shield(asyncio.to_thread(state["renderer"].abort))

    async def _work(self, it, entry, cfg, crf: int, on_bytes, events: asyncio.Queue, state: dict) -> None:
        """Read audio and crops, render each batch in a worker thread while the next message is read (at most two
        add() calls outstanding: one running, one queued), and post ("progress", frames) after each batch, then
        ("done", renderer) or ("error", message)."""
        audio_parts: list[np.ndarray] = []
        renderer = None
        inflight: asyncio.Future | None = None
        opening = asyncio.ensure_future(asyncio.to_thread(self._renderer, entry, cfg, crf, on_bytes))

        async def opened() -> Renderer:
            # shielded: a cancelled call must not lose a renderer its thread is still making (see finally)
            r = state["renderer"] = await asyncio.shield(opening)     # from here the call's end aborts it
            pcm = np.concatenate(audio_parts) if audio_parts else np.zeros((0, cfg.audio_channels), np.int16)
            await asyncio.to_thread(r.set_audio, pcm.T.astype(np.float32) / 32768.0, cfg.audio_sample_rate)
            return r

        async def add_after(prev, r, first_frame, batch):
            if prev is not None:      # strictly in order: a thread lock does not queue FIFO
                await asyncio.gather(prev, return_exceptions=True)
            await asyncio.to_thread(r.add, first_frame, batch)
            FRAMES.labels("render", "render").inc(len(batch))
            await events.put(("progress", r.next_frame))

        try:
            async for req in it:
                kind = req.WhichOneof("payload")
                if kind == "audio":
                    if renderer is not None:
                        raise ValueError("audio must come before the first crops")
                    audio_parts.append(from_tensor(req.audio, dtype=np.int16, ndim=2, trailing=(cfg.audio_channels,)))
                elif kind == "crops":
                    if renderer is None:
                        renderer = await opened()
                    crops = from_tensor(req.crops.images, dtype=np.uint8, ndim=4, trailing=(256, 256, 3))
                    previous, inflight = inflight, asyncio.ensure_future(
                        add_after(inflight, renderer, req.crops.first_frame, crops))
                    if previous is not None:
                        await previous
                else:
                    raise ValueError("the config may be sent only once, first")
            if renderer is None:
                raise ValueError("the stream ended before any crops")
            if inflight is not None:
                last, inflight = inflight, None
                await last
            await asyncio.to_thread(renderer.finish)
            state["renderer"] = None
            await events.put(("done", renderer))
        except (TensorError, RenderError, ValueError) as e:
            await events.put(("error", str(e)))
        except Exception as e:  # noqa: BLE001 - anything else ends the call as it would have in the edge itself
            await events.put(("raise", e))
        finally:
            if inflight is not None:      # a queued add() then finds the render stopped: nothing to keep
                inflight.cancel()
                await asyncio.gather(inflight, return_exceptions=True)
            if state["renderer"] is None and renderer is None:   # made for a call that ended before its crops
                opening.add_done_callback(_abort_unused)

    async def RenderLive(self, request_iterator, context):
        """One frame in, its encoded frame out as soon as x264 gives it (services/render/live.py)."""
        fail = partial(calls.abort, context, request_iterator, **calls.LIVE_DRAIN)
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None or first.WhichOneof("payload") != "config":
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the live render config")
        cfg = first.config
        try:
            options.INTERNAL_FPS.check("fps", cfg.fps)
            entry = self.cache.get(cfg.source_id)
            encoder = LiveEncoder(entry, cfg.fps, fmp4=cfg.fmp4, crf=cfg.crf if cfg.HasField("crf") else 23,
                                  preset=self.cfg.x264_preset)
        except SourceNotFound as e:
            await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except ValueError as e:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))

        def frames(encoded):
            FRAMES.labels("render", "live").inc(len(encoded))
            return [render_pb2.LiveRenderResponse(frame=render_pb2.LiveEncoded(index=i, data=d, keyframe=k))
                    for i, d, k in encoded]

        def init():     # H.264 AUs: at once; fMP4: once the muxer wrote its header, before the first fragment
            return render_pb2.LiveRenderResponse(init=render_pb2.LiveRenderInit(
                width=encoder.width, height=encoder.height, init_segment=encoder.init_segment))

        sent_init = not cfg.fmp4
        try:
            if sent_init:
                yield init()
            async for req in it:
                if req.WhichOneof("payload") != "frame":
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, "the config may be sent only once, first")
                crop = None
                if req.frame.crop:
                    if len(req.frame.crop) != 256 * 256 * 3:
                        await fail(grpc.StatusCode.INVALID_ARGUMENT, "a crop must be 256x256x3 uint8 bytes")
                    crop = np.frombuffer(req.frame.crop, np.uint8).reshape(256, 256, 3)
                try:
                    encoded = await asyncio.to_thread(encoder.encode, req.frame.index, crop)
                except ValueError as e:
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                if not sent_init and encoder.init_segment:
                    sent_init = True
                    yield init()
                for msg in frames(encoded):
                    yield msg
            for msg in frames(await asyncio.to_thread(encoder.close)):
                yield msg
        finally:
            await asyncio.shield(asyncio.to_thread(encoder.close))


def _abort_unused(opening: asyncio.Future) -> None:
    """A renderer made for a call that ended before its first crops: stopped in a worker thread."""
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, opening.result().abort)


def main() -> None:
    cfg = RenderConfig.from_env()
    boot.setup_logging("render", cfg.edge.log_level)
    servicer = RenderServicer(cfg)
    boot.run_internal("render", cfg.listen, cfg.edge, render_pb2.DESCRIPTOR.services_by_name["Render"],
                      lambda s: render_pb2_grpc.add_RenderServicer_to_server(servicer, s))


if __name__ == "__main__":
    main()
