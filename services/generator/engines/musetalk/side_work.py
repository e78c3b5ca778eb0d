"""One thread for a request's side work on the accelerator (reference latents, whisper features): every job
waiting when it turns to them goes in one call, and all CUDA work stays in this one thread."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from prometheus_client import Histogram

from services.generator.engines.musetalk.batcher import BatcherClosed

SIDE_SECONDS = Histogram("lipsync_generator_side_seconds", "Side work: time per call (e.g. one whisper pass for "
                         "every request and live session waiting)", ["side"],
                         buckets=(0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1))
SIDE_JOBS = Histogram("lipsync_generator_side_jobs", "Side work: jobs per call", ["side"],
                      buckets=(1, 2, 4, 8, 12, 16, 24, 32, 64))


class SideWork:
    """One thread that runs `run(jobs) -> one result (or exception) per job` over every job waiting when it turns
    to them: a burst of new requests gets one call (e.g. one whisper pass) instead of one call each, and every
    call stays in this one thread (one set of cuBLAS/cuDNN handles). `submit` returns a Future; a job whose
    Future was cancelled before it ran is skipped. gather_s: when the thread was idle, how long after the first job
    it waits for more (a burst of requests, live sessions on one frame grid); jobs that queued while a call ran go
    at once."""

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], name: str = "side-work", gather_s: float = 0.0):
        assert gather_s >= 0
        self.run = run
        self.name = name
        self.gather_s = gather_s
        self.calls: list[int] = []                # jobs per call, recent (tests, metrics)
        self._queue: "queue.SimpleQueue[tuple[Any, Future] | None]" = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Any) -> Future:
        future: Future = Future()
        with self._lock:                        # nothing lands in the queue behind the closing marker
            if self._closed:
                future.set_exception(BatcherClosed("the side work was closed"))
            else:
                self._queue.put((job, future))
        return future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run fn() in this thread, alone (not in a call of jobs): e.g. warming up the CUDA work where it will run
        (cuDNN's execution plans are cached per thread)."""
        return self.submit(_Alone(fn))

    def _loop(self) -> None:
        stop = False
        while not stop:
            try:                                 # jobs waited while the last call ran: take them, no gathering
                waiting = [self._queue.get_nowait()]
                deadline = 0.0
            except queue.Empty:                  # idle until now: gather what follows the first job
                waiting = [self._queue.get()]
                deadline = time.monotonic() + self.gather_s
            while waiting[-1] is not None:
                try:
                    waiting.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    waiting.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            stop = None in waiting
            jobs = [w for w in waiting if w is not None]
            if stop:
                for _, future in jobs:
                    future.set_exception(BatcherClosed("the side work was closed"))
                break
            jobs = [(job, f) for job, f in jobs if f.set_running_or_notify_cancel()]
            for job, future in [(j, f) for j, f in jobs if isinstance(j, _Alone)]:
                try:
                    future.set_result(job.fn())
                except Exception as e:  # noqa: BLE001 - the caller's to see
                    future.set_exception(e)
            jobs = [(j, f) for j, f in jobs if not isinstance(j, _Alone)]
            if jobs:
                self._call(jobs)

    def _call(self, jobs: list[tuple[Any, Future]]) -> None:
        self.calls = (self.calls + [len(jobs)])[-1000:]
        t0 = time.monotonic()
        try:
            results = self.run([job for job, _ in jobs])
        except Exception as e:  # noqa: BLE001 - the error goes to every job of the call
            results = [e] * len(jobs)
        SIDE_SECONDS.labels(self.name).observe(time.monotonic() - t0)
        SIDE_JOBS.labels(self.name).observe(len(jobs))
        for (_, future), result in zip(jobs, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Jobs still waiting (and later ones) get BatcherClosed; the call running now finishes."""
        with self._lock:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=5)


class _Alone:
    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
