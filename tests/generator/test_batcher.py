import threading
import time

import pytest

from services.generator.batcher import Batcher


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
