"""The CPU count that sizes thread pools follows a container's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

from service.cpus import quota_cpus, usable_cpus


def test_cpu_max_lines_are_read() -> None:
    assert quota_cpus("200000 100000\n") == 2.0
    assert quota_cpus("150000 100000") == 1.5
    assert quota_cpus("max 100000") is None
    assert quota_cpus("garbage") is None
    assert quota_cpus("0 100000") is None


def test_a_quota_caps_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    limited = tmp_path / "cpu.max"
    limited.write_text("50000 100000\n")  # half a CPU: still one thread
    assert usable_cpus(limited) == 1
    unlimited = tmp_path / "cpu.max.none"
    unlimited.write_text("max 100000\n")
    assert usable_cpus(unlimited) == affinity
    assert usable_cpus(tmp_path / "missing") == affinity
    generous = tmp_path / "cpu.max.big"
    generous.write_text(f"{(affinity + 8) * 100000} 100000\n")
    assert usable_cpus(generous) == affinity
