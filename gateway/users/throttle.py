"""Failed logins, counted per source and username: guessing slows down, nobody is locked out.

A source is the client's address as the trusted proxies vouch for it (``gateway.forwarding``);
an IPv6 client counts as its /64, the block one subscriber holds. Two counts are kept for each
failed login, whether or not the username exists:

- the source at that username: past ``login_max_failures`` the source waits before its next try
  at that username;
- the source at every username: past ``login_source_max_failures`` it waits before any try, so
  trying many names (or passwords sprayed across accounts) meets the same wall.

The wait is ``login_delay_s``, doubled by each further failure, at most ``login_max_delay_s``.
A try during a wait is refused before anything is looked up or hashed (429 ``login_throttled``
with ``Retry-After``), so a flood costs a read, not a password hash. A right password clears the
source's count at that username; the source-wide count only fades, so logging in to one's own
account does not buy more guesses at others. An account is never locked: its owner, from their
own office or phone, logs in while the stranger's address waits.

The counts are rows (``login_throttles``), so every replica sees the same; a row is forgotten
a day after its last failure, and deleted by the hourly purge (``purge``), so the table holds at
most a day of failures.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import dialect_insert
from gateway.errors import TooManyRequests
from gateway.settings import Settings
from gateway.users.models import LoginThrottle

FORGET_AFTER: Final = timedelta(days=1)
EVERY_USERNAME: Final = ""
NAME_LENGTH: Final = 64


def source_of(address: str | None) -> str:
    """The source a login is counted against: the address, an IPv6 one's /64."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _name(username: str) -> str:
    # Case folded: "Officer" and "officer" are one target for a guesser.
    return username.casefold()[:NAME_LENGTH] or "-"


def _throttled(seconds: float) -> TooManyRequests:
    wait = max(1, math.ceil(seconds))
    return TooManyRequests(
        "login_throttled",
        ko=f"이 기기(인터넷 연결)에서 로그인 실패가 여러 번 있었습니다. {wait}초 뒤에 다시 "
        "시도해 주세요. 다른 인터넷 연결(예: 휴대폰 데이터)로는 바로 로그인할 수 있습니다.",
        en=f"Too many failed logins from this address: try again in {wait} second(s). "
        "Logging in over another internet connection (e.g. mobile data) works at once.",
        retry_after_s=wait,
    )


async def check(
    session: AsyncSession, *, city_id: int, source: str, username: str, now: datetime
) -> None:
    """Refuse (429) a try from `source` at `username` while either of its counts says wait."""
    blocked = await session.scalar(
        select(LoginThrottle.blocked_until)
        .where(
            LoginThrottle.city_id == city_id,
            LoginThrottle.source == source,
            LoginThrottle.username.in_((EVERY_USERNAME, _name(username))),
            LoginThrottle.blocked_until > now,
        )
        .order_by(LoginThrottle.blocked_until.desc())
        .limit(1)
    )
    if blocked is not None:
        raise _throttled((blocked - now).total_seconds())


def delay(settings: Settings, failures: int, allowed: int) -> timedelta | None:
    """How long a source waits after its `failures`-th failure, with `allowed` free ones."""
    if failures < allowed:
        return None
    doublings = min(failures - allowed, 20)
    return timedelta(seconds=min(settings.login_max_delay_s, settings.login_delay_s * 2**doublings))


async def record_failure(
    session: AsyncSession,
    settings: Settings,
    *,
    city_id: int,
    source: str,
    username: str,
    now: datetime,
) -> bool:
    """Count a failed login in both of its counts; True when the source must now wait."""
    insert = dialect_insert(session)
    waits = False
    counts = (
        (_name(username), settings.login_max_failures),
        (EVERY_USERNAME, settings.login_source_max_failures),
    )
    for name, allowed in counts:
        statement = insert(LoginThrottle).values(
            city_id=city_id, source=source, username=name, failures=1, last_failure_at=now
        )
        failures = await session.scalar(
            statement.on_conflict_do_update(
                index_elements=[
                    LoginThrottle.city_id,
                    LoginThrottle.source,
                    LoginThrottle.username,
                ],
                set_={
                    # Atomic, so concurrent failures each count.
                    "failures": case(
                        (LoginThrottle.last_failure_at < now - FORGET_AFTER, 1),
                        else_=LoginThrottle.failures + 1,
                    ),
                    "last_failure_at": now,
                },
            ).returning(LoginThrottle.failures)
        )
        wait = delay(settings, int(failures or 1), allowed)
        if wait is not None:
            waits = True
            await session.execute(
                update(LoginThrottle)
                .where(
                    LoginThrottle.city_id == city_id,
                    LoginThrottle.source == source,
                    LoginThrottle.username == name,
                )
                .values(blocked_until=now + wait)
            )
    return waits


async def clear(session: AsyncSession, *, city_id: int, source: str, username: str) -> None:
    """A right password: the source's count at that username starts again."""
    await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.city_id == city_id,
            LoginThrottle.source == source,
            LoginThrottle.username == _name(username),
        )
    )


async def count_request(
    session: AsyncSession, *, city_id: int, source: str, name: str, window_s: int, now: datetime
) -> tuple[int, datetime]:
    """Count one request from ``source`` under ``name`` (``#``-prefixed: no username is one) in
    the fixed window of ``window_s`` seconds that ``now`` falls in, in the same rows as failed
    logins, so every replica counts together; the count so far in the window, and its end."""
    start = datetime.fromtimestamp(now.timestamp() // window_s * window_s, tz=now.tzinfo)
    insert = dialect_insert(session)
    statement = insert(LoginThrottle).values(
        city_id=city_id, source=source, username=name, failures=1, last_failure_at=now
    )
    count = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[LoginThrottle.city_id, LoginThrottle.source, LoginThrottle.username],
            set_={
                "failures": case(
                    (LoginThrottle.last_failure_at < start, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
        ).returning(LoginThrottle.failures)
    )
    return int(count or 1), start + timedelta(seconds=window_s)


async def purge(session: AsyncSession, *, city_id: int, now: datetime) -> int:
    """Delete the counts forgotten (last failure over a day ago); how many."""
    result = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.city_id == city_id, LoginThrottle.last_failure_at < now - FORGET_AFTER
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
