"""How a batch of n frames runs as the generator's compiled batch sizes (CUDA graphs exist only for those)."""
from __future__ import annotations


def batch_plan(n: int, sizes: list[int], costs: dict[int, float] | None = None) -> list[int]:
    """The compiled sizes to run n frames as. With `costs` (seconds per run of each size, timed at warm-up): the
    split of least total time, e.g. 24 frames as 16 + 8 instead of padded to 32 (32 ran ~51 ms, 16 ~26 ms, 8 ~15
    ms on an H200: a live level's 17-24 frames no longer pay for 32). Without: the smallest size that holds n."""
    if n <= 0:
        return []
    fits = next((b for b in sizes if b >= n), n)
    if not costs or n > max(costs):
        return [fits]
    best: list[tuple[float, list[int]]] = [(0.0, [])]
    for k in range(1, n + 1):
        best.append(min((costs[b] + best[max(0, k - b)][0], [b] + best[max(0, k - b)][1]) for b in sorted(costs)))
    return sorted(best[n][1], reverse=True)


def buckets(max_batch: int) -> list[int]:
    """Batch sizes the networks run at: a quarter of max_batch (light load), half (live sessions: 16 sessions at
    25 fps fill about half a batch per frame period, and a half batch runs in half the time) and max_batch. A
    batch is padded up to the next one, so a compiled model sees three fixed shapes instead of recompiling for
    every size (each compilation of UNet + decoder takes about a minute on an H100)."""
    return sorted({max(1, max_batch // 4), max(1, max_batch // 2), max_batch})
