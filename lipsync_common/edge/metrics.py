"""Prometheus metrics shared by every service: an RPC interceptor and the /metrics HTTP endpoint.

Per service (label `service`): lipsync_rpc_total{method,code}, lipsync_rpc_seconds{method} (histogram),
lipsync_rpc_in_flight{method}. Services add their own (generator batch size, queue depth, frames) next to the
work they measure. `METRICS_PORT` (0 = off) serves them on /metrics; the pods carry scrape annotations.
"""
from __future__ import annotations

import gc
import time

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_TOTAL = Counter("lipsync_rpc_total", "RPCs handled, by final status", ["service", "method", "code"])
RPC_SECONDS = Histogram("lipsync_rpc_seconds", "RPC wall time", ["service", "method"],
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600))
RPC_IN_FLIGHT = Gauge("lipsync_rpc_in_flight", "RPCs running now", ["service", "method"])
FRAMES = Counter("lipsync_frames_total", "Frames processed", ["service", "stage"])
GC_PAUSE = Histogram("lipsync_gc_pause_seconds", "Python garbage-collector passes (every thread of the process "
                     "waits)", ["service", "generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
GC_FROZEN = Gauge("lipsync_gc_frozen_objects", "Objects moved out of the collector's passes after warm-up",
                  ["service"])


def watch_gc(service: str) -> None:
    """Time every collector pass into lipsync_gc_pause_seconds{generation}: a full pass over a process holding
    torch and compiled models takes ~0.2 s on the 2-core machine, a stall for every frame in flight."""
    started: list[float] = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            GC_PAUSE.labels(service, str(info.get("generation", -1))).observe(time.perf_counter() - started.pop())

    gc.callbacks.append(callback)


def freeze_gc(service: str) -> int:
    """After warm-up: what is alive now (libraries, models, compiled code) is collected once more, then left out
    of every later pass (gc.freeze), so a full pass scans only what requests made. Returns the frozen count."""
    gc.collect()
    gc.freeze()
    GC_FROZEN.labels(service).set(gc.get_freeze_count())
    return gc.get_freeze_count()


def _code(context, error: BaseException | None) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is None or code == grpc.StatusCode.OK:
        if error is None:
            return "OK"
        return "CANCELLED" if isinstance(error, BaseException) and type(error).__name__ == "CancelledError" \
            else "UNKNOWN"
    return code.name if hasattr(code, "name") else str(code)


_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler, False, False),
          ("stream_unary", grpc.stream_unary_rpc_method_handler, True, False),
          ("unary_stream", grpc.unary_stream_rpc_method_handler, False, True),
          ("stream_stream", grpc.stream_stream_rpc_method_handler, True, True))


def rewrap(handler, wrap):
    """A method handler of the same kind as `handler`, whose behavior is
    wrap(behavior, streaming_request, streaming_response). Shared by the server interceptors."""
    for attr, make, streaming_request, streaming_response in _KINDS:
        behavior = getattr(handler, attr)
        if behavior:
            return make(wrap(behavior, streaming_request, streaming_response), handler.request_deserializer,
                        handler.response_serializer)
    return handler


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC of a grpc.aio server, streaming ones included."""

    def __init__(self, service: str):
        self.service = service

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc."):   # health and reflection: not ours
            return handler
        method = details.method.rsplit("/", 1)[-1]
        labels = (self.service, method)

        def start():
            RPC_IN_FLIGHT.labels(*labels).inc()
            return time.perf_counter()

        def done(t0, context, error):
            RPC_IN_FLIGHT.labels(*labels).dec()
            RPC_SECONDS.labels(*labels).observe(time.perf_counter() - t0)
            RPC_TOTAL.labels(self.service, method, _code(context, error)).inc()

        def wrap_unary(behavior):
            async def call(request_or_iterator, context):
                t0, error = start(), None
                try:
                    return await behavior(request_or_iterator, context)
                except BaseException as e:
                    error = e
                    raise
                finally:
                    done(t0, context, error)
            return call

        def wrap_stream(behavior):
            async def call(request_or_iterator, context):
                t0, error = start(), None
                try:
                    async for item in behavior(request_or_iterator, context):
                        yield item
                except BaseException as e:
                    error = e
                    raise
                finally:
                    done(t0, context, error)
            return call

        return rewrap(handler, lambda behavior, _, streaming: (wrap_stream if streaming else wrap_unary)(behavior))


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    if port > 0:
        start_http_server(port, addr=host)
