"""Helpers for the calls themselves: ending a client-streaming call with a status."""
from __future__ import annotations

import asyncio

import grpc


# A live (bidirectional) call's client waits for the server's answer before it sends more (`ready` first) or sends
# at the pace of speech: it does not end its stream, so its error is sent once nothing came for a moment.
LIVE_DRAIN = {"drain_s": 2.0, "idle_s": 0.25}
# Between a live session's `ending` message and its status: a client that is still sending reads the announcement
# and stops before the status comes (a write that meets the status turns it into INTERNAL in gRPC Python's asyncio
# client: grpc/grpc#36066).
LIVE_ENDING_S = 0.25


async def abort(context, requests, code: grpc.StatusCode, message: str, drain_s: float = 10.0,
                idle_s: float | None = None) -> None:
    """End a client-streaming call with a status, after reading what the client is still sending.

    A status sent while the client is still writing may reach it as INTERNAL "Internal error from Core"
    instead of the code we chose, so the rest of the request stream is consumed first (for at most drain_s; with
    idle_s, only while each message comes within idle_s of the last).
    """
    async def drain() -> None:
        it = aiter(requests)
        while True:
            try:
                await asyncio.wait_for(anext(it), idle_s)
            except StopAsyncIteration:
                return

    try:
        await asyncio.wait_for(drain(), drain_s)
    except Exception:  # noqa: BLE001 - a broken or slow stream: answer anyway
        pass
    await context.abort(code, message)


def status(name: str) -> grpc.StatusCode:
    """The gRPC status of a plain module's error code name ("INVALID_ARGUMENT"): the plain modules (the
    gateway's upload, batch and jobs, the edge's uploads) name their statuses and import no gRPC."""
    return grpc.StatusCode[name]
