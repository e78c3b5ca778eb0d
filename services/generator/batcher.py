"""Batching across concurrent requests for one accelerator: load once, run many, keep each request's order.

Requests put their items in one FIFO queue; a single worker thread takes up to `max_batch` items (waiting at
most `max_wait_s` after the first for more to arrive), runs them as one batch, and hands each result back to
its request. A request's items enter the queue in order and the queue is FIFO, so its results come back in
order; a cancelled request's items are skipped without running.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from prometheus_client import Gauge, Histogram

BATCH_SIZE = Histogram("lipsync_generator_batch_size", "Frames per accelerator batch", ["batcher"],
                       buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128))
QUEUE_DEPTH = Gauge("lipsync_generator_queue_depth", "Frames waiting for a batch", ["batcher"])
BATCH_SECONDS = Histogram("lipsync_generator_batch_seconds", "Time per batch", ["batcher"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

_DONE = object()


@dataclass
class _Request:
    results: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    cancelled: bool = False


class Batcher:
    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int = 32,
                 max_wait_s: float = 0.004, name: str = "batcher"):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: "queue.Queue[tuple[_Request, Any]]" = queue.Queue()
        self.name = name
        self.batch_sizes: list[int] = []          # recent batch sizes, for metrics and tests
        self.busy_s = 0.0                         # time spent in run_batch (accelerator busy, roughly)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Iterator[Any] | Sequence[Any], window: int | None = None) -> Iterator[Any]:
        """Queue a request's items; iterate the returned generator for its results, in order.

        At most `window` items of a request wait in the queue at once (default 4 x max_batch: a lone request
        keeps its next batches queued while the current one runs), so concurrent
        requests share the batches instead of queueing behind each other. Closing the generator early (or an
        exception in the consumer) cancels the rest of the request."""
        return self._results(_Request(), iter(items), window or 4 * self.max_batch)

    def _results(self, req: _Request, items: Iterator[Any], window: int) -> Iterator[Any]:
        pending = 0
        try:
            for item in items:
                self.queue.put((req, item))
                pending += 1
                if pending < window:
                    continue
                yield self._get(req)
                pending -= 1
            for _ in range(pending):
                yield self._get(req)
        finally:
            req.cancelled = True

    @staticmethod
    def _get(req: _Request) -> Any:
        result = req.results.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def _take(self) -> list[tuple[_Request, Any]]:
        first = self.queue.get()
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=max(timeout, 0)) if timeout > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while not self._stop:
            batch = [(req, item) for req, item in self._take() if req is not None and not req.cancelled]
            if not batch:
                continue
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            BATCH_SIZE.labels(self.name).observe(len(batch))
            QUEUE_DEPTH.labels(self.name).set(self.queue.qsize())
            t0 = time.perf_counter()
            try:
                outputs = self.run_batch([item for _, item in batch])
                self.busy_s += time.perf_counter() - t0
                BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - the error goes to every request in the batch
                for req, _ in batch:
                    req.results.put(e)
                continue
            for (req, _), out in zip(batch, outputs):
                req.results.put(out)

    def close(self) -> None:
        self._stop = True
        self.queue.put((None, None))
        self._thread.join(timeout=5)
