"""Quiet-hours windows in a city's local time: parsing, membership, and when quiet ends.

Pure time arithmetic, no I/O: the service decides which windows apply to a broadcast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Final

# The window arithmetic is the wire contract's: an indoor receiver holds notices by it too.
from wire.contract.quiet import HHMM
from wire.contract.quiet import QuietWindow as QuietWindow
from wire.contract.quiet import city_zone as city_zone
from wire.contract.quiet import local_moment as local_moment
from wire.contract.quiet import parse_hhmm as parse_hhmm

_WINDOW: Final = re.compile(rf"(?P<start>{HHMM})\s*[-~]\s*(?P<end>{HHMM})")
# Enough steps to leave any overlap of windows; more means the windows cover the whole day.
_MAX_STEPS: Final = 16


def parse_window(spec: str) -> QuietWindow | None:
    """``"21:00-07:00"`` -> a window; ``"off"`` -> None. Raises ValueError on anything else."""
    value = spec.strip().lower()
    if value == "off":
        return None
    match = _WINDOW.fullmatch(value)
    if match is None:
        raise ValueError(
            f'quiet hours must be "HH:MM-HH:MM" (e.g. "21:00-07:00") or "off", not {spec!r}'
        )
    start, end = parse_hhmm(match["start"]), parse_hhmm(match["end"])
    if start == end:
        raise ValueError("quiet hours must start and end at different times")
    return QuietWindow(start, end)


@dataclass(frozen=True)
class Quiet:
    """A moment falls in quiet hours: which windows, and when the last of them ends (None: the
    windows together cover the whole day, so it never ends)."""

    windows: tuple[QuietWindow, ...]
    ends_at: datetime | None


def quiet_at(windows: Sequence[QuietWindow], moment: datetime, zone: tzinfo) -> Quiet | None:
    """Whether ``moment`` falls in any of ``windows``, and the first moment after it in none."""
    active = tuple(w for w in windows if w.contains(moment, zone))
    if not active:
        return None
    probe = moment
    for _ in range(_MAX_STEPS):
        still = [w for w in windows if w.contains(probe, zone)]
        if not still:
            return Quiet(active, probe)
        probe = max(w.ends_after(probe, zone) for w in still)
    return Quiet(active, None)


def describe_local(moment: datetime, zone: tzinfo, *, year: bool = False) -> str:
    """A moment as people read it on a notice board: ``11월 25일 07:00``."""
    local = moment.astimezone(zone)
    text = f"{local.month}월 {local.day}일 {local:%H:%M}"
    return f"{local.year}년 {text}" if year else text


def clock_ko(moment: time) -> str:
    """A time of day as a phone says it, kept on one line: ``오후 6:00`` (no-break space)."""
    half = "오전" if moment.hour < 12 else "오후"
    return f"{half}\u00a0{(moment.hour - 1) % 12 + 1}:{moment.minute:02d}"


def window_ko(window: QuietWindow) -> str:
    """``오후 2:00~오후 6:00``, a word joiner keeping the range on one line."""
    return f"{clock_ko(window.start)}~\u2060{clock_ko(window.end)}"
