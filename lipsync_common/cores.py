"""How many CPU cores this process may really use: the cores it may run on (its affinity), capped by its cgroup's
CPU quota. In a Kubernetes pod with `limits.cpu: 4` on a 64-core node, os.cpu_count() says 64 and so does the
affinity, while the kernel lets the pod run 4 cores' worth per period and throttles the rest: thread counts sized
for 64 cores (x264's frame threads, compositing pools, decoders) then wait on the quota instead of working.

Reads the cgroup mounted at /sys/fs/cgroup (a container's own under cgroup namespaces, as in a Kubernetes pod):
v2 (`cpu.max`: "max 100000" or "400000 100000") and, failing that, v1 (`cpu/cpu.cfs_quota_us`, -1 = no quota, and
`cpu/cpu.cfs_period_us`). A fractional quota rounds up (1.5 CPUs can run 2 threads at once, each throttled a
little), never below 1.
"""
from __future__ import annotations

import math
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _ratio(quota: str | None, period: str | None) -> float | None:
    """quota / period in cores; None for no quota ("max", -1), a missing file or a value that is not a number."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: str | None = None) -> float | None:
    """The CPU quota in cores (e.g. 4.0, 1.5), or None when there is none (or no cgroup to read)."""
    root = root or CGROUP_ROOT
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2 is not None:
        parts = v2.split()
        return _ratio(*parts) if len(parts) == 2 else None
    return _ratio(_read(os.path.join(root, "cpu", "cpu.cfs_quota_us")),
                  _read(os.path.join(root, "cpu", "cpu.cfs_period_us")))


def usable_cores(root: str | None = None) -> int:
    """Cores this process may use at once: its affinity, capped by its cgroup's CPU quota (rounded up), >= 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)
