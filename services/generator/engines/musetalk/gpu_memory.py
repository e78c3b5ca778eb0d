"""The generator's GPU on /metrics: its memory (PyTorch's allocator and the whole device, read at each scrape), the
batches' busy time, the waits between them and when the latest run of them began."""
from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge

GPU_MEMORY = Gauge("lipsync_generator_gpu_memory_bytes", "GPU memory of this process: PyTorch's allocator "
                   "(allocated, reserved), the whole device's use (device_used)", ["kind"])
# each batch's own time on the device, timed by events on its stream (the side work's whisper and latents not
# included): against the wall clock, the share of a level the device worked (tools/bench_e2e_gpu.py)
GPU_BUSY = Counter("lipsync_generator_gpu_busy_seconds", "Time the accelerator spent on generation batches "
                   "(each batch timed on its stream, from the stream reaching it to its crops copied out)")
# between two consecutive batches, how long the stream had nothing to run (the previous batch's end event to the
# next one's start event): launches that came late or inputs not ready inside a run of work. Waits of GAP_LIMIT_S
# or more are the device idle between runs of work, not counted.
GPU_GAPS = Counter("lipsync_generator_gpu_gap_seconds", "Time the accelerator waited between two consecutive "
                   "generation batches, waits under 1 s (inside a run of work)")
GAP_LIMIT_S = 1.0
# the host's monotonic clock (CLOCK_MONOTONIC: every process on the box reads the same one) at the launch of the
# first batch after the device idled GAP_LIMIT_S or more, set once that batch is collected: against a client's own
# monotonic clock, how long a burst of requests took to reach the device (tools/bench_e2e_gpu.py)
GPU_RUN_START = Gauge("lipsync_generator_gpu_run_start_seconds", "When the latest run of generation batches began: "
                      "the host's monotonic clock at the launch of the first batch after the device idled 1 s or more")


class BatchClock:
    """Counts each collected batch's time on the device (GPU_BUSY) and the wait before it since the batch collected
    before it ended (GPU_GAPS). Batches are collected in the order they ran (one batcher per device)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_end = None

    def collected(self, copy, launched: float | None = None) -> None:
        """copy: a HostCopy whose event completed (its start and end events timed on the stream); launched: the
        host's time.monotonic() when the batch was launched."""
        if copy.start is None:
            return
        GPU_BUSY.inc(copy.gpu_s())
        with self._lock:
            last, self._last_end = self._last_end, copy.event
        gap = None if last is None else last.elapsed_time(copy.start) / 1000
        if gap is not None and 0 < gap < GAP_LIMIT_S:
            GPU_GAPS.inc(gap)
        elif launched is not None and (gap is None or gap >= GAP_LIMIT_S):
            GPU_RUN_START.set(launched)


BATCH_CLOCK = BatchClock()


def watch_gpu_memory(torch, device: str) -> None:
    """Gauges read at each scrape: where the process's GPU memory is (the bench compares them with nvidia-smi)."""
    GPU_MEMORY.labels("allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    GPU_MEMORY.labels("reserved").set_function(lambda: torch.cuda.memory_reserved(device))
    GPU_MEMORY.labels("device_used").set_function(
        lambda: (lambda free_total: free_total[1] - free_total[0])(torch.cuda.mem_get_info(device)))
