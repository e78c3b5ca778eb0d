"""Batching across concurrent requests for one accelerator, scheduled fairly, with the next batch queued on the
accelerator while the previous one's results are handed back.

Each request keeps its own queue of items (at most `window` waiting). A single worker thread builds every batch:
1. head start: a new interactive request's first `head_frames` items go ahead of everything else (but live
   frames), in a small batch not filled up with streaming frames, so its first frames (and so the first MP4 chunk)
   come back soon even when many requests are streaming;
2. then weighted fair queueing: each request carries a virtual time that grows by 1/weight per item served
   (interactive 4, batch 1) and the item of the request with the smallest virtual time goes next. A request that
   joins starts at the smallest virtual time of those waiting, so it neither jumps the queue for long nor waits
   for others to drain; every waiting request is served within a bounded number of batches (nothing starves);
3. finishing first: a request with at most `finish_items` left (its total given to submit) goes before the fair
   choice when that one is of its priority and came later (fewest left first). Requests that arrived together
   then end one after another instead of all in the last batch, so their renders' x264 drains overlap the GPU's
   work instead of following it. It jumps each later request once by at most finish_items (no one starves).
A request's items are taken in order and batches finish in order, so its results come back in order. A
cancelled request's items are dropped without running.

`launch(items)` may return the outputs (synchronous) or a handle: `handle()` waits and returns the outputs,
`handle.done()` says whether the accelerator finished. With a handle the worker builds and launches batch N+1
while batch N runs, and hands out batch N's results while N+1 runs, so the accelerator does not wait on Python.
With `cost(n)` (expected seconds of a batch of n items) N+1 is launched only `launch_lead_s` before N should end:
until then it keeps gathering, so a new request's first frames (or a live frame) that come while N runs go in N+1.
While a new interactive request prepares its first frames (`expecting()`: its whisper pass), other requests'
batches hold at most `pending_head_batch` items, so its head waits behind a short batch, not a full one.
A batch that holds live frames holds at most `live_batch` items (oldest live frames first; the engine passes half
of max_batch), with `live_sizes` only as many as the smallest compiled size that holds its live frames (6 live
frames and 2 others run in 15 ms instead of 16 in 26 on an H200); while live frames flow, batches without any hold
at most `beside_live_batch` (a live frame that comes while one runs waits for it). BENCHMARKS.md measures both.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from prometheus_client import Gauge, Histogram

from services.generator.engines.base import BATCH, INTERACTIVE, LIVE

BATCH_SIZE = Histogram("lipsync_generator_batch_size", "Frames per accelerator batch", ["batcher"],
                       buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128))
QUEUE_DEPTH = Gauge("lipsync_generator_queue_depth", "Frames waiting for a batch", ["batcher"])
LAUNCH_LEAD = Histogram("lipsync_generator_launch_lead_seconds", "How long before the running batch was due to end "
                        "(by the sizes' timings) the next one was launched; 0: after it had ended (the accelerator "
                        "waited for it)", ["batcher"], buckets=(0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1))
BATCH_SECONDS = Histogram("lipsync_generator_batch_seconds", "Time per batch", ["batcher"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
WEIGHTS = {INTERACTIVE: 4.0, BATCH: 1.0, LIVE: 16.0}
POLL_S = 0.001          # how often the worker looks whether the running batch finished
LIVE_RECENT_S = 0.5     # live frames "flow" while one was queued this recently (beside_live_batch)


class BatcherClosed(RuntimeError):
    """The batcher was closed (the server is stopping) before the request's items ran."""


@dataclass(eq=False)
class _Request:
    priority: str
    arrival: int
    head: int                       # items still to go ahead of streaming requests
    left: int = -1                  # items not yet taken, when the total is known (-1: unknown)
    items: collections.deque = field(default_factory=collections.deque)
    results: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    vtime: float = 0.0
    cancelled: bool = False

    @property
    def weight(self) -> float:
        return WEIGHTS[self.priority]


class Batcher:
    def __init__(self, launch: Callable[[list[Any]], Any], max_batch: int = 32, max_wait_s: float = 0.004,
                 name: str = "batcher", head_frames: int | None = None,
                 cost: Callable[[int], float] | None = None, launch_lead_s: float = 0.010,
                 pending_head_batch: int = 0, live_batch: int = 0, beside_live_batch: int = 0,
                 live_sizes: Sequence[int] = (), finish_items: int = 0):
        assert max_batch >= 1 and max_wait_s >= 0 and launch_lead_s >= 0 and pending_head_batch >= 0
        assert live_batch >= 0 and beside_live_batch >= 0 and all(n >= 1 for n in live_sizes) and finish_items >= 0
        self.finish_items = finish_items         # see the module's docstring (3.); 0: off
        self.launch = launch
        self.cost = cost
        # with cost(): the next batch is launched this long before the running one should end (margin for the
        # wake-up, the GIL and the launch itself)
        self.launch_lead_s = launch_lead_s
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        # a new request's first message of crops (8 frames) opens its MP4 on the render side: that much goes ahead
        self.head_frames = max(1, max_batch // 4) if head_frames is None else head_frames
        # while a new request is expected (expecting()), other batches hold at most this many items (0: max_batch)
        self.pending_head_batch = min(max_batch, pending_head_batch or max_batch)
        self._expected = 0                        # interactive requests preparing their first items
        self.live_batch = min(max_batch, live_batch or max_batch)   # items in a batch that holds live frames
        self.beside_live_batch = min(max_batch, beside_live_batch or max_batch)   # see the module's docstring
        self.live_sizes = sorted(live_sizes)
        self._live_at = -1e9                      # when a live frame was last queued (monotonic)
        self.name = name
        self.batch_sizes: list[int] = []          # recent batch sizes, for metrics and tests
        self.busy_s = 0.0                         # time from launch to results (accelerator busy, roughly)
        self._cond = threading.Condition()
        self._active: list[_Request] = []         # requests that may still submit items
        self._waiting = 0                         # items queued over all requests
        self._vclock = 0.0                        # virtual time of the last item served
        self._arrivals = itertools.count()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ---- request side (runs in the caller's thread)

    def submit(self, items, window: int | None = None, priority: str = INTERACTIVE,
               expected: "_Expected | None" = None, head: int | None = None,
               total: int | None = None) -> Iterator[Any]:
        """Queue a request's items; iterate the returned generator for its results, in order.

        At most `window` items of a request wait at once (default 4 x max_batch: a lone request keeps its next
        batches queued while the current one runs). Closing the generator early (or an exception in the
        consumer) cancels the rest of the request. `expected` (from expecting()) ends once its first item is
        queued. head: this interactive request's head start in items (default head_frames). total: how many items
        `items` yields (lets its last finish_items go first, see the module's docstring)."""
        if priority not in WEIGHTS:
            raise ValueError(f"unknown priority {priority!r}; use {INTERACTIVE!r} or {BATCH!r}")
        req = _Request(priority, next(self._arrivals),
                       (self.head_frames if head is None else head) if priority == INTERACTIVE else 0,
                       left=-1 if total is None else total)
        return self._results(req, iter(items), window or 4 * self.max_batch, expected)

    @contextlib.contextmanager
    def expecting(self, priority: str = INTERACTIVE) -> Iterator["_Expected"]:
        """Around a new request's preparation (and its submit): while it lasts and until its first item is
        queued, other requests' batches are cut to pending_head_batch. Batch requests announce nothing."""
        token = _Expected(self, priority == INTERACTIVE)
        try:
            yield token
        finally:
            token.release()

    def open_stream(self, on_result: Callable[[Any], None]) -> "LiveHandle":
        """A live request: items are put one at a time (`put`), each result (or exception) goes to on_result, in
        order, from the worker thread. Its items go ahead of every other request's (see _pick)."""
        req = _Request(LIVE, next(self._arrivals), 0, results=_Callback(on_result))
        with self._cond:
            if self._stop:
                raise BatcherClosed(f"{self.name} is closed")
            req.vtime = self._vclock
            self._active.append(req)
        return LiveHandle(self, req)

    def _results(self, req: _Request, items: Iterator[Any], window: int,
                 expected: "_Expected | None" = None) -> Iterator[Any]:
        with self._cond:
            if self._stop:
                raise BatcherClosed(f"{self.name} is closed")
            waiting = [r.vtime for r in self._active if r.items]
            req.vtime = min(waiting) if waiting else self._vclock
            self._active.append(req)
        pending = 0
        try:
            for item in items:
                with self._cond:
                    req.items.append(item)
                    self._waiting += 1
                    if expected is not None:
                        expected.release_locked()
                    self._cond.notify()
                pending += 1
                if pending < window:
                    continue
                yield self._get(req)
                pending -= 1
            for _ in range(pending):
                yield self._get(req)
        finally:
            with self._cond:
                if expected is not None:
                    expected.release_locked()
                req.cancelled = True
                self._waiting -= len(req.items)
                req.items.clear()
                self._active.remove(req)

    @staticmethod
    def _get(req: _Request) -> Any:
        result = req.results.get()
        if isinstance(result, BaseException):
            raise result
        return result

    # ---- worker side

    def _pick(self) -> list[tuple[_Request, Any]]:
        """Up to max_batch items: head starts first (oldest request first), then weighted fair queueing with
        finishing requests first. Called with the lock held."""
        taken: list[tuple[_Request, Any]] = []

        def take(r: _Request) -> None:
            taken.append((r, r.items.popleft()))
            r.vtime += 1.0 / r.weight
            r.left -= r.left > 0
            self._vclock = max(self._vclock, r.vtime)

        # live frames first, oldest first: each is fed when the session's clock is a few frames from showing it,
        # so the oldest is the one due soonest (deadline order)
        for r in sorted((r for r in self._active if r.priority == LIVE and r.items), key=lambda r: r.items[0][0]):
            while r.items and len(taken) < self.live_batch:
                taken.append((r, r.items.popleft()[1]))
        fit = next((s for s in self.live_sizes if s >= len(taken)), self.live_batch)   # the size that holds them
        cap = min(self.live_batch, fit) if taken else self.max_batch
        heads = 0
        for r in self._active:                    # in arrival order
            while r.head > 0 and r.items and len(taken) < cap:
                take(r)
                r.head -= 1
                heads += 1
        limit = min(cap, self._full())
        while len(taken) < limit and not heads:
            ready = [r for r in self._active if r.items]
            if not ready:
                break
            fair = min(ready, key=lambda r: (r.vtime, r.arrival))
            ending = [r for r in ready if r.priority == fair.priority and r.arrival <= fair.arrival
                      and 0 < r.left <= self.finish_items]
            take(min(ending, key=lambda r: (r.left, r.arrival), default=fair))
        self._waiting -= len(taken)
        return taken

    def _full(self) -> int:
        """A full batch now (lock held): pending_head_batch while a new request is expected, else max_batch; at
        most beside_live_batch while live frames flow."""
        full = self.pending_head_batch if self._expected else self.max_batch
        if self.beside_live_batch < full and time.monotonic() - self._live_at < LIVE_RECENT_S:
            return self.beside_live_batch
        return full

    def _take(self, running: "_Running | None") -> list[tuple[_Request, Any]]:
        """The next batch. With nothing running: wait for an item, then up to max_wait_s for a full batch.
        With a batch running: gather items until the batch is full and the running one is near its expected end
        (with cost(); else as soon as it is full), or until the running one is done (it is launched behind it on
        the accelerator); an empty list when it is done and nothing waits."""
        with self._cond:
            if running is None:
                while self._waiting == 0 and not self._stop:
                    self._cond.wait()
                deadline = time.monotonic() + self.max_wait_s
                while self._waiting < self._full() and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            else:
                launch_at = running.ends - self.launch_lead_s
                while (not self._stop and not running.handle.done()
                       and (self._waiting < self._full() or time.perf_counter() < launch_at)):
                    self._cond.wait(POLL_S)
            if self._stop:
                return []
            batch = self._pick()
            QUEUE_DEPTH.labels(self.name).set(self._waiting)
            return batch

    def _start(self, batch: list[tuple[_Request, Any]]):
        """Launch a batch; returns (batch, handle, t0) or None when it failed at launch (requests told)."""
        self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
        BATCH_SIZE.labels(self.name).observe(len(batch))
        t0 = time.perf_counter()
        try:
            return _Running(batch, _Handle.of(self.launch([item for _, item in batch])), t0)
        except Exception as e:  # noqa: BLE001 - the error goes to every request in the batch
            for req, _ in batch:
                req.results.put(e)
            return None

    def _finish(self, running: "_Running") -> None:
        batch, handle, t0 = running.batch, running.handle, running.t0
        try:
            outputs = handle()
        except Exception as e:  # noqa: BLE001 - the error goes to every request in the batch
            for req, _ in batch:
                req.results.put(e)
            return
        elapsed = time.perf_counter() - t0
        self.busy_s += elapsed
        BATCH_SECONDS.labels(self.name).observe(elapsed)
        for (req, _), out in zip(batch, outputs):
            if not req.cancelled:
                req.results.put(out)

    def _loop(self) -> None:
        running = None
        while not self._stop:
            batch = self._take(running)
            if batch and running is not None:
                self._observe_lead(running)
            started = self._start(batch) if batch else None
            if running is not None:
                self._finish(running)
            if started is not None:     # it runs once the one before it is done (now, after _finish)
                started.ends = (max(started.t0, time.perf_counter()) + self.cost(len(started.batch))
                                if self.cost else 0.0)
            running = started
        if running is not None:         # closed: the batch on the accelerator is handed out, the rest is not run
            self._finish(running)
        with self._cond:
            for req in self._active:
                req.results.put(BatcherClosed(f"{self.name} was closed"))

    def _observe_lead(self, running: "_Running") -> None:
        """The next batch is about to be launched behind `running`: how long before its due end (unknown without
        cost(), then not observed; past it but still running: 1 us), or 0 when it has ended already."""
        if running.handle.done():
            LAUNCH_LEAD.labels(self.name).observe(0.0)
        elif running.ends:
            LAUNCH_LEAD.labels(self.name).observe(max(1e-6, running.ends - time.perf_counter()))

    def close(self) -> None:
        """Stop the worker thread; requests still waiting get BatcherClosed instead of their remaining results."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _Expected:
    """A new request announced to the batcher (counted in _expected until released, once)."""

    def __init__(self, batcher: Batcher, counts: bool):
        self.batcher, self.counted = batcher, counts
        if counts:
            with batcher._cond:
                batcher._expected += 1

    def release_locked(self) -> None:
        if self.counted:
            self.counted = False
            self.batcher._expected -= 1
            self.batcher._cond.notify()

    def release(self) -> None:
        with self.batcher._cond:
            self.release_locked()


class _Callback:
    def __init__(self, fn: Callable[[Any], None]):
        self.put = fn


class LiveHandle:
    def __init__(self, batcher: Batcher, req: _Request):
        self.batcher, self.req = batcher, req

    def put(self, item: Any) -> None:
        b = self.batcher
        with b._cond:
            if self.req.cancelled or b._stop:
                raise BatcherClosed(f"{b.name}: the stream was closed")
            b._live_at = time.monotonic()
            self.req.items.append((b._live_at, item))
            b._waiting += 1
            b._cond.notify()

    def close(self) -> None:
        """Items still queued are dropped; a batch already running hands nothing more to on_result."""
        b = self.batcher
        with b._cond:
            if self.req.cancelled:
                return
            self.req.cancelled = True
            b._waiting -= len(self.req.items)
            self.req.items.clear()
            if self.req in b._active:
                b._active.remove(self.req)


@dataclass(eq=False)
class _Running:
    batch: list
    handle: "_Handle"
    t0: float
    ends: float = 0.0               # when it should be done on the accelerator (with cost(); 0 = unknown)


class _Handle:
    """Adapts what `launch` returned: outputs (already done) or a handle with __call__ and done()."""

    def __init__(self, outputs: Sequence[Any] | None = None, handle=None):
        self.outputs, self.handle = outputs, handle

    @classmethod
    def of(cls, value) -> "_Handle":
        return cls(handle=value) if callable(value) else cls(outputs=value)

    def done(self) -> bool:
        return self.handle is None or self.handle.done()

    def __call__(self) -> Sequence[Any]:
        return self.outputs if self.handle is None else self.handle()
