import threading
import time

import pytest

from services.generator.engines.musetalk.batcher import BatcherClosed
from services.generator.engines.musetalk.side_work import SideWork


def test_side_work_runs_a_burst_in_one_call_and_keeps_errors_apart():
    gate = threading.Event()
    calls = []

    def run(jobs):
        gate.wait(5)
        calls.append(list(jobs))
        return [ValueError(f"bad {j}") if j < 0 else j * 10 for j in jobs]

    side = SideWork(run)
    first = side.submit(1)                 # starts a call at once, held at the gate
    time.sleep(0.05)
    burst = [side.submit(j) for j in (2, -3, 4)]
    skipped = side.submit(5)
    assert skipped.cancel()                # cancelled before its turn: never run
    gate.set()
    assert first.result(5) == 10
    assert [f.result(5) for f in (burst[0], burst[2])] == [20, 40]
    with pytest.raises(ValueError, match="bad -3"):
        burst[1].result(5)
    assert calls == [[1], [2, -3, 4]]
    later = side.submit(7)
    assert later.result(5) == 70
    side.close()
    with pytest.raises(BatcherClosed):
        side.submit(8).result(5)


def test_side_work_call_runs_alone_in_its_thread():
    calls, threads = [], []
    side = SideWork(lambda jobs: calls.append(list(jobs)) or threads.append(threading.current_thread()) or list(jobs),
                    gather_s=0.2)
    job = side.submit(1)
    ran_in = side.call(threading.current_thread)     # queued within the job's gather window: still run alone
    assert ran_in.result(5) is not threading.current_thread()
    assert job.result(5) == 1 and calls == [[1]] and threads == [ran_in.result()]
    with pytest.raises(ZeroDivisionError):
        side.call(lambda: 1 / 0).result(5)
    assert side.submit(2).result(5) == 2 and calls[-1] == [2]     # the thread goes on after a failed call
    side.close()
    with pytest.raises(BatcherClosed):
        side.call(lambda: None).result(5)


def test_side_work_gathers_jobs_that_arrive_within_its_window():
    calls = []
    side = SideWork(lambda jobs: calls.append(list(jobs)) or list(jobs), gather_s=0.3)
    # jobs submitted a little apart from several threads (live sessions on one frame grid) share one call
    threads = [threading.Timer(0.02 * k, side.submit, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert calls == [[0, 1, 2, 3, 4]]
    # without the window, a job that comes while nothing waits runs alone
    alone = SideWork(lambda jobs: calls.append(list(jobs)) or list(jobs))
    assert alone.submit(9).result(5) == 9 and calls[-1] == [9]
    assert side.submit(8).result(5) == 8 and calls[-1] == [8]      # the window ends: a lone job runs
    side.close()
    alone.close()
