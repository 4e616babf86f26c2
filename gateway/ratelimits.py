"""Rate limits on sending, counted from the broadcasts table so every replica sees the same.

A village head who floods the village PA, or a stolen account, meets a clear 429; a disaster
alert is never held back by a limit, but for a village head's: a head may warn their own
villages of a flash flood at 2 a.m. at once, a few times an hour
(``rate_limit_head_disaster_per_hour``), and past that is told to call the district office.

What counts is what goes out: every broadcast, in the hour it is sent, against the person who
asked for it and (for village notices) each village it reaches. A scheduled broadcast is no
exception, and is counted once, never twice:

- making a schedule (``POST /schedules``) is checked like a send: refused with 429 while the
  person or a target village has had its share this hour, and refused (422) when the schedule
  would by itself send more in one hour than the limits allow (``check_repetition``). A
  schedule is not itself counted: only the broadcasts it sends are;
- each occurrence is checked again when it fires, as a send by the person who made the
  schedule, and then counts as their broadcast. One over the limit is not sent: the occurrence
  is recorded as skipped, with the limit's code as the reason, so schedules (or sends held by
  quiet hours) piled up for one moment cannot flood a village then.

The count holds under concurrency: before counting, ``check_send`` locks one ``send_locks`` row
per person and per village counted (an upsert, in sorted order so two senders never wait on
each other in a circle). The lock lasts until the caller's transaction ends, so a second send
by the same person or to the same village waits for the first one's broadcast to be committed
(or rolled back) and then counts it. On PostgreSQL the upsert takes the row's lock; on SQLite,
whose driver begins the transaction at the first write, it takes the database's write lock
before the transaction reads anything, so the count can never come from a stale snapshot.

The deployment's own bootstrap token is not limited, whether it sends or schedules.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.auth import Role
from gateway.broadcasts.models import Broadcast
from gateway.db import Base, UTCDateTime, dialect_insert
from gateway.errors import InvalidRequest, TooManyRequests
from gateway.places.service import village_codes
from gateway.settings import Settings
from gateway.users.models import User
from wire.contract import Category

WINDOW = timedelta(hours=1)


class SendLock(Base):
    """One row per (city, what a limit counts): ``user:<id>`` or ``village:<id>``. Touched by
    every counted send, so that concurrent sends to the same count take turns."""

    __tablename__ = "send_locks"

    city_id: Mapped[int] = mapped_column(
        ForeignKey("cities.id", ondelete="CASCADE"), primary_key=True
    )
    scope_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime())


def limits_actor(actor: str) -> bool:
    """Whether sends recorded as ``actor`` are limited: a person's are (``name#id``, see
    ``Principal.actor``); the bootstrap token's are not."""
    return user_id_of(actor) is not None


def user_id_of(actor: str) -> int | None:
    """The user id in an actor's name (``name#id``); None for the bootstrap token."""
    _, sep, user_id = actor.rpartition("#")
    return int(user_id) if sep and user_id.isdigit() else None


async def role_of(session: AsyncSession, actor: str) -> Role | None:
    """The current role of the person named ``actor`` (a schedule firing knows only the name)."""
    user_id = user_id_of(actor)
    if user_id is None:
        return None
    role = await session.scalar(select(User.role).where(User.id == user_id))
    return Role(role) if role is not None else None


def check_repetition(
    settings: Settings, category: Category, sends_in_an_hour: int, *, role: Role | None = None
) -> None:
    """Refuse a schedule that alone sends more in one hour than the limits allow: it could
    never be sent in full, whatever the hour. Disaster alerts are limited for village heads
    only (``role``: the person making the schedule)."""
    per_user = settings.rate_limit_user_per_hour
    per_village = settings.rate_limit_village_notices_per_hour
    per_head = settings.rate_limit_head_disaster_per_hour
    if category is Category.DISASTER:
        if role is not Role.VILLAGE_HEAD or not per_head or sends_in_an_hour <= per_head:
            return
        limit = per_head
    elif category is Category.VILLAGE_NOTICE and per_village and sends_in_an_hour > per_village:
        limit = per_village
    elif per_user and sends_in_an_hour > per_user:
        limit = per_user
    else:
        return
    raise InvalidRequest(
        "repetition_over_rate_limit",
        ko=f"이 반복 예약은 한 시간에 {sends_in_an_hour}번 방송하게 되어 한 시간 한도"
        f"({limit}건)를 넘습니다. 반복 간격을 늘리거나 횟수를 줄여 주세요.",
        en=f"This schedule would send {sends_in_an_hour} broadcasts within an hour, over the "
        f"limit of {limit} an hour; repeat less often or fewer times.",
    )


async def check_send(
    session: AsyncSession,
    settings: Settings,
    *,
    city_id: int,
    actor: str,
    category: Category,
    village_ids: Collection[int],
    now: datetime,
    role: Role | None = None,
    lock: bool = True,
) -> None:
    """429 when the person, a village or (for a village head's disaster alert) the head has
    had its share this hour. Takes the counts' locks first; they last until the caller's
    transaction ends, so the caller inserts its broadcast in the same transaction. Without
    ``lock`` it is only an early answer (e.g. before a transcode), to be checked again locked.

    ``role`` is the sender's; when not given it is read from the account named in ``actor``
    (only for disaster alerts, the one category where it matters)."""
    since = now - WINDOW
    user_id = user_id_of(actor)
    if category is Category.DISASTER:
        per_head = settings.rate_limit_head_disaster_per_hour
        if user_id is None or not per_head:
            return
        if role is None:
            role = await role_of(session, actor)
        if role is not Role.VILLAGE_HEAD:
            return
        if lock:
            await _lock(session, city_id, [f"user:{user_id}"], now)
        await _check_head_disaster(session, city_id, actor, per_head, since, now)
        return

    per_user = settings.rate_limit_user_per_hour
    per_village = settings.rate_limit_village_notices_per_hour
    villages = (
        sorted(set(village_ids))
        if per_village and category is Category.VILLAGE_NOTICE and village_ids
        else []
    )
    keys = [f"village:{v}" for v in villages]
    if per_user and user_id is not None:
        keys.append(f"user:{user_id}")
    if lock:
        await _lock(session, city_id, keys, now)

    if per_user:
        sent = await _count_by(session, city_id, actor, since)
        if sent >= per_user:
            raise TooManyRequests(
                "rate_limited_user",
                ko=f"한 시간에 방송은 {per_user}건까지 보낼 수 있습니다. "
                "잠시 후 다시 시도해 주세요.",
                en=f"At most {per_user} broadcasts an hour per person; try again later.",
                retry_after_s=await _retry_after(session, city_id, actor, since, now),
            )
    if villages:
        wanted = set(villages)
        recent = await session.execute(
            select(Broadcast.target, Broadcast.created_at).where(
                Broadcast.city_id == city_id,
                Broadcast.category == Category.VILLAGE_NOTICE.value,
                Broadcast.created_at > since,
                Broadcast.cancelled_at.is_(None),
            )
        )
        sent_at: dict[int, list[datetime]] = {}
        for target, created_at in recent.tuples():
            for vid in target.get("resolved_village_ids", []):  # type: ignore[attr-defined]
                if int(vid) in wanted:
                    sent_at.setdefault(int(vid), []).append(created_at)
        full = sorted(v for v, times in sent_at.items() if len(times) >= per_village)
        if full:
            # Each full village has room again when enough of its notices leave the hour.
            frees_at = max(sorted(sent_at[v])[len(sent_at[v]) - per_village] + WINDOW for v in full)
            known = await village_codes(session, full[:5])
            names = ", ".join(known[v][1] if v in known else str(v) for v in full[:5])
            more = f" 외 {len(full) - 5}곳" if len(full) > 5 else ""
            raise TooManyRequests(
                "rate_limited_village",
                ko=f"{names}{more}에는 마을 알림을 한 시간에 {per_village}건까지 보낼 수 있습니다.",
                en=f"At most {per_village} village notices an hour per village ({names}"
                f"{f' and {len(full) - 5} more' if more else ''}).",
                retry_after_s=max(1, int((frees_at - now).total_seconds()) + 1),
            )


async def _check_head_disaster(
    session: AsyncSession, city_id: int, actor: str, per_head: int, since: datetime, now: datetime
) -> None:
    sent = await _count_by(session, city_id, actor, since, category=Category.DISASTER)
    if sent < per_head:
        return
    raise TooManyRequests(
        "rate_limited_head_disaster",
        ko=f"이장님의 재난 방송은 한 시간에 {per_head}건까지 보낼 수 있습니다. "
        "더 알려야 할 위급한 상황이면 읍·면사무소에 바로 전화해 주세요.",
        en=f"A village head may send at most {per_head} disaster alerts an hour; for a further "
        "warning, call the district office (읍·면사무소) now.",
        retry_after_s=await _retry_after(
            session, city_id, actor, since, now, category=Category.DISASTER
        ),
    )


async def lock_person(session: AsyncSession, city_id: int, actor: str, now: datetime) -> None:
    """Serialize one person's sends until the transaction ends (the same lock their limits
    take): what reads their earlier sends and then writes (the two-person rule) sees every one
    of them, however many arrive at once and by whichever path."""
    user_id = user_id_of(actor)
    if user_id is not None:
        await _lock(session, city_id, [f"user:{user_id}"], now)


async def lock_scope(session: AsyncSession, city_id: int, key: str, now: datetime) -> None:
    """Serialize whatever else takes the same ``key`` until the transaction ends."""
    await _lock(session, city_id, [key], now)


async def _lock(session: AsyncSession, city_id: int, keys: Collection[str], now: datetime) -> None:
    """Touch one ``send_locks`` row per key, in sorted order: the row lock (PostgreSQL) or the
    write lock (SQLite) is held until the transaction ends."""
    if not keys:
        return
    insert = dialect_insert(session)
    rows = [{"city_id": city_id, "scope_key": key, "touched_at": now} for key in sorted(set(keys))]
    # One statement per key: each waits for its row in turn, in the same order everywhere.
    for row in rows:
        statement = insert(SendLock).values(row)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[SendLock.city_id, SendLock.scope_key],
                set_={"touched_at": statement.excluded.touched_at},
            )
        )


async def _count_by(
    session: AsyncSession,
    city_id: int,
    actor: str,
    since: datetime,
    *,
    category: Category | None = None,
) -> int:
    query = (
        select(func.count())
        .select_from(Broadcast)
        .where(
            Broadcast.city_id == city_id,
            Broadcast.created_by == actor,
            Broadcast.created_at > since,
        )
    )
    if category is not None:
        query = query.where(Broadcast.category == category.value)
    return int(await session.scalar(query) or 0)


async def _retry_after(
    session: AsyncSession,
    city_id: int,
    actor: str,
    since: datetime,
    now: datetime,
    *,
    category: Category | None = None,
) -> int:
    query = select(func.min(Broadcast.created_at)).where(
        Broadcast.city_id == city_id,
        Broadcast.created_by == actor,
        Broadcast.created_at > since,
    )
    if category is not None:
        query = query.where(Broadcast.category == category.value)
    oldest = await session.scalar(query)
    if oldest is None:
        return 60
    return max(1, int((oldest + WINDOW - now).total_seconds()) + 1)
