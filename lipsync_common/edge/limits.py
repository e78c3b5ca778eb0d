"""Concurrency limits per service: a call over the limit gets RESOURCE_EXHAUSTED at once, with a retry hint
(`retry-after-s` trailing metadata and the message), instead of queueing without bound.

MAX_CALLS (per process, default 64, 0 = no limit) caps the calls of the service's own RPCs running at once; health and
reflection are not counted.
"""
from __future__ import annotations

import inspect

import grpc

from lipsync_common.edge.auth import deny_handler
from lipsync_common.edge.metrics import rewrap


class LimitInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str, max_calls: int, retry_after_s: int = 1):
        self.service, self.max_calls, self.retry_after_s = service, max_calls, retry_after_s
        self.running = 0

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc.") or self.max_calls <= 0:
            return handler
        if self.running >= self.max_calls:
            return deny_handler(handler, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the {self.service} service is at its limit of {self.max_calls} concurrent calls; "
                                f"retry in {self.retry_after_s} s", (("retry-after-s", str(self.retry_after_s)),))
        self.running += 1   # counted from here: the event loop runs one interceptor at a time
        limiter = self

        def wrap(behavior):
            if inspect.isasyncgenfunction(behavior):
                async def gen(request, context):
                    try:
                        async for item in behavior(request, context):
                            yield item
                    finally:
                        limiter.running -= 1
                return gen

            async def call(request, context):
                try:
                    return await behavior(request, context)
                finally:
                    limiter.running -= 1
            return call

        return rewrap(handler, lambda behavior, *_: wrap(behavior))
