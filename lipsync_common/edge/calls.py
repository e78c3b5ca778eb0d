"""Helpers for the calls themselves: ending a client-streaming call with a status."""
from __future__ import annotations

import asyncio

import grpc


async def abort(context, requests, code: grpc.StatusCode, message: str, drain_s: float = 10.0) -> None:
    """End a client-streaming call with a status, after reading what the client is still sending.

    A status sent while the client is still writing may reach it as INTERNAL "Internal error from Core"
    instead of the code we chose, so the rest of the request stream is consumed first (for at most drain_s).
    """
    async def drain() -> None:
        async for _ in requests:
            pass

    try:
        await asyncio.wait_for(drain(), drain_s)
    except Exception:  # noqa: BLE001 - a broken or slow stream: answer anyway
        pass
    await context.abort(code, message)


def status(name: str) -> grpc.StatusCode:
    """The gRPC status of a plain module's error code name ("INVALID_ARGUMENT"): the plain modules (the
    gateway's upload, batch and jobs, the edge's uploads) name their statuses and import no gRPC."""
    return grpc.StatusCode[name]
