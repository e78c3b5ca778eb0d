"""One CUDA graph per input shape, all graphs in one memory pool.

torch.compile's "reduce-overhead" mode (CUDA graph trees) gave each batch bucket's graph room of its own: 9.5 GB of
graph pool for the default buckets (8 and 32 frames) where one pass needs about 4 GB (BENCHMARKS.md). Here the
graphs share one pool: the engine runs them one at a time from its batcher thread and copies each result to the
host before the next call, so what one graph leaves behind is never read after another one ran. The graphs hold
compiled code (torch.compile's default mode) and are captured on first use of a shape, after warm-up calls.
"""
from __future__ import annotations

from typing import Callable

import torch


class SharedPoolGraphs:
    """`fn(*tensors) -> tensor` replayed from CUDA graphs. The result is overwritten by the next call (of any shape);
    copy it out first. Calls must not run concurrently."""

    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 2):
        self.fn, self.warmup = fn, warmup
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict = {}

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((a.shape, a.stride(), a.dtype, a.device) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        inputs, graph, out = self.graphs[key]
        for buf, a in zip(inputs, args):
            buf.copy_(a, non_blocking=True)
        graph.replay()
        return out

    def _capture(self, args):
        inputs = [a.clone() for a in args]     # the graph reads its inputs from these buffers
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):          # compile, autotune and cuDNN's algorithm search happen here
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: request threads may run CUDA work (audio features, latents) while this thread captures
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            out = self.fn(*inputs)
        return inputs, graph, out
