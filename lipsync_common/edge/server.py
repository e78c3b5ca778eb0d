"""Bootstrap shared by every service: grpc.aio server, health, reflection, limits, graceful stop, JSON logs."""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from typing import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lipsync_common.edge import metrics
from lipsync_common.edge.auth import internal_interceptors
from lipsync_common.edge.config import EdgeConfig, Listen
from lipsync_common.edge.limits import LimitInterceptor

# Every message is at most this big; payloads larger than that are streamed in CHUNK_BYTES pieces.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024

GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]

# Channels between services: round_robin over every address the name resolves to. With a headless Kubernetes
# Service (`dns:///generator-headless:50053`) that is every ready pod, so one gateway spreads its long-lived
# streams over all generator replicas instead of pinning one; servers close connections after
# MAX_CONNECTION_AGE_S so that clients re-resolve and find new pods. A service that went away is tried again at
# most 2 s apart (gRPC's default backoff grows to 120 s; after a restart of 10 s the next try came up to 6 s late
# and a live session started then failed UNAVAILABLE).
CLIENT_OPTIONS: list = GRPC_OPTIONS + [
    ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
    ("grpc.dns_min_time_between_resolutions_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str | None = None) -> logging.Logger:
    """JSON logs on stderr at `level` (EdgeConfig.log_level; None: read it from the environment now)."""
    if level is None:
        level = EdgeConfig.from_env().log_level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return logging.getLogger(service)


def log_event(logger: logging.Logger, msg: str, **fields) -> None:
    logger.info(msg, extra={"fields": fields})


def make_server(name: str, edge: EdgeConfig, interceptors: Sequence = ()) -> grpc.aio.Server:
    """A grpc.aio server with the shared options, connection age, metrics and the call limit."""
    age_s = edge.max_connection_age_s
    server_options = GRPC_OPTIONS + ([("grpc.max_connection_age_ms", age_s * 1000),
                                      # in-flight streams (a long job) may finish on the old connection
                                      ("grpc.max_connection_age_grace_ms", 15 * 60 * 1000)] if age_s > 0 else [])
    return grpc.aio.server(options=server_options, interceptors=[
        # outermost first: metrics see every call; the limit wraps what authentication lets through
        metrics.MetricsInterceptor(name), LimitInterceptor(name, edge.max_calls), *interceptors])


async def serve(
    *,
    name: str,
    listen: Listen,
    service_names: Sequence[str],
    add_servicers: Callable[[grpc.aio.Server], None],
    warmup: Callable[[], None] | None = None,
    on_stop: Callable[[], Awaitable[None] | None] | None = None,
    interceptors: Sequence = (),
    edge: EdgeConfig | None = None,
) -> None:
    """Run one service until SIGTERM/SIGINT.

    Health is NOT_SERVING until `warmup` (model loading) has finished; on a stop signal health goes back to
    NOT_SERVING first, new calls are refused and running ones get `listen.grace_s` seconds to finish.
    `edge`: the shared settings (None: read from the environment here, once).
    """
    host, port, port_file, grace_s = listen.host, listen.port, listen.port_file, listen.grace_s
    log = logging.getLogger(name)
    edge = edge if edge is not None else EdgeConfig.from_env()
    server = make_server(name, edge, interceptors)
    metrics.serve_metrics(edge.metrics_port)
    metrics.watch_gc(name)
    add_servicers(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(list(service_names) + [health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"could not bind {host}:{port}")

    async def set_all(status) -> None:
        for svc in list(service_names) + [""]:
            await health_servicer.set(svc, status)

    await set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log_event(log, "listening", host=host, port=bound)
    if port_file:
        _write_port(port_file, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.perf_counter()
    if warmup is not None:
        await asyncio.to_thread(warmup)
    frozen = metrics.freeze_gc(name) if edge.gc_freeze else 0
    await set_all(health_pb2.HealthCheckResponse.SERVING)
    log_event(log, "serving", warmup_s=round(time.perf_counter() - t0, 3), gc_frozen_objects=frozen)
    await stop.wait()
    log_event(log, "draining", grace_s=grace_s)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_s)
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
    gc.unfreeze()          # the process's teardown frees the frozen objects too (native bindings check for leaks)
    log_event(log, "stopped")


def _write_port(path: str, port: int) -> None:
    """The bound port, written whole (a reader never sees a partial file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, path)


def run_internal(name: str, listen: Listen, edge: EdgeConfig, service, add_servicer: Callable[[grpc.aio.Server], None],
                 warmup: Callable[[], None] | None = None,
                 on_stop: Callable[[], Awaitable[None] | None] | None = None) -> None:
    """The main of an internal service: `serve` its gRPC `service` (a service descriptor) until a stop signal,
    behind the internal token. Call setup_logging first."""
    asyncio.run(serve(name=name, listen=listen, edge=edge, service_names=[service.full_name],
                      add_servicers=add_servicer, warmup=warmup, on_stop=on_stop,
                      interceptors=internal_interceptors(edge.internal_token)))
