"""A broadcast's fallback as the API shows it: per village, its job and its phone counts."""

from __future__ import annotations

from collections import defaultdict
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.fallback.channels import REFERENCE_KIND
from gateway.fallback.models import ChannelDelivery, FallbackJob
from gateway.fallback.schemas import PhoneCounts as PhoneCounts
from gateway.fallback.schemas import PushCounts as PushCounts
from gateway.fallback.schemas import VillageFallback
from gateway.push.models import PushMessage
from gateway.sms.models import SmsMessage

# An SMS's state, as the phone counts name it.
_COUNTED_AS = {
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "over_budget": "failed",
    "skipped": "skipped",
}


async def phone_counts(session: AsyncSession, broadcast_id: str) -> dict[int, PhoneCounts]:
    """Per village: residents told by phone, by the state of their message."""
    state = func.coalesce(SmsMessage.status, ChannelDelivery.state)
    rows = await session.execute(
        select(ChannelDelivery.village_id, state, func.count())
        .outerjoin(SmsMessage, SmsMessage.id == ChannelDelivery.message_id)
        .where(ChannelDelivery.broadcast_id == broadcast_id)
        .group_by(ChannelDelivery.village_id, state)
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for village_id, status, n in rows.tuples():
        key = _COUNTED_AS.get(status, "queued")
        counts[village_id][key] = counts[village_id].get(key, 0) + n
    return {vid: PhoneCounts(**c) for vid, c in counts.items()}


async def push_counts(session: AsyncSession, broadcast_id: str) -> dict[int, PushCounts]:
    """Per village: browsers told by web push, by the state of their message (the push outbox
    is the record: see `gateway.fallback.channels`)."""
    rows = await session.execute(
        select(PushMessage.village_id, PushMessage.status, func.count())
        .where(
            PushMessage.reference_kind == REFERENCE_KIND,
            PushMessage.reference_id == broadcast_id,
        )
        .group_by(PushMessage.village_id, PushMessage.status)
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for village_id, status, n in rows.tuples():
        key = "queued" if status == "sending" else status
        if key in PushCounts.model_fields:
            counts[village_id][key] = counts[village_id].get(key, 0) + n
    return {vid: PushCounts(**c) for vid, c in counts.items()}


_Counts = TypeVar("_Counts", PhoneCounts, PushCounts)


def total(counts: dict[int, _Counts], kind: type[_Counts]) -> _Counts:
    summed = kind()
    for c in counts.values():
        for name in kind.model_fields:
            setattr(summed, name, getattr(summed, name) + getattr(c, name))
    return summed


async def fallbacks(session: AsyncSession, broadcast_id: str) -> dict[int, VillageFallback]:
    jobs = await session.scalars(
        select(FallbackJob).where(FallbackJob.broadcast_id == broadcast_id)
    )
    return {
        job.village_id: VillageFallback(
            state=job.state,
            reason=job.reason,
            due_at=job.due_at,
            channels=list(job.channels),
            decided_at=job.decided_at,
        )
        for job in jobs
    }
