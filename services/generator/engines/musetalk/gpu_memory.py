"""The generator's GPU memory on /metrics: PyTorch's allocator and the whole device, read at each scrape."""
from __future__ import annotations

from prometheus_client import Gauge

GPU_MEMORY = Gauge("lipsync_generator_gpu_memory_bytes", "GPU memory of this process: PyTorch's allocator "
                   "(allocated, reserved), the whole device's use (device_used)", ["kind"])


def watch_gpu_memory(torch, device: str) -> None:
    """Gauges read at each scrape: where the process's GPU memory is (the bench compares them with nvidia-smi)."""
    GPU_MEMORY.labels("allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    GPU_MEMORY.labels("reserved").set_function(lambda: torch.cuda.memory_reserved(device))
    GPU_MEMORY.labels("device_used").set_function(
        lambda: (lambda free_total: free_total[1] - free_total[0])(torch.cuda.mem_get_info(device)))
