"""When a schedule fires: once, N times every M minutes, or every day (or some weekdays) at a
local time until an end date. Pure time arithmetic; the request's mistakes are typed errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final, Literal, get_args

from gateway.errors import InvalidRequest
from gateway.schedules.quiet import describe_local, local_moment

Kind = Literal["once", "repeat", "daily"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = get_args(Weekday)
_WEEKDAY_KO: Final = "월화수목금토일"

# A recurrence may run at most this far ahead; a longer one is a standing order, not a schedule.
MAX_HORIZON_DAYS: Final = 366
MAX_REPEAT_COUNT: Final = 100
MAX_REPEAT_EVERY_MIN: Final = 24 * 60


@dataclass(frozen=True)
class Timing:
    """What the request said about time, before it is checked."""

    send_at: datetime | None = None
    repeat_count: int | None = None
    repeat_every_min: int | None = None
    daily_at: time | None = None
    weekdays: tuple[Weekday, ...] = ()
    until: date | None = None


@dataclass(frozen=True)
class Recurrence:
    kind: Kind
    first_at: datetime  # UTC: the first occurrence
    zone: tzinfo
    repeat_count: int = 1
    repeat_every_min: int | None = None
    daily_at: time | None = None
    weekdays: tuple[Weekday, ...] = WEEKDAYS
    until: date | None = None

    def next_after(self, occurrence: datetime) -> datetime | None:
        """The occurrence after ``occurrence`` (itself an occurrence), or None when done."""
        if self.kind == "once":
            return None
        if self.kind == "repeat":
            assert self.repeat_every_min is not None
            every = timedelta(minutes=self.repeat_every_min)
            index = round((occurrence - self.first_at) / every)
            return occurrence + every if index + 1 < self.repeat_count else None
        return self._daily_from(occurrence.astimezone(self.zone).date() + timedelta(days=1))

    def first_at_or_after(self, moment: datetime) -> datetime | None:
        occurrence: datetime | None = self.first_at
        while occurrence is not None and occurrence < moment:
            occurrence = self.next_after(occurrence)
        return occurrence

    def _daily_from(self, day: date) -> datetime | None:
        assert self.daily_at is not None
        assert self.until is not None
        wanted = {WEEKDAYS.index(w) for w in self.weekdays}
        while day <= self.until:
            if day.weekday() in wanted:
                return local_moment(day, self.daily_at, self.zone)
            day += timedelta(days=1)
        return None

    def describe(self) -> str:
        """In Korean, for people: ``매일 07:00 (12월 31일까지)``."""
        if self.kind == "once":
            return describe_local(self.first_at, self.zone)
        if self.kind == "repeat":
            return (
                f"{describe_local(self.first_at, self.zone)}부터 {self.repeat_every_min}분마다 "
                f"{self.repeat_count}회"
            )
        assert self.daily_at is not None
        assert self.until is not None
        days = (
            "매일"
            if set(self.weekdays) == set(WEEKDAYS)
            else "매주 " + "·".join(_WEEKDAY_KO[WEEKDAYS.index(w)] for w in self.weekdays)
        )
        return f"{days} {self.daily_at:%H:%M} ({self.until.month}월 {self.until.day}일까지)"


def _invalid(code: str, ko: str, en: str) -> InvalidRequest:
    return InvalidRequest(code, ko=ko, en=en)


def as_aware(moment: datetime, zone: tzinfo) -> datetime:
    """Naive times are local to the city (Asia/Seoul); aware ones keep their offset."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def build_recurrence(timing: Timing, *, now: datetime, zone: tzinfo) -> Recurrence:
    """Check a request's timing and turn it into a recurrence whose first occurrence is due at
    or after ``now``."""
    repeating = timing.repeat_count is not None or timing.repeat_every_min is not None
    if timing.daily_at is not None and repeating:
        raise _invalid(
            "invalid_recurrence",
            "반복 횟수(repeat_count/repeat_every_min)와 매일 방송(daily_at)은 함께 쓸 수 없습니다.",
            "Give either repeat_count/repeat_every_min or daily_at, not both.",
        )
    if timing.daily_at is None and (timing.weekdays or timing.until is not None):
        raise _invalid(
            "invalid_recurrence",
            "요일(weekdays)과 종료일(until)은 매일 방송 시각(daily_at)과 함께 지정해 주세요.",
            "weekdays and until apply to a recurrence: give daily_at with them.",
        )
    send_at = as_aware(timing.send_at, zone) if timing.send_at is not None else None
    if send_at is not None and send_at < now:
        raise _invalid(
            "send_at_in_past",
            f"예약 시각 {describe_local(send_at, zone, year=True)}은(는) 이미 지났습니다. "
            f"지금({describe_local(now, zone, year=True)}) 이후로 정해 주세요.",
            f"send_at {send_at.isoformat()} is in the past (now is {now.isoformat()}).",
        )
    if timing.daily_at is not None:
        return _daily(timing, start=send_at or now, zone=zone)
    if send_at is None:
        raise _invalid(
            "missing_send_at",
            "예약 시각(send_at)이나 매일 방송 시각(daily_at)이 필요합니다.",
            "A schedule needs send_at, or daily_at with until.",
        )
    if not repeating or timing.repeat_count == 1:
        return Recurrence(kind="once", first_at=send_at, zone=zone)
    if timing.repeat_count is None:
        raise _invalid(
            "recurrence_without_end",
            "반복 방송에는 반복 횟수(repeat_count)가 필요합니다. 끝없는 반복은 예약할 수 없습니다.",
            "A repetition needs repeat_count: a schedule that never ends is refused.",
        )
    if timing.repeat_every_min is None:
        raise _invalid(
            "invalid_recurrence",
            "반복 간격(repeat_every_min, 분)을 지정해 주세요.",
            "repeat_count needs repeat_every_min (minutes between repetitions).",
        )
    if not 1 < timing.repeat_count <= MAX_REPEAT_COUNT:
        raise _invalid(
            "invalid_recurrence",
            f"반복 횟수는 1회에서 {MAX_REPEAT_COUNT}회까지입니다.",
            f"repeat_count must be between 1 and {MAX_REPEAT_COUNT}.",
        )
    if not 1 <= timing.repeat_every_min <= MAX_REPEAT_EVERY_MIN:
        raise _invalid(
            "invalid_recurrence",
            f"반복 간격은 1분에서 {MAX_REPEAT_EVERY_MIN}분까지입니다.",
            f"repeat_every_min must be between 1 and {MAX_REPEAT_EVERY_MIN}.",
        )
    return Recurrence(
        kind="repeat",
        first_at=send_at,
        zone=zone,
        repeat_count=timing.repeat_count,
        repeat_every_min=timing.repeat_every_min,
    )


def _daily(timing: Timing, *, start: datetime, zone: tzinfo) -> Recurrence:
    assert timing.daily_at is not None
    if timing.until is None:
        raise _invalid(
            "recurrence_without_end",
            "매일 반복 방송에는 종료일(until)이 필요합니다. 끝없는 반복은 예약할 수 없습니다.",
            "A daily recurrence needs an end date (until): a schedule that never ends is refused.",
        )
    start_day = start.astimezone(zone).date()
    if timing.until > start_day + timedelta(days=MAX_HORIZON_DAYS):
        raise _invalid(
            "until_too_far",
            f"종료일은 시작일로부터 {MAX_HORIZON_DAYS}일 이내여야 합니다.",
            f"until must be within {MAX_HORIZON_DAYS} days of the start.",
        )
    weekdays = tuple(w for w in WEEKDAYS if w in set(timing.weekdays)) or WEEKDAYS
    probe = Recurrence(
        kind="daily",
        first_at=start,
        zone=zone,
        daily_at=timing.daily_at,
        weekdays=weekdays,
        until=timing.until,
    )
    first = probe._daily_from(start_day)
    while first is not None and first < start:
        first = probe.next_after(first)
    if first is None:
        raise _invalid(
            "recurrence_never_fires",
            f"종료일({timing.until.isoformat()})까지 방송할 날이 없습니다.",
            f"No occurrence falls between the start and until ({timing.until.isoformat()}).",
        )
    return Recurrence(
        kind="daily",
        first_at=first,
        zone=zone,
        daily_at=timing.daily_at,
        weekdays=weekdays,
        until=timing.until,
    )
