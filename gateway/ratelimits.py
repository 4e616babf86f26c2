"""Rate limits on sending, counted from the broadcasts table so every replica sees the same.

A village head who floods the village PA, or a stolen account, meets a clear 429; a disaster
alert is never held back by a limit.

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

The deployment's own bootstrap token is not limited, whether it sends or schedules.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Broadcast
from gateway.errors import InvalidRequest, TooManyRequests
from gateway.settings import Settings
from wire.contract import Category

WINDOW = timedelta(hours=1)


def limits_actor(actor: str) -> bool:
    """Whether sends recorded as ``actor`` are limited: a person's are (``name#id``, see
    ``Principal.actor``); the bootstrap token's are not."""
    _, sep, user_id = actor.rpartition("#")
    return bool(sep) and user_id.isdigit()


def check_repetition(settings: Settings, category: Category, sends_in_an_hour: int) -> None:
    """Refuse a schedule that alone sends more in one hour than the limits allow: it could
    never be sent in full, whatever the hour."""
    if category is Category.DISASTER:
        return
    per_user = settings.rate_limit_user_per_hour
    per_village = settings.rate_limit_village_notices_per_hour
    if category is Category.VILLAGE_NOTICE and per_village and sends_in_an_hour > per_village:
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
) -> None:
    if category is Category.DISASTER:
        return
    since = now - WINDOW
    per_user = settings.rate_limit_user_per_hour
    if per_user:
        sent = await session.scalar(
            select(func.count())
            .select_from(Broadcast)
            .where(
                Broadcast.city_id == city_id,
                Broadcast.created_by == actor,
                Broadcast.created_at > since,
            )
        )
        if (sent or 0) >= per_user:
            raise TooManyRequests(
                "rate_limited_user",
                ko=f"한 시간에 방송은 {per_user}건까지 보낼 수 있습니다. "
                "잠시 후 다시 시도해 주세요.",
                en=f"At most {per_user} broadcasts an hour per person; try again later.",
                retry_after_s=await _retry_after(session, city_id, actor, since, now),
            )
    per_village = settings.rate_limit_village_notices_per_hour
    if per_village and category is Category.VILLAGE_NOTICE and village_ids:
        wanted = set(village_ids)
        recent = await session.scalars(
            select(Broadcast.target).where(
                Broadcast.city_id == city_id,
                Broadcast.category == Category.VILLAGE_NOTICE.value,
                Broadcast.created_at > since,
                Broadcast.cancelled_at.is_(None),
            )
        )
        counts: dict[int, int] = {}
        for target in recent:
            for vid in target.get("resolved_village_ids", []):  # type: ignore[attr-defined]
                if int(vid) in wanted:
                    counts[int(vid)] = counts.get(int(vid), 0) + 1
        full = sorted(v for v, n in counts.items() if n >= per_village)
        if full:
            raise TooManyRequests(
                "rate_limited_village",
                ko=f"마을 알림은 한 마을에 한 시간에 {per_village}건까지입니다 (마을 {full[:5]}).",
                en=f"At most {per_village} village notices an hour per village (villages "
                f"{full[:5]}).",
                retry_after_s=600,
            )


async def _retry_after(
    session: AsyncSession, city_id: int, actor: str, since: datetime, now: datetime
) -> int:
    oldest = await session.scalar(
        select(func.min(Broadcast.created_at)).where(
            Broadcast.city_id == city_id,
            Broadcast.created_by == actor,
            Broadcast.created_at > since,
        )
    )
    if oldest is None:
        return 60
    return max(1, int((oldest + WINDOW - now).total_seconds()) + 1)
