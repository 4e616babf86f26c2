"""One sweep over open deliveries: asking again what went unacknowledged, expiring what can no
longer play and closing finished broadcasts."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import (
    Broadcast,
)
from gateway.deliveries.models import Delivery
from gateway.deliveries.service import (
    ACTIVE_VALUES,
    HELD_QUIET_HOURS,
    KEY_REFUSED_REASONS,
    in_chunks,
    speaker_publication,
)
from gateway.deliveries.states import (
    ACTIVE,
    TRANSITIONS,
    Event,
    State,
    next_state,
)
from gateway.speakers.models import Speaker

log = logging.getLogger(__name__)
# Derived from the table rather than restated: which states expire.
_EXPIRABLE = [s.value for s in ACTIVE if TRANSITIONS[s].get(Event.EXPIRED) == State.EXPIRED]

# A speaker that said "playing" gets this long past the end of the message to say "played".
PLAY_GRACE = timedelta(seconds=120)

# Not PREEMPTED: it waits behind a higher priority, for as long as that takes, so its only
# deadline is its broadcast's expiry (then `_expire` closes it).
_AWAITING = [State.SENT.value, State.RECEIVED.value, State.PLAYING.value]


@dataclass(frozen=True)
class Finished:
    """A broadcast this sweep completed: how its deliveries ended, and its last play."""

    broadcast_id: str
    created_at: datetime
    cancelled: bool
    outcomes: dict[str, int]
    last_played_at: datetime | None


@dataclass
class SweepReport:
    retried: int = 0
    timed_out: int = 0
    cancels: int = 0  # signed cancels sent to speakers the gateway gave up on
    expired: int = 0
    stalled: int = 0
    finished: int = 0
    completed: list[Finished] = field(default_factory=list)


async def sweep(
    session: AsyncSession,
    *,
    now: datetime,
    ack_timeout: timedelta,
    max_attempts: int,
    backoff: timedelta,
    limit: int = 2000,
    retries: bool = True,
    presence_doubt_since: datetime | None = None,
) -> SweepReport:
    """Retry what went unacknowledged, expire what can no longer play, close what is done.

    ``retries`` false (this replica cannot reach the broker): nothing is asked again, so no
    attempt is spent on a speaker that could not hear it. ``presence_doubt_since``: speakers not
    heard from since then may have lost their connection unseen; they are not asked (and spend
    no attempt) until they are heard from, and their birth brings a catch-up.
    """
    report = SweepReport()
    if retries:
        await _retry_unacknowledged(
            session, report, now, ack_timeout, max_attempts, backoff, limit, presence_doubt_since
        )
    await _expire(session, report, now)
    finished = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.finished_at.is_(None),
            ~exists().where(
                Delivery.broadcast_id == Broadcast.id, Delivery.state.in_(ACTIVE_VALUES)
            ),
        )
        .values(finished_at=now)
        .returning(Broadcast.id, Broadcast.created_at, Broadcast.cancelled_at)
        .execution_options(synchronize_session=False)
    )
    closed = {row[0]: (row[1], row[2] is not None) for row in finished.tuples()}
    report.finished = len(closed)
    report.completed = await _finished(session, closed)
    await session.flush()
    return report


async def _finished(
    session: AsyncSession, closed: dict[str, tuple[datetime, bool]]
) -> list[Finished]:
    """What the metrics and the log say of each broadcast a sweep completed."""
    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    last_played: dict[str, datetime] = {}
    for chunk in in_chunks(sorted(closed)):
        rows = await session.execute(
            select(
                Delivery.broadcast_id, Delivery.state, func.count(), func.max(Delivery.played_at)
            )
            .where(Delivery.broadcast_id.in_(chunk))
            .group_by(Delivery.broadcast_id, Delivery.state)
        )
        for broadcast_id, state, count, played_at in rows.tuples():
            outcomes[broadcast_id][state] = count
            if played_at is not None and (
                broadcast_id not in last_played or played_at > last_played[broadcast_id]
            ):
                last_played[broadcast_id] = played_at
    return [
        Finished(
            broadcast_id=broadcast_id,
            created_at=created_at,
            cancelled=cancelled,
            outcomes=outcomes.get(broadcast_id, {}),
            last_played_at=last_played.get(broadcast_id),
        )
        for broadcast_id, (created_at, cancelled) in closed.items()
    ]


async def _retry_unacknowledged(
    session: AsyncSession,
    report: SweepReport,
    now: datetime,
    ack_timeout: timedelta,
    max_attempts: int,
    backoff: timedelta,
    limit: int,
    doubt_since: datetime | None = None,
) -> None:
    due = (
        await session.execute(
            select(Delivery, Speaker.online, Speaker.code, Speaker.last_seen_at)
            .join(Speaker, Speaker.id == Delivery.speaker_id)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(
                Delivery.state.in_(_AWAITING),
                Delivery.deadline_at < now,
                Broadcast.cancelled_at.is_(None),
                Broadcast.expires_at > now,
            )
            .limit(limit)
            # An ack being recorded right now answers the question; skip it rather than wait.
            .with_for_update(of=Delivery, skip_locked=True)
        )
    ).tuples()
    for delivery, online, code, last_seen_at in due:
        if not online:
            # No point spending attempts on a speaker that is away; its birth message brings a
            # catch-up, and the broadcast's expiry closes the delivery if it never returns.
            delivery.deadline_at = now + ack_timeout
            delivery.reason = "offline"
            continue
        if doubt_since is not None and (last_seen_at is None or last_seen_at < doubt_since):
            # Perhaps away since the broker restarted (no will said so): wait for its birth or
            # heartbeat; if neither comes, it is marked offline and the rule above applies.
            delivery.deadline_at = now + ack_timeout
            continue
        if delivery.attempts >= max_attempts:
            delivery.state = next_state(State(delivery.state), Event.TIMED_OUT).value
            if delivery.reason not in KEY_REFUSED_REASONS:
                delivery.reason = "no_ack"
            delivery.updated_at = now
            report.timed_out += 1
            # Given up: the speaker may still hold the command (frozen, its acks lost). A signed
            # cancel on its own topic makes it drop the command when it wakes, so the record
            # stays true; should it play anyway, its late "played" ends the delivery
            # played_late, never played.
            session.add(
                speaker_publication(
                    delivery.broadcast_id, code, delivery.speaker_id, now, kind="cancel"
                )
            )
            report.cancels += 1
            continue
        wait = backoff * (2 ** max(0, delivery.attempts - 1))
        delivery.deadline_at = now + wait + ack_timeout
        if delivery.state != State.SENT.value:
            # A publish moves only queued and sent deliveries; count this ask here.
            delivery.attempts += 1
            delivery.sends += 1
        # The ask goes out after its back-off, not at once: the publish then sets the deadline
        # (ack timeout after it), so asks are spaced by the back-off plus the ack timeout.
        session.add(
            speaker_publication(
                delivery.broadcast_id,
                code,
                delivery.speaker_id,
                now,
                available_at=now + wait,
                audio_set=delivery.audio_set,
            )
        )
        report.retried += 1


async def _expire(session: AsyncSession, report: SweepReport, now: datetime) -> None:
    expired_broadcasts = select(Broadcast.id).where(
        Broadcast.finished_at.is_(None), Broadcast.expires_at <= now
    )
    offline_speakers = select(Speaker.id).where(Speaker.online.is_(False))
    for reason, speaker_filter in (
        ("offline", Delivery.speaker_id.in_(offline_speakers)),
        ("expired", Delivery.speaker_id.not_in(offline_speakers)),
    ):
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.broadcast_id.in_(expired_broadcasts),
                Delivery.state.in_(_EXPIRABLE),
                speaker_filter,
            )
            .values(
                state=State.EXPIRED.value,
                # One an indoor receiver held for its household keeps saying so.
                reason=case((Delivery.reason == HELD_QUIET_HOURS, HELD_QUIET_HOURS), else_=reason),
                updated_at=now,
                version=Delivery.version + 1,
            )
            .execution_options(synchronize_session=False)
        )
        report.expired += int(getattr(result, "rowcount", 0) or 0)
    stalled = (
        await session.execute(
            select(Delivery, Broadcast.duration_ms)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(Delivery.state == State.PLAYING.value, Broadcast.expires_at <= now)
        )
    ).tuples()
    for delivery, duration_ms in stalled:
        started = delivery.playing_at or delivery.updated_at
        if started + timedelta(milliseconds=duration_ms) + PLAY_GRACE < now:
            delivery.state = next_state(State.PLAYING, Event.TIMED_OUT).value
            delivery.reason = "no_played_ack"
            delivery.updated_at = now
            report.stalled += 1
