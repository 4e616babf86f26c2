"""Small helpers shared by the benchmarks: statistics (median, nearest-rank percentiles) and
the progress log on standard error."""

from __future__ import annotations

import math
import sys
import time


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile of samples (share in 0..1); samples must not be empty."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def median(samples: list[float]) -> float:
    ordered = sorted(samples)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summary(samples: list[float]) -> tuple[float, float, float]:
    """(median, p95, max) rounded to 0.1; zeros when there is no sample."""
    if not samples:
        return 0.0, 0.0, 0.0
    return (
        round(median(samples), 1),
        round(percentile(samples, 0.95), 1),
        round(max(samples), 1),
    )
