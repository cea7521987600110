"""How many CPUs this process may really use: its CPU affinity, capped by a cgroup v2 CPU quota
(`cpu.max`, as a container's CPU limit sets it). `os.cpu_count()` counts the host's CPUs, which
in a container limited to 2 of 64 would size thread pools 32 times too large."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def quota_cpus(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("QUOTA PERIOD" or "max PERIOD"); None for no
    limit or a line that cannot be read."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(cpu_max_file: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use, at least 1: affinity, capped by the cgroup quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota = quota_cpus(cpu_max_file.read_text())
    except OSError:
        quota = None
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
