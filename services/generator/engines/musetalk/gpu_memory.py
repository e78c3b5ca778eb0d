"""The generator's GPU on /metrics: its memory (PyTorch's allocator and the whole device, read at each scrape) and
the batches' busy time."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

GPU_MEMORY = Gauge("lipsync_generator_gpu_memory_bytes", "GPU memory of this process: PyTorch's allocator "
                   "(allocated, reserved), the whole device's use (device_used)", ["kind"])
# each batch's own time on the device, timed by events on its stream (the side work's whisper and latents not
# included): against the wall clock, the share of a level the device worked (tools/bench_e2e_gpu.py)
GPU_BUSY = Counter("lipsync_generator_gpu_busy_seconds", "Time the accelerator spent on generation batches "
                   "(each batch timed on its stream, from the stream reaching it to its crops copied out)")


def watch_gpu_memory(torch, device: str) -> None:
    """Gauges read at each scrape: where the process's GPU memory is (the bench compares them with nvidia-smi)."""
    GPU_MEMORY.labels("allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    GPU_MEMORY.labels("reserved").set_function(lambda: torch.cuda.memory_reserved(device))
    GPU_MEMORY.labels("device_used").set_function(
        lambda: (lambda free_total: free_total[1] - free_total[0])(torch.cuda.mem_get_info(device)))
