import threading
import time

import pytest

from services.generator.engines.musetalk import batcher as batcher_module
from services.generator.engines.musetalk.batcher import Batcher, BatcherClosed


def test_order_and_isolation_under_concurrent_requests():
    seen_batches = []

    def run(items):
        seen_batches.append(len(items))
        time.sleep(0.002)
        return [(rid, i, x * 2) for rid, i, x in items]

    b = Batcher(run, max_batch=8, max_wait_s=0.01)
    results = {}

    def client(rid, n):
        results[rid] = list(b.submit([(rid, i, rid * 1000 + i) for i in range(n)], window=4))

    threads = [threading.Thread(target=client, args=(rid, 20 + 7 * rid)) for rid in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    b.close()
    for rid in range(5):
        assert results[rid] == [(rid, i, 2 * (rid * 1000 + i)) for i in range(20 + 7 * rid)]
    assert max(seen_batches) > 4, "items of different requests share batches"
    assert max(seen_batches) <= 8


def test_a_failing_batch_fails_its_requests_only():
    def run(items):
        if any(x < 0 for x in items):
            raise RuntimeError("bad item")
        return items

    b = Batcher(run, max_batch=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="bad item"):
        list(b.submit([1, 2, -1]))
    assert list(b.submit([5, 6])) == [5, 6]
    b.close()


def test_closing_a_request_early_skips_its_remaining_items():
    ran = []

    def run(items):
        ran.extend(items)
        time.sleep(0.01)
        return items

    b = Batcher(run, max_batch=2, max_wait_s=0.0)
    gen = b.submit(range(100), window=4)
    assert next(gen) == 0
    gen.close()
    time.sleep(0.1)
    b.close()
    assert len(ran) < 10


def _slow_runner(seen, delay=0.01):
    def run(items):
        seen.append(list(items))
        time.sleep(delay)
        return items
    return run


def _batch_of(seen, tag):
    """Index of the first batch that holds an item of request `tag`."""
    return next(k for k, batch in enumerate(seen) if any(item[0] == tag for item in batch))


def test_a_new_request_goes_ahead_of_requests_already_streaming():
    seen = []
    b = Batcher(_slow_runner(seen), max_batch=8, max_wait_s=0.0, head_frames=8)
    streams = [b.submit(((tag, i) for i in range(400)), window=32) for tag in ("a", "b", "c")]
    for s in streams:           # three requests streaming, each with 32 items queued
        next(s)
    before = len(seen)
    newcomer = list(b.submit([("new", i) for i in range(8)], window=8))
    first = _batch_of(seen, "new")
    for s in streams:
        s.close()
    b.close()
    assert newcomer == [("new", i) for i in range(8)]
    # its first frames ran in the next batch or the one after (one may already be running), not behind the
    # ~96 items queued before it
    assert first - before <= 2, (first, before)
    assert all(item[0] == "new" for item in seen[first]), seen[first]


def test_batch_priority_yields_to_interactive_but_does_not_starve():
    seen = []
    b = Batcher(_slow_runner(seen, 0.002), max_batch=10, max_wait_s=0.0, head_frames=0)
    out = {}

    def client(tag, priority, n):
        out[tag] = list(b.submit(((tag, i) for i in range(n)), window=40, priority=priority))

    threads = [threading.Thread(target=client, args=("bulk", "batch", 200)),
               threading.Thread(target=client, args=("live", "interactive", 200))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    b.close()
    assert out["bulk"] == [("bulk", i) for i in range(200)] and out["live"] == [("live", i) for i in range(200)]
    # while both wait, interactive gets about 4 items for every batch item, and batch still gets some
    shared = [batch for batch in seen if {item[0] for item in batch} == {"bulk", "live"}]
    live = sum(item[0] == "live" for batch in shared for item in batch)
    bulk = sum(item[0] == "bulk" for batch in shared for item in batch)
    assert shared and bulk > 0 and 3 <= live / bulk <= 5, (live, bulk)


def test_no_request_starves_under_a_stream_of_newcomers():
    seen = []
    b = Batcher(_slow_runner(seen, 0.001), max_batch=8, max_wait_s=0.0, head_frames=4)
    old = b.submit((("old", i) for i in range(60)), window=16, priority="batch")
    # the old bulk request finishes although newcomers keep arriving
    assert _alongside_newcomers(b, old) == [("old", i) for i in range(60)]


def _alongside_newcomers(b, old, total=None) -> list:
    """Iterate `old` to its end while three threads keep submitting new 12-item requests (total: given to submit);
    fails when that takes 20 s."""
    got = [next(old)]
    stop = threading.Event()

    def newcomers():
        k = 0
        while not stop.is_set():
            list(b.submit([(f"n{k}", i) for i in range(12)], window=12, total=total))
            k += 1

    threads = [threading.Thread(target=newcomers) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    for item in old:
        got.append(item)
        assert time.time() < deadline
    stop.set()
    for t in threads:
        t.join(10)
    b.close()
    return got


class _Pending:
    """A launched batch that finishes after `delay` (as an accelerator would)."""

    def __init__(self, items, delay, log):
        self.items, self.end, self.log = items, time.monotonic() + delay, log

    def done(self):
        return time.monotonic() >= self.end

    def __call__(self):
        time.sleep(max(0.0, self.end - time.monotonic()))
        self.log.append(("collect", self.items[0]))
        return [x * 10 for x in self.items]


def test_the_next_batch_is_launched_before_the_previous_is_collected():
    log = []

    def launch(items):
        log.append(("launch", items[0]))
        return _Pending(items, 0.02, log)

    b = Batcher(launch, max_batch=4, max_wait_s=0.0)
    assert list(b.submit(range(16), window=16)) == [x * 10 for x in range(16)]
    b.close()
    launches = [i for i, e in enumerate(log) if e[0] == "launch"]
    collects = [i for i, e in enumerate(log) if e[0] == "collect"]
    assert len(launches) >= 2 and launches[1] < collects[0], log


def test_with_costs_the_next_batch_is_still_launched_before_the_previous_is_collected():
    log = []

    def launch(items):
        log.append(("launch", items[0]))
        return _Pending(items, 0.3, log)

    # expected 0.1 s: it is launched ~0.1 s into the running batch, long before that one's 0.3 s are up
    b = Batcher(launch, max_batch=4, max_wait_s=0.0, head_frames=0, cost=lambda n: 0.1)
    assert list(b.submit(range(12), window=12)) == [x * 10 for x in range(12)]
    b.close()
    launches = [i for i, e in enumerate(log) if e[0] == "launch"]
    collects = [i for i, e in enumerate(log) if e[0] == "collect"]
    assert len(launches) == 3 and launches[1] < collects[0], log


def test_a_new_request_first_frames_run_in_a_small_batch_of_their_own():
    seen = []
    b = Batcher(_slow_runner(seen, 0.001), max_batch=16, max_wait_s=0.05, head_frames=4)
    assert list(b.submit([("a", i) for i in range(40)], window=40)) == [("a", i) for i in range(40)]
    b.close()
    # the head alone (it comes back after a batch of 4, not of 16), then full batches
    assert [len(batch) for batch in seen] == [4, 16, 16, 4], [len(batch) for batch in seen]


def test_the_launch_lead_says_whether_the_accelerator_waited():
    from prometheus_client import REGISTRY

    def count(name, le):
        return REGISTRY.get_sample_value("lipsync_generator_launch_lead_seconds_bucket", {"batcher": name, "le": le})

    # a device that runs one batch at a time, 0.3 s each, timed at 0.15 s: each next batch is launched behind the
    # running one, long before that one ends
    free_at = [0.0]

    def launch(items):
        pending = _Pending(items, 0.0, [])
        pending.end = free_at[0] = max(time.monotonic(), free_at[0]) + 0.3
        return pending
    behind = Batcher(launch, max_batch=4, max_wait_s=0.0, head_frames=0, cost=lambda n: 0.15, name="lead-behind")
    assert list(behind.submit(range(12), window=12)) == [x * 10 for x in range(12)]
    behind.close()
    assert count("lead-behind", "+Inf") == 2 and count("lead-behind", "0.0") == 0
    # synchronous launches (the CPU): every next batch came after the one before had ended
    sync = Batcher(lambda items: items, max_batch=4, max_wait_s=0.0, head_frames=0, cost=lambda n: 0.15,
                   name="lead-sync")
    assert list(sync.submit(range(12), window=12)) == list(range(12))
    sync.close()
    assert count("lead-sync", "+Inf") >= 1 and count("lead-sync", "0.0") == count("lead-sync", "+Inf")


def _newcomer_batch(cost):
    """Index of the first batch holding a newcomer's items, when it arrives while a long batch runs and a
    streaming request has plenty queued."""
    log, seen = [], []

    def launch(items):
        seen.append(list(items))
        return _Pending(list(range(len(items))), 0.4 if len(seen) == 2 else 0.01, log)

    b = Batcher(launch, max_batch=8, max_wait_s=0.0, head_frames=4, cost=cost)
    stream = b.submit((("old", i) for i in range(64)), window=64)
    first = next(stream)                          # its head has run; the next batch runs 0.4 s
    time.sleep(0.1)
    newcomer = b.submit([("new", i) for i in range(4)], window=4)
    out = list(newcomer)
    stream.close()
    b.close()
    assert first == 0 and len(out) == 4
    return next(k for k, batch in enumerate(seen) if any(item[0] == "new" for item in batch))


def test_with_costs_a_newcomer_goes_in_the_batch_right_after_the_running_one():
    # without costs the batch after the running one was launched at once (full of the stream's frames); with them
    # it is launched just before the running one should end, and the newcomer that came meanwhile is in it
    assert _newcomer_batch(cost=None) == 3
    assert _newcomer_batch(cost=lambda n: 0.4) == 2


def _sizes_while_expecting(priority, fail=False):
    """Batch sizes of a streaming request before, while and after a newcomer of `priority` prepares its first
    frames (8 at most a batch, 2 while an interactive newcomer is expected)."""
    seen = []
    b = Batcher(_slow_runner(seen, 0.005), max_batch=8, max_wait_s=0.0, head_frames=2, pending_head_batch=2)
    stop = threading.Event()

    def consume():
        stream = b.submit((("old", i) for i in range(100000)), window=64)
        for _ in stream:
            if stop.is_set():
                stream.close()
                return
    feed = threading.Thread(target=consume, daemon=True)
    feed.start()
    time.sleep(0.1)
    before = len(seen)
    new = None
    try:
        with b.expecting(priority) as expected:
            time.sleep(0.2)                       # the newcomer's whisper pass
            during = len(seen)
            if fail:
                raise RuntimeError("its preparation failed")
            new = list(b.submit([("new", i) for i in range(6)], window=6, priority=priority, expected=expected))
            time.sleep(0.1)                       # its head was queued: cut no more, though its context is open
    except RuntimeError:
        pass
    after = len(seen)
    time.sleep(0.1)
    sizes = [len(x) for x in seen]
    stop.set()
    feed.join(timeout=5)
    b.close()
    assert new is None or [x[1] for x in new] == list(range(6))
    return sizes[before + 1:during], sizes[after + 1:]


def test_while_a_new_request_prepares_other_batches_are_cut_short():
    during, after = _sizes_while_expecting("interactive")
    assert during and set(during) == {2}, during          # its head then waits behind a short batch
    assert after and set(after) == {8}, after              # back to full batches once its first frames are queued
    during, after = _sizes_while_expecting("interactive", fail=True)
    assert set(during) == {2} and after and set(after) == {8}    # a failed preparation releases it too
    during, _ = _sizes_while_expecting("batch")
    assert during and set(during) == {8}, during          # bulk jobs announce nothing


def test_unknown_priority_is_refused():
    b = Batcher(lambda items: items, max_batch=2)
    with pytest.raises(ValueError, match="unknown priority"):
        b.submit([1], priority="urgent")
    b.close()


def test_close_stops_the_thread_and_tells_waiting_requests():
    gate = threading.Event()

    def run(items):
        gate.wait(5)
        return items

    b = Batcher(run, max_batch=2, max_wait_s=0)
    results, errors = [], []

    def client():
        try:
            for x in b.submit(range(10), window=10):
                results.append(x)
        except BatcherClosed as e:
            errors.append(e)

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.1)                 # the first batch is running, the rest waits
    closer = threading.Thread(target=b.close)
    closer.start()
    gate.set()
    closer.join(5)
    t.join(5)
    assert not b.alive and not t.is_alive()
    assert errors and results == list(range(len(results))) and len(results) < 10
    with pytest.raises(BatcherClosed):
        list(b.submit([1]))


def _gated(gate, order):
    """A launch that holds each batch until gate is set, then records it."""
    def run(items):
        gate.wait(5)
        order.append(list(items))
        return items
    return run


def test_live_items_go_first_and_a_closed_stream_drops_its_queued_items():
    gate, order = threading.Event(), []
    run = _gated(gate, order)
    b = Batcher(run, max_batch=4, max_wait_s=0.0)
    got = []
    live = b.open_stream(got.append)
    offline = threading.Thread(target=lambda: list(b.submit([f"o{i}" for i in range(8)], window=8, priority="batch")))
    offline.start()
    time.sleep(0.1)                         # the first offline batch is running (held at the gate)
    for i in range(3):
        live.put(f"l{i}")
    time.sleep(0.05)
    gate.set()
    offline.join(5)
    assert got == ["l0", "l1", "l2"]
    assert order[1][:3] == ["l0", "l1", "l2"]       # the next batch after the running one starts with live frames
    gate.clear()
    live.put("l3")                                  # runs now, held at the gate
    time.sleep(0.1)
    live.put("l4")
    live.close()                                    # l4 was queued: dropped, and l3's result is not handed out
    gate.set()
    time.sleep(0.2)
    assert got == ["l0", "l1", "l2"] and all("l4" not in batch for batch in order)
    with pytest.raises(BatcherClosed):
        live.put("l5")
    b.close()


def test_a_batch_with_live_frames_is_cut_to_live_batch_and_the_oldest_go_first():
    gate, order = threading.Event(), []
    run = _gated(gate, order)
    b = Batcher(run, max_batch=8, max_wait_s=0.0, head_frames=0, live_batch=3)
    got = []
    live = [b.open_stream(got.append) for _ in range(2)]
    offline = threading.Thread(target=lambda: list(b.submit([f"o{i}" for i in range(12)], window=12,
                                                            priority="batch")))
    offline.start()
    time.sleep(0.1)                         # the first offline batch (8) is running, held at the gate
    for i in range(4):                      # stream 0's frames are older than stream 1's
        live[0].put(f"a{i}")
    for i in range(2):
        live[1].put(f"b{i}")
    time.sleep(0.05)
    gate.set()
    offline.join(5)
    time.sleep(0.1)
    for stream in live:
        stream.close()
    b.close()
    assert order[0] == [f"o{i}" for i in range(8)]
    assert order[1] == ["a0", "a1", "a2"]                   # cut to 3, oldest first, no offline frame added
    assert order[2][:3] == ["a3", "b0", "b1"] and len(order[2]) == 3
    assert [x for batch in order[3:] for x in batch] == ["o8", "o9", "o10", "o11"]   # full again without live
    assert got == ["a0", "a1", "a2", "a3", "b0", "b1"]


def test_offline_batches_stay_full_while_a_live_stream_is_open_without_frames():
    """Only a batch that holds live frames is cut to live_batch: without beside_live_batch (the engine passes half
    a batch: the next test) offline batches stay at max_batch, whether a stream is open or its frames flow."""
    turns, order = threading.Semaphore(0), []

    def run(items):                         # one batch per turn
        turns.acquire(timeout=5)
        order.append(list(items))
        return items

    b = Batcher(run, max_batch=8, max_wait_s=0.0, head_frames=0, live_batch=4)
    got = []
    live = b.open_stream(got.append)
    offline = threading.Thread(target=lambda: list(b.submit([f"o{i}" for i in range(24)], window=24,
                                                            priority="batch")))
    offline.start()
    turns.release()                         # the first batch: offline only, full
    deadline = time.time() + 5
    while len(order) < 1 and time.time() < deadline:
        time.sleep(0.01)
    live.put("a0")                          # the next batch holds a live frame: cut to 4, the live frame first
    for _ in range(20):
        turns.release()
    offline.join(5)
    time.sleep(0.05)
    live.close()
    b.close()
    k = next(i for i, batch in enumerate(order) if "a0" in batch)
    assert order[k][0] == "a0" and len(order[k]) == 4        # cut to live_batch, the live frame first
    offline_only = [len(batch) for i, batch in enumerate(order) if i != k]
    assert k >= 1 and offline_only[:-1] == [8] * (len(offline_only) - 1) and len(offline_only) >= 3
    assert [x for batch in order for x in batch if x != "a0"] == [f"o{i}" for i in range(24)]
    assert got == ["a0"]


def test_live_frames_fill_only_the_size_that_holds_them_and_other_batches_are_cut_while_they_flow(monkeypatch):
    """With live_sizes a batch holding 3 live frames is filled to 4 (the compiled size that holds them), not to
    live_batch; while live frames flow (one queued within LIVE_RECENT_S) offline batches hold beside_live_batch,
    and once they stop, max_batch again. The offline request's items still come back whole and in order."""
    monkeypatch.setattr(batcher_module, "LIVE_RECENT_S", 1.0)
    turns, entered, got = threading.Semaphore(0), [], []

    def run(items):                         # picked (entered), then run when the test gives a turn
        entered.append(list(items))
        turns.acquire(timeout=5)
        return items

    # max_wait_s: the first batch waits for all 8 of the items queued one at a time
    b = Batcher(run, max_batch=8, max_wait_s=0.05, head_frames=0, live_batch=8, beside_live_batch=4,
                live_sizes=[2, 4, 8])
    live = b.open_stream(got.append)
    results = []
    offline = threading.Thread(target=lambda: results.extend(b.submit([f"o{i}" for i in range(40)], window=40,
                                                                      priority="batch")))
    offline.start()
    turns.release()                         # batch 0 runs; batch 1 (offline only, full) is picked and waits
    _wait_for(lambda: len(entered) == 2)
    for name in ("a0", "a1", "a2"):
        live.put(name)
    for _ in range(12):
        turns.release()
    offline.join(5)
    assert [len(x) for x in entered[:2]] == [8, 8]
    assert entered[2] == ["a0", "a1", "a2", "o16"]                  # filled to 4, not to live_batch (8)
    assert [len(x) for x in entered[3:]] == [4] * 5 + [3]            # cut while live frames flow
    time.sleep(1.1)                         # no live frame for longer than LIVE_RECENT_S: full batches again
    more = b.submit([f"p{i}" for i in range(16)], window=16, priority="batch")
    for _ in range(4):
        turns.release()
    assert list(more) == [f"p{i}" for i in range(16)]
    assert [len(x) for x in entered[9:]] == [8, 8]
    live.close()
    b.close()
    assert results == [f"o{i}" for i in range(40)] and got == ["a0", "a1", "a2"]


def _wait_for(condition, timeout=5.0):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.005)
    assert condition()


def test_a_request_may_bring_its_own_head_start():
    seen = []
    b = Batcher(_slow_runner(seen), max_batch=8, max_wait_s=0.0, head_frames=8)
    stream = b.submit(((("old", i) for i in range(400))), window=32)
    next(stream)
    newcomer = list(b.submit([("new", i) for i in range(8)], window=8, head=3))
    stream.close()
    b.close()
    assert newcomer == [("new", i) for i in range(8)]
    first = _batch_of(seen, "new")
    assert seen[first] == [("new", 0), ("new", 1), ("new", 2)]      # its 3 head items, in a batch of their own


def _burst(finish_items, tags=("a", "b", "c", "d"), n=40):
    """Requests of n items queued together behind a running batch; the batches they ran in and their results."""
    seen, running, gate = [], threading.Event(), threading.Event()

    def run(items):
        if items[0][0] == "x":
            running.set()
            gate.wait(5)
        seen.append(list(items))
        return items

    b = Batcher(run, max_batch=8, max_wait_s=0.0, head_frames=0, finish_items=finish_items)
    blocker = b.submit([("x", 0)], priority="batch")
    threading.Thread(target=lambda: list(blocker)).start()
    assert running.wait(5)
    streams = [b.submit([(tag, i) for i in range(n)], window=n, priority="batch", total=n) for tag in tags]
    out = {}
    threads = [threading.Thread(target=lambda t=t, s=s: out.__setitem__(t, list(s))) for t, s in zip(tags, streams)]
    for t in threads:
        t.start()
    deadline = time.time() + 5
    while b._waiting < n * len(tags) and time.time() < deadline:    # all queued while the blocker runs
        time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(10)
    b.close()
    assert all(out[t] == [(t, i) for i in range(n)] for t in tags)
    last = {t: max(k for k, batch in enumerate(seen) if (t, n - 1) in batch) for t in tags}
    return seen, last


def test_requests_that_arrive_together_end_one_after_another_oldest_first():
    seen, last = _burst(finish_items=8)
    # once a request is within 8 items of its end it goes first, oldest request first: each ends a batch after
    # the one before (the last batch holds only the newest request's items)
    assert [last[t] for t in "abcd"] == list(range(last["a"], last["a"] + 4)) and last["d"] == len(seen) - 1, last
    assert {item[0] for item in seen[-1]} == {"d"}
    # and until then they were served fairly: every batch up to there holds items of all four
    assert all({item[0] for item in batch} == set("abcd") for batch in seen[1:last["a"] - 1])


def test_without_finishing_first_requests_that_arrive_together_end_in_the_same_batch():
    seen, last = _burst(finish_items=0)
    assert len(set(last.values())) == 1, last


def test_finishing_first_never_lets_a_newer_request_starve_an_older_one():
    seen = []
    b = Batcher(_slow_runner(seen, 0.001), max_batch=8, max_wait_s=0.0, head_frames=0, finish_items=16)
    old = b.submit((("old", i) for i in range(60)), window=16, total=60)
    # newcomers short enough to be finishing from their start keep arriving, yet the older request goes on
    assert _alongside_newcomers(b, old, total=12) == [("old", i) for i in range(60)]
    mixed = [batch for batch in seen if any(item[0] == "old" for item in batch)]
    assert any(item[0] != "old" for batch in mixed for item in batch)   # while they were there
