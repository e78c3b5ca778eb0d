"""LiveSession: the client's audio into the generator's GenerateLive, its crops into render's RenderLive, the
encoded frames back to the client, on the clock of live.py. Five tasks per session (client reader, feeder, crop
reader, sender, encoded-frame reader); the first error ends them all, and so does the client going away (the
generator then closes its stream: the session's frames queued on the GPU are dropped)."""
from __future__ import annotations

import asyncio
import os
import time

import grpc
import soxr
from prometheus_client import Histogram

from lipsync.v1 import gateway_pb2, generator_pb2, render_pb2
from lipsync_common import options as opts
from lipsync_common.formats.tensors import to_tensor
from gateway import fetch
from gateway.live import LiveClock, grid_start
from gateway.pipeline import _failure
from gateway.upload import Failure, invalid

LIVE_STAGE = Histogram("lipsync_gateway_live_seconds", "Live sessions, per frame: generator = from the frame whose "
                       "audio completes its lookahead being fed to its crop arriving here; render = from the frame "
                       "going to render to its encoded frame coming back", ["stage"],
                       buckets=(0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 1))
OUT_QUEUE = 50          # frames waiting for a client that reads slowly; past that the session ends
STATS_S = 1.0


async def read_start(it, folder: str, max_bytes: int, urls) -> tuple[gateway_pb2.LiveStart, str]:
    """The start message checked, and the face media's path ("" when start names a source id)."""
    first = await anext(it, None)
    if first is None or first.WhichOneof("payload") != "start":
        raise invalid("the first message must be `start` (the avatar, engine and sample rate), before any audio")
    start = first.start
    if not 8000 <= start.sample_rate <= 48000:
        raise invalid(f"sample_rate {start.sample_rate} is out of range [8000, 48000] Hz")
    if start.max_buffer_ms and not 1000 <= start.max_buffer_ms <= 60000:
        raise invalid(f"max_buffer_ms {start.max_buffer_ms} is out of range [1000, 60000]")
    if start.output not in gateway_pb2.LiveOutput.values():
        raise invalid(f"output {start.output} is not a LiveOutput (H264_AU or FMP4)")
    try:
        if start.options.fps:
            opts.INTERNAL_FPS.check("fps", start.options.fps)
        if start.options.HasField("crf"):
            opts.check("crf", start.options.crf)
    except opts.OptionError as e:
        raise invalid(str(e)) from None
    given = [bool(start.source_id), start.face_size > 0, bool(start.options.face_url)]
    if sum(given) != 1:
        raise invalid("give the avatar once: start.source_id, or start.face_size and the face's bytes, or "
                      "options.face_url")
    path = os.path.join(folder, "face")
    if start.options.face_url:
        try:
            await asyncio.to_thread(fetch.fetch, start.options.face_url, path, max_bytes, urls.timeout_s,
                                    urls.allow_loopback)
        except Exception as e:  # noqa: BLE001 - the fetcher's errors are the client's to fix
            raise invalid(f"face_url: {e}") from None
        return start, path
    if not start.face_size:
        return start, ""
    if start.face_size > max_bytes:
        raise Failure("RESOURCE_EXHAUSTED", f"face_size {start.face_size} is over the limit of {max_bytes} bytes")
    got = 0
    with open(path, "wb") as f:
        while got < start.face_size:
            msg = await anext(it, None)
            if msg is None or msg.WhichOneof("payload") != "face":
                raise invalid(f"start.face_size is {start.face_size} bytes but {got} came before other messages")
            got += len(msg.face)
            if got > start.face_size:
                raise invalid(f"more face bytes than start.face_size ({start.face_size})")
            f.write(msg.face)
    return start, path


class LiveRun:
    """One session once the avatar is prepared: run() yields the LiveResponse messages."""

    def __init__(self, pipeline, start: gateway_pb2.LiveStart, source_id: str, fps: float, it, margin_frames: int):
        self.p, self.start, self.source_id, self.fps, self.it = pipeline, start, source_id, fps, it
        self.margin = margin_frames
        self.out: asyncio.Queue = asyncio.Queue()
        self.crops: dict[int, bytes] = {}
        self.next_send = 0                      # the next frame to go to render
        self.on_time: dict[int, bool] = {}
        self.input_done = asyncio.Event()
        self.speech_came = asyncio.Event()
        self.fed_more = asyncio.Event()
        self.feeding_done = False
        self.clock: LiveClock | None = None
        self.detail = ""
        self.fed_at: dict[int, float] = {}      # when each frame was fed (the generator stage's histogram)
        self.sent_at: dict[int, float] = {}     # when each frame went to render (the render stage's)

    def _start_at(self, fed: int, lead: float = 0.0) -> float:
        """The clock's T0 for frame `fed` to be fed next: at once, or with LIVE_ALIGN=1 on the shared frame grid,
        so the generator gets every session's frames together (measured slower on the H200: BENCHMARKS.md)."""
        mono, wall = time.monotonic(), time.time()
        if self.p.cfg.live_align:
            return grid_start(mono, wall, self.fps, fed, lead)
        return mono + lead - fed / self.fps

    def _put(self, msg) -> None:
        if self.out.qsize() >= OUT_QUEUE:
            raise Failure("RESOURCE_EXHAUSTED", f"the client is not reading: {OUT_QUEUE} frames wait for it")
        self.out.put_nowait(msg)

    async def run(self):
        o, s = self.start.options, self.start
        gen = self.p.gen.GenerateLive(metadata=self.p.metadata)
        render = self.p.render.RenderLive(metadata=self.p.metadata)
        try:
            await gen.write(generator_pb2.LiveGenerateRequest(config=generator_pb2.GenerateConfig(
                source_id=self.source_id, engine=o.engine, model_version=o.model_version, fps=self.fps,
                audio_sample_rate=16000, priority=o.priority)))
            ready = await self._first(gen, "generator", self.p.cfg.generator_addr)
            await render.write(render_pb2.LiveRenderRequest(config=render_pb2.LiveRenderConfig(
                source_id=self.source_id, fps=self.fps, fmp4=s.output == gateway_pb2.LIVE_OUTPUT_FMP4,
                crf=o.crf if o.HasField("crf") else 23)))
            g = ready.ready
            self.detail = g.engine_detail
            resampler = None if s.sample_rate == 16000 else soxr.ResampleStream(s.sample_rate, 16000, 1, "float32")
            self.clock = LiveClock(self.fps, s.sample_rate, g.lookahead_frames, self.margin,
                                   (s.max_buffer_ms or 10000) / 1000, resampler)
            self.ready = gateway_pb2.LiveReady(source_id=self.source_id, engine=g.engine, engine_detail=g.engine_detail,
                                               fps=self.fps, lookahead_frames=g.lookahead_frames)
            self.t0 = self._start_at(0, lead=0.02)
            tasks = [asyncio.create_task(c) for c in (self._read_client(), self._feed(gen), self._read_crops(gen),
                                                      self._send(render), self._read_encoded(render), self._stats())]
            try:
                while True:
                    for t in tasks:
                        if t.done() and t.exception() is not None:
                            raise t.exception()
                    tasks = [t for t in tasks if not t.done()]
                    waiter = asyncio.ensure_future(self.out.get())
                    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
                    if waiter not in done:
                        waiter.cancel()
                        continue
                    msg = waiter.result()
                    if msg is None:
                        return
                    yield msg
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            # a read gets the call's error; a write to a call that ended (its service went away) gets
            # InvalidStateError: either way the session ends with the status of the call that failed
            raise await self._ended(gen, render, e) from None
        finally:
            gen.cancel()
            render.cancel()

    async def _ended(self, gen, render, e: Exception) -> Failure:
        cfg = self.p.cfg
        for name, call, addr in (("render", render, cfg.render_addr), ("generator", gen, cfg.generator_addr)):
            if call.done() and (code := await call.code()) not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                return _failure(name, addr, code, await call.details())
        if isinstance(e, grpc.aio.AioRpcError):
            return _failure("generator or render", cfg.generator_addr, e.code(), e.details())
        return Failure("UNAVAILABLE", f"a service of the live session ended its call: {e}")

    async def _first(self, call, name: str, addr: str):
        try:
            msg = await call.read()
        except grpc.aio.AioRpcError as e:
            raise _failure(name, addr, e.code(), e.details()) from None
        if msg is grpc.aio.EOF:
            raise _failure(name, addr, await call.code(), await call.details())
        return msg

    async def _read_client(self) -> None:
        c = self.clock
        async for req in self.it:
            kind = req.WhichOneof("payload")
            if kind == "audio":
                if len(req.audio) > 2 * self.start.sample_rate * 5:
                    raise invalid("an audio message may carry at most 5 s")
                try:
                    c.add_audio(req.audio, time.monotonic())
                except BufferError as e:
                    raise Failure("RESOURCE_EXHAUSTED", str(e)) from None
                self.speech_came.set()
            elif kind == "control" and req.control == gateway_pb2.LIVE_CONTROL_FLUSH:
                c.flush()
                self.speech_came.set()
            elif kind == "control" and req.control == gateway_pb2.LIVE_CONTROL_INTERRUPT:
                c.interrupt()
            else:
                raise invalid(f"unexpected {kind or 'empty'} message: start comes once, first; then audio and "
                              "control")
        c.flush()               # the end of the input ends the utterance: its last part-frame is shown too
        self.input_done.set()
        self.speech_came.set()

    async def _feed(self, gen) -> None:
        c, flushed = self.clock, True
        while True:
            if not c.has_speech() and (self.input_done.is_set() or self.start.no_idle):
                if not flushed:      # the last speech frames' lookahead: silence
                    await gen.write(generator_pb2.LiveGenerateRequest(flush=True))
                    flushed = True
                if self.input_done.is_set():
                    break
                self.speech_came.clear()
                await self.speech_came.wait()
                if c.has_speech():   # the clock starts again now (no frames were due while nothing was said)
                    self.t0 = self._start_at(c.fed)
                continue
            await asyncio.sleep(max(0.0, c.feed_time(self.t0, c.fed) - time.monotonic()))
            k, audio = c.next_frame()
            self.fed_at[k] = time.monotonic()
            flushed = False
            await gen.write(generator_pb2.LiveGenerateRequest(
                frame=generator_pb2.LiveAudioFrame(index=k, audio=to_tensor(audio))))
            self.fed_more.set()
        await gen.done_writing()
        self.feeding_done = True
        self.fed_more.set()

    async def _read_crops(self, gen) -> None:
        while (resp := await gen.read()) is not grpc.aio.EOF:
            if resp.WhichOneof("payload") == "crops":
                k = resp.crops.first_frame
                if k >= self.next_send:     # a crop later than its frame's slot is dropped (the source frame went)
                    self.crops[k] = resp.crops.images.data
                # crops come in order: crop k needs the time frame k + lookahead was fed (or, at an utterance's
                # end, where the flush stands for the lookahead, frame k's own); no later crop needs frame k's
                ready = self.fed_at.get(k + self.clock.lookahead) or self.fed_at.get(k)
                self.fed_at.pop(k, None)
                if ready is not None:
                    LIVE_STAGE.labels("generator").observe(time.monotonic() - ready)

    async def _send(self, render) -> None:
        c, k = self.clock, 0
        while True:
            while k >= c.fed:
                if self.feeding_done:
                    await render.done_writing()
                    return
                self.fed_more.clear()
                await self.fed_more.wait()
            due = c.send_time(self.t0, k)
            while k not in self.crops and time.monotonic() < due and not (self.feeding_done and k >= c.fed):
                await asyncio.sleep(min(0.005, max(0.0, due - time.monotonic())))
            crop = self.crops.pop(k, None)
            self.next_send = k + 1
            info = c.frames[k]
            self.on_time[k] = crop is not None
            await render.write(render_pb2.LiveRenderRequest(frame=render_pb2.LiveRenderFrame(
                index=k, crop=b"" if crop is None or info.interrupted else crop)))
            self.sent_at[k] = time.monotonic()
            self.fed_at.pop(k - 64, None)        # a crop that never came (the session keeps no old entries)
            k += 1

    async def _read_encoded(self, render) -> None:
        while (resp := await render.read()) is not grpc.aio.EOF:
            if resp.WhichOneof("payload") == "init":
                self.ready.width, self.ready.height = resp.init.width, resp.init.height
                self.ready.init_segment = resp.init.init_segment
                self._put(gateway_pb2.LiveResponse(ready=self.ready))
                continue
            e = resp.frame
            now = time.monotonic()
            sent = self.sent_at.pop(e.index, None)
            if sent is not None:
                LIVE_STAGE.labels("render").observe(now - sent)
            info = self.clock.sent(e.index, self.on_time.pop(e.index, False), now)
            self._put(gateway_pb2.LiveResponse(frame=gateway_pb2.LiveFrame(
                index=e.index, pts_s=e.index / self.fps, speech=info.speech, pcm=info.pcm, audio_s=info.audio_s,
                data=e.data, keyframe=e.keyframe,
                latency_ms=1000 * (now - info.arrival) if info.speech else 0.0)))
        self._put(gateway_pb2.LiveResponse(stats=self.stats()))
        self.out.put_nowait(None)

    def stats(self) -> gateway_pb2.LiveStats:
        c, s = self.clock, self.clock.stats
        return gateway_pb2.LiveStats(frames=s.frames, speech_frames=s.speech, idle_frames=s.idle, frames_late=s.late,
                                     latency_p50_ms=c.percentile(50), latency_p95_ms=c.percentile(95),
                                     buffered_ms=c.buffered_ms(), engine_detail=self.detail)

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_S)
            self._put(gateway_pb2.LiveResponse(stats=self.stats()))
