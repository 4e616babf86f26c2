"""Garbage-collector settings for a long-running gateway process.

During a city-wide fan-out the ack intake creates and drops hundreds of thousands of small
objects a second. With CPython's default thresholds (700, 10, 10) that meant frequent
collections, the full ones scanning every object the process ever loaded: pauses of 100-250 ms
in which the event loop served nobody, and a status read's p99 several times its median.
Objects alive after start-up (modules, the app, settings) are frozen out of every scan, and the
young generation is allowed to grow larger before it is collected.
"""

from __future__ import annotations

import gc
from typing import Final

THRESHOLDS: Final = (50_000, 20, 100)


def tune_for_serving() -> None:
    """Call once, after start-up imports, in a process that serves the gateway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
