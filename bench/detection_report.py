"""Report parts benchmarks share: the cost of a search on the plain pictures next to their decode
(`grid_detection.py`, `pasted_detection.py`), and the report printed and written (those two,
`match_ab.py`, `pdq_index_cutover.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cost_lines(decode_ms: list[float], search_ms: list[float], step: str) -> list[str]:
    """The cost table: medians of the decode (the baseline) and of the search ``step``."""
    d50, s50 = float(np.median(decode_ms)), float(np.median(search_ms))
    return [
        "",
        "Cost on the plain pictures (medians, one thread):",
        "",
        "| step | p50 ms | ratio to the decode |",
        "|---|---:|---:|",
        f"| luma decode as matching decodes (the baseline) | {d50:.2f} | 1.00x |",
        f"| {step} | {s50:.2f} | {s50 / d50:.2f}x |",
        "",
    ]


def emit(lines: list[str], out: Path | None) -> None:
    """Print the report, and write it to ``out`` when given."""
    report = "\n".join(lines)
    print(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
