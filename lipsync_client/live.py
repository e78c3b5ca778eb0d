"""Live sessions (asyncio): speech in as it is spoken, frames out as an async iterator.

    async with LiveSession("127.0.0.1:50051", face="face.jpg", sample_rate=16000) as session:
        ready = await session.ready()             # the avatar is prepared; start sending audio now
        await session.send_audio(pcm_bytes)       # 16-bit mono PCM, any chunk size
        await session.flush()                     # end of an utterance
        await session.interrupt()                 # barge-in: back to the idle face
        await session.end()                       # no more audio: the session ends once it is shown
        async for msg in session:                 # LiveResponse: frame / stats
            ...

An error ends the iteration (or `ready()`) with LipsyncError carrying the session's status: the server announces it
in an `ending` message, on which the session stops sending, so the status is the server's even where gRPC's asyncio
client would report INTERNAL "Internal error from Core" (a status that meets a write: grpc/grpc#36066).
"""
from __future__ import annotations

import asyncio
import os
import time

import grpc

from lipsync.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from lipsync_client.client import OPTIONS, LipsyncError

FACE_CHUNK = 1024 * 1024


class LiveSession:
    def __init__(self, target: str = "127.0.0.1:50051", *, face: str = "", source_id: str = "",
                 sample_rate: int = 16000, options: common_pb2.LipsyncOptions | None = None,
                 output: int = gateway_pb2.LIVE_OUTPUT_H264_AU, no_idle: bool = False, token: str | None = None):
        self.target = target
        token = token if token is not None else os.environ.get("LIPSYNC_TOKEN", "")
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.start = gateway_pb2.LiveStart(options=options or common_pb2.LipsyncOptions(), source_id=source_id,
                                           sample_rate=sample_rate, output=output, no_idle=no_idle)
        self.face = face
        if face:
            self.start.face_size = os.path.getsize(face)
        self._outgoing: asyncio.Queue = asyncio.Queue()
        self._ready: asyncio.Future | None = None
        self._ending: gateway_pb2.LiveEnding | None = None     # the error the server announced
        self.channel = self.call = None

    async def __aenter__(self) -> "LiveSession":
        self.channel = grpc.aio.insecure_channel(self.target, options=OPTIONS)
        stub = gateway_pb2_grpc.LipsyncGatewayStub(self.channel)
        self.call = stub.LiveSession(self._requests(), metadata=self.metadata)
        self._ready = asyncio.get_running_loop().create_future()
        return self

    async def __aexit__(self, *exc) -> None:
        self.call.cancel()
        await self.channel.close()

    async def _requests(self):
        yield gateway_pb2.LiveRequest(start=self.start)
        if self.face:
            with open(self.face, "rb") as f:
                while data := f.read(FACE_CHUNK):
                    yield gateway_pb2.LiveRequest(face=data)
        while (msg := await self._outgoing.get()) is not None and self._ending is None:
            yield msg

    async def play(self, pcm: bytes, realtime: bool = True, chunk_ms: int = 20) -> None:
        """Send 16-bit mono PCM (at the session's sample rate) `chunk_ms` at a time, at the pace it would be spoken
        when `realtime` (as a voice agent streams it), then flush and end."""
        rate = self.start.sample_rate
        step = rate * chunk_ms // 1000 * 2
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            if realtime:
                await asyncio.sleep(max(0.0, t0 + i / 2 / rate - time.monotonic()))
            await self.send_audio(pcm[i:i + step])
        await self.flush()
        await self.end()

    async def send_audio(self, pcm: bytes) -> None:
        await self._outgoing.put(gateway_pb2.LiveRequest(audio=pcm))

    async def flush(self) -> None:
        await self._outgoing.put(gateway_pb2.LiveRequest(control=gateway_pb2.LIVE_CONTROL_FLUSH))

    async def interrupt(self) -> None:
        await self._outgoing.put(gateway_pb2.LiveRequest(control=gateway_pb2.LIVE_CONTROL_INTERRUPT))

    async def end(self) -> None:
        """No more audio (half-close): the session ends once the queued audio is shown."""
        await self._outgoing.put(None)

    async def ready(self) -> gateway_pb2.LiveReady:
        """Wait for the session's `ready` (read by the iterator; call it before iterating, or alongside)."""
        if not self._ready.done():
            msg = await self._read()
            if msg is None or msg.WhichOneof("payload") != "ready":
                raise LipsyncError(grpc.StatusCode.INTERNAL, "the session ended before `ready`")
            self._ready.set_result(msg.ready)
        return self._ready.result()

    async def _read(self):
        try:
            msg = await self.call.read()
        except grpc.aio.AioRpcError as e:
            raise self._announced() or LipsyncError(e.code(), e.details() or "") from None
        if msg is grpc.aio.EOF:
            if self._ending is not None:
                raise self._announced()
            return None
        if msg.WhichOneof("payload") == "ending":
            self._ending = msg.ending           # stop sending (half-close); the status follows
            self._outgoing.put_nowait(None)
            return await self._read()
        return msg

    def _announced(self) -> LipsyncError | None:
        e = self._ending
        if e is None:
            return None
        return LipsyncError(grpc.StatusCode.__members__.get(e.code, grpc.StatusCode.UNKNOWN), e.message)

    def __aiter__(self):
        return self

    async def __anext__(self) -> gateway_pb2.LiveResponse:
        msg = await self._read()
        if msg is None:
            raise StopAsyncIteration
        if msg.WhichOneof("payload") == "ready" and not self._ready.done():
            self._ready.set_result(msg.ready)
        return msg


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of values (nearest rank below); 0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0
