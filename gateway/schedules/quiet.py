"""Quiet-hours windows in a city's local time: parsing, membership, and when quiet ends.

Pure time arithmetic, no I/O: the service decides which windows apply to a broadcast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM: Final = r"(?:[01]\d|2[0-3]):[0-5]\d"
_WINDOW: Final = re.compile(rf"(?P<start>{_HHMM})\s*[-~]\s*(?P<end>{_HHMM})")
# Korea has kept one offset since 1988; used when the system has no time-zone database.
_KST: Final = timezone(timedelta(hours=9), "KST")
# Enough steps to leave any overlap of windows; more means the windows cover the whole day.
_MAX_STEPS: Final = 16


def city_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Seoul":
            return _KST
        raise


def parse_hhmm(value: str) -> time:
    if not re.fullmatch(_HHMM, value.strip()):
        raise ValueError(f"{value!r} is not a time of day as HH:MM")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietWindow:
    """From ``start`` to ``end`` every day, local time; wraps past midnight when end < start.
    The start minute is quiet, the end minute is not."""

    start: time
    end: time

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, moment: datetime, zone: tzinfo) -> bool:
        local = moment.astimezone(zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, moment: datetime, zone: tzinfo) -> datetime:
        """The first end of this window strictly after ``moment``, in UTC."""
        day = moment.astimezone(zone).date()
        for offset in range(3):
            candidate = local_moment(day + timedelta(days=offset), self.end, zone)
            if candidate > moment:
                return candidate
        raise AssertionError("a daily window ends within two days")


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


def local_moment(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at ``at`` in ``zone``, as an aware UTC datetime."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


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
