"""Renders running on the box, counted across processes through lock files: a render counts while it runs, other
processes' renders count too, and a process killed with SIGKILL stops counting (its file is removed)."""
import multiprocessing
import os
import signal
import time

from services.render.active import ActiveRenders


def hold(folder: str, ready, stop_path: str) -> None:
    """A render in another process: counted until stop_path exists (files, not a shared lock: a process killed
    while it waits on a multiprocessing primitive would leave it broken for the others)."""
    with ActiveRenders(folder).running():
        ready.send(True)
        while not os.path.exists(stop_path):
            time.sleep(0.02)


def test_renders_are_counted_while_they_run(tmp_path):
    active = ActiveRenders(str(tmp_path))
    assert active.count() == 0
    with active.running():
        assert active.count() == 1
        with active.running():
            assert active.count() == 2
        assert active.count() == 1
    assert active.count() == 0 and os.listdir(tmp_path) == []            # nothing left behind


def test_other_processes_count_and_a_killed_one_stops_counting(tmp_path):
    folder, stop = tmp_path / "renders", str(tmp_path / "stop")
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    kids = [ctx.Process(target=hold, args=(str(folder), send, stop)) for _, send in pipes]
    active = ActiveRenders(str(folder))
    try:
        for kid, (recv, _) in zip(kids, pipes):
            kid.start()
            assert recv.poll(60) and recv.recv()
        with active.running():
            assert active.count() == 3                                   # two other processes and this one
        os.kill(kids[0].pid, signal.SIGKILL)                             # no clean-up in that process
        kids[0].join(30)
        assert len(os.listdir(folder)) == 2                              # its file is still there
        assert active.count() == 1                                       # but its lock went with it
        assert len(os.listdir(folder)) == 1                              # and the count removed its file
        open(stop, "w").close()
        kids[1].join(30)
        assert kids[1].exitcode == 0 and active.count() == 0 and os.listdir(folder) == []
    finally:
        open(stop, "w").close()
        for kid in kids:
            if kid.is_alive():
                kid.kill()
