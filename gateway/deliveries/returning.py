"""Speakers that come back: what they missed and may still play is published to them again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import (
    Broadcast,
)
from gateway.deliveries.models import Delivery
from gateway.deliveries.service import speaker_publication
from gateway.deliveries.states import (
    State,
)
from gateway.speakers.models import Speaker

_CATCH_UP = [State.QUEUED.value, State.SENT.value]


async def catch_up_later(
    session: AsyncSession, speaker_ids: Sequence[int], now: datetime, grace: timedelta
) -> int:
    """Speakers that came back with the session the broker kept for them: what was published to
    them while they were away reaches them from the broker, so it is not sent again now.

    Each such delivery (sent, not yet acknowledged) is due `grace` from now instead: the
    sweeper asks again then for those still without a `received` ack, as for any unanswered
    command (and counted as one); those acked by then are left alone. What was never published
    (queued) is not in the session and is caught up at once."""
    if not speaker_ids:
        return 0
    waiting = await session.execute(
        update(Delivery)
        .where(
            Delivery.speaker_id.in_(speaker_ids),
            Delivery.state == State.SENT.value,
            Delivery.broadcast_id.in_(
                select(Broadcast.id).where(
                    Broadcast.finished_at.is_(None),
                    Broadcast.cancelled_at.is_(None),
                    Broadcast.expires_at > now,
                )
            ),
        )
        .values(deadline_at=now + grace, version=Delivery.version + 1)
        .execution_options(synchronize_session=False)
    )
    await catch_up(session, speaker_ids, now, states=(State.QUEUED.value,))
    return int(getattr(waiting, "rowcount", 0) or 0)


async def catch_up(
    session: AsyncSession,
    speaker_ids: Sequence[int],
    now: datetime,
    *,
    states: Sequence[str] = tuple(_CATCH_UP),
) -> int:
    """Speakers that came back get, on their own topic, what they missed and may still play."""
    if not speaker_ids:
        return 0
    rows = (
        await session.execute(
            select(Delivery.broadcast_id, Delivery.speaker_id, Speaker.code, Delivery.audio_set)
            .join(Speaker, Speaker.id == Delivery.speaker_id)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(
                Delivery.speaker_id.in_(speaker_ids),
                Delivery.state.in_(states),
                Broadcast.finished_at.is_(None),
                Broadcast.cancelled_at.is_(None),
                Broadcast.expires_at > now,
            )
        )
    ).tuples()
    count = 0
    for broadcast_id, speaker_id, code, audio_set in rows:
        session.add(speaker_publication(broadcast_id, code, speaker_id, now, audio_set=audio_set))
        count += 1
    await session.flush()
    return count
