"""Usable cores: the affinity, capped by the cgroup's CPU quota (v2 cpu.max or v1 cfs quota/period)."""
import os

import pytest

from lipsync_common import cores


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, limit", [
    ({}, None),                                                             # no cgroup to read
    ({"cpu.max": "max 100000\n"}, None),                                    # v2, no quota
    ({"cpu.max": "400000 100000\n"}, 4.0),                                  # v2, limits.cpu: 4
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),      # v1, no quota
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),   # v1, 2 cores
    ({"cpu.max": "\n"}, None),                                             # unreadable values: no quota, no crash
    ({"cpu.max": "lots 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n"}, None),                          # v1 without its period
    ({"cpu/cpu.cfs_quota_us": "2e5\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
])
def test_the_cgroup_quota_in_cores(tmp_path, files, limit):
    for rel, text in files.items():
        write(tmp_path, rel, text)
    assert cores.cgroup_cpu_limit(str(tmp_path)) == limit


@pytest.mark.parametrize("affinity, quota, usable", [
    (64, None, 64),           # no quota: the cores it may run on
    (64, "400000 100000", 4),  # a pod limited to 4 cores on a 64-core node
    (64, "150000 100000", 2),  # 1.5 cores: two threads can run at once
    (64, "50000 100000", 1),   # never below 1
    (2, "800000 100000", 2),   # the affinity is the cap when it is lower
])
def test_usable_cores_are_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, affinity, quota, usable):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    if quota:
        write(tmp_path, "cpu.max", quota)
    assert cores.usable_cores(str(tmp_path)) == usable
    monkeypatch.setattr(cores, "CGROUP_ROOT", str(tmp_path))
    assert cores.usable_cores() == usable          # what the rooms call
