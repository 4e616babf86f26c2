"""Quiet-hours windows in local time: whether a moment is quiet and when a window ends.

Pure time arithmetic, shared by the gateway (which defers or refuses broadcasts in quiet hours)
and an indoor receiver (which holds non-urgent notices in them when its household asks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HHMM: Final = r"(?:[01]\d|2[0-3]):[0-5]\d"
# Korea has kept one offset since 1988; used when the system has no time-zone database.
_KST: Final = timezone(timedelta(hours=9), "KST")


def city_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Seoul":
            return _KST
        raise


def parse_hhmm(value: str) -> time:
    if not re.fullmatch(HHMM, value.strip()):
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


def local_moment(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at ``at`` in ``zone``, as an aware UTC datetime."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
