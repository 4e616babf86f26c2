"""Delivery bookkeeping: creating deliveries, applying acks, retries, expiry and summaries."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, TypeVar

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import (
    Broadcast,
    Publication,
    cancel_command_id,
    superseded_command_ids,
)
from gateway.deliveries import proof
from gateway.deliveries.models import Delivery
from gateway.deliveries.states import (
    ACTIVE,
    HEARD,
    TRANSITIONS,
    Event,
    InvalidTransition,
    State,
    next_state,
)
from gateway.speakers.models import Speaker
from gateway.speakers.service import TargetSpeaker
from wire.contract import COPY_REFUSALS, AckStatus, RejectReason

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Values in one IN list, a power of two (see ``padded``), under SQLite's old limit of 999.
IN_CHUNK: Final = 512

_ACK_EVENTS = {
    AckStatus.RECEIVED: Event.RECEIVED,
    AckStatus.PLAYING: Event.PLAYING,
    AckStatus.PREEMPTED: Event.PREEMPTED,
    AckStatus.PLAYED: Event.PLAYED,
    AckStatus.FAILED: Event.FAILED,
    AckStatus.REJECTED: Event.REJECTED,
}
# Refusals of the key, not of the command: signed before the speaker learned the current key, or
# by a key revoked since it was signed. The next ask is signed afresh by the current key.
_KEY_REFUSALS: Final = frozenset({RejectReason.UNKNOWN_KEY, RejectReason.REVOKED_KEY})
_KEY_REFUSED_REASONS: Final = frozenset(f"rejected: {r.value}" for r in _KEY_REFUSALS)
_ACTIVE = [s.value for s in ACTIVE]
# Derived from the table rather than restated: which states a publish moves, which expire.
_PUBLISHABLE = [s.value for s in State if TRANSITIONS[s].get(Event.PUBLISHED) == State.SENT]
_EXPIRABLE = [s.value for s in ACTIVE if TRANSITIONS[s].get(Event.EXPIRED) == State.EXPIRED]
_CANCELLABLE = [s.value for s in ACTIVE if TRANSITIONS[s].get(Event.CANCELLED) == State.CANCELLED]
_CATCH_UP = [State.QUEUED.value, State.SENT.value]
# A speaker that said "playing" gets this long past the end of the message to say "played".
PLAY_GRACE = timedelta(seconds=120)
# After "received" or "playing", the next ack is due within the message's length plus this;
# if it does not come (an ack lost with a broker restart), the speaker is asked again and
# answers from its journal, without playing twice.
ACK_GRACE = timedelta(seconds=30)
# Not PREEMPTED: it waits behind a higher priority, for as long as that takes, so its only
# deadline is its broadcast's expiry (then `_expire` closes it).
_AWAITING = [State.SENT.value, State.RECEIVED.value, State.PLAYING.value]
# What a speaker holds and has still to play: a command it received waits behind these.
_HELD = [State.RECEIVED.value, State.PLAYING.value, State.PREEMPTED.value]


async def create_deliveries(
    session: AsyncSession, broadcast_id: str, recipients: Sequence[TargetSpeaker], now: datetime
) -> None:
    if not recipients:
        return
    await session.execute(
        insert(Delivery),
        [
            {
                "broadcast_id": broadcast_id,
                "speaker_id": s.id,
                "village_id": s.village_id,
                "district_id": s.district_id,
                "state": State.QUEUED.value,
                "attempts": 0,
                "updated_at": now,
            }
            for s in recipients
        ],
    )


async def mark_published(
    session: AsyncSession,
    publication: Publication,
    *,
    now: datetime,
    ack_timeout: timedelta,
) -> int:
    """The broker took a command: open deliveries in its scope now wait for the speaker's ack."""
    scope = {
        "all": None,
        "district": Delivery.district_id,
        "village": Delivery.village_id,
        "speaker": Delivery.speaker_id,
    }[publication.scope_kind]
    statement = (
        update(Delivery)
        .where(
            Delivery.broadcast_id == publication.broadcast_id,
            Delivery.state.in_(_PUBLISHABLE),
        )
        .values(
            version=Delivery.version + 1,
            state=State.SENT.value,
            attempts=Delivery.attempts + 1,
            sent_at=now,
            deadline_at=now + ack_timeout,
            updated_at=now,
        )
    )
    if scope is not None:
        statement = statement.where(scope.in_(publication.scope_keys))
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class AckIn:
    """A speaker's ack, already checked against the contract and mapped to a speaker row."""

    speaker_id: int
    broadcast_id: str
    command_id: str
    status: AckStatus
    at: datetime
    reason: str | None = None
    audio_sha256: str | None = None
    played_ms: int | None = None
    level_dbfs: float | None = None
    # The speaker's own time (ms) and receipt signature, as signed; a live stream's reception.
    at_ms: int | None = None
    receipt_sig: str | None = None
    live_latency_ms: int | None = None
    live_frames_lost: int | None = None
    # A resend acked ``played`` without playing again: the speaker had played this earlier
    # command, which the resend supersedes (the proof is that playback's).
    already_played_as: str | None = None


@dataclass
class AckReport:
    applied: int = 0
    unchanged: int = 0
    unknown: int = 0
    illegal: int = 0
    cancel_acks: int = 0
    bad_proofs: int = 0
    changed_broadcasts: set[str] = field(default_factory=set)
    # Acks that match no delivery of their speaker, by speaker id (the intake bounds them).
    unknown_by_speaker: Counter[int] = field(default_factory=Counter)


async def apply_acks(session: AsyncSession, acks: Sequence[AckIn]) -> AckReport:
    """Apply a batch of acks in one transaction. Duplicates and late acks change nothing."""
    report = AckReport()
    if not acks:
        return report
    broadcast_ids = {a.broadcast_id for a in acks}
    found_commands = await session.execute(
        select(
            Broadcast.id,
            Broadcast.command_id,
            Broadcast.duration_ms,
            Broadcast.expires_at,
            Broadcast.target,
            Broadcast.priority,
        ).where(Broadcast.id.in_(padded(sorted(broadcast_ids))))
    )
    rows_found = found_commands.tuples().all()
    priorities = {row[0]: row[5] for row in rows_found}
    command_ids = {row[0]: row[1] for row in rows_found}
    durations = {row[0]: timedelta(milliseconds=row[2]) for row in rows_found}
    expiries = {row[0]: row[3] for row in rows_found}
    superseded = {
        row[0]: frozenset(superseded_command_ids(row[4] or {}) or ()) for row in rows_found
    }
    wanted = {(a.broadcast_id, a.speaker_id) for a in acks}
    rows: dict[tuple[str, int], Delivery] = {}
    for chunk in _chunks(sorted({a.speaker_id for a in acks})):
        # Locked, in one order: replicas given acks for the same deliveries by the shared
        # subscription take turns instead of failing each other's batches on the version check.
        found = await session.scalars(
            select(Delivery)
            .where(
                Delivery.broadcast_id.in_(padded(sorted(broadcast_ids))),
                Delivery.speaker_id.in_(chunk),
            )
            .order_by(Delivery.id)
            .with_for_update()
        )
        for row in found:
            key = (row.broadcast_id, row.speaker_id)
            if key in wanted:
                rows[key] = row
    checks = await proof.prepare(session, acks)
    queues = await _speaker_queues(
        session, {a.speaker_id for a in acks if a.status is AckStatus.RECEIVED}
    )

    for ack in sorted(acks, key=lambda a: a.at):
        found_row = rows.get((ack.broadcast_id, ack.speaker_id))
        play_id = command_ids.get(ack.broadcast_id)
        if play_id is not None and ack.command_id == cancel_command_id(play_id):
            report.cancel_acks += 1
            continue
        if found_row is None or play_id != ack.command_id:
            report.unknown += 1
            report.unknown_by_speaker[ack.speaker_id] += 1
            continue
        delivery = found_row
        event = _ACK_EVENTS[ack.status]
        if event is Event.REJECTED and ack.reason in _KEY_REFUSALS:
            event = Event.KEY_REFUSED  # not final: asked again, signed by the current key
        verdict = checks.judge(ack) if event is Event.PLAYED else None
        bad_proof = verdict is not None and verdict.problem is not None
        if bad_proof:
            event = Event.FAILED  # a "played" that proves nothing is a failure, never a play
        proof.keep_live_report(delivery, ack)
        current = State(delivery.state)
        if (
            event is Event.REJECTED
            and ack.reason in COPY_REFUSALS
            and current in (State.RECEIVED, State.PREEMPTED)
        ):
            # The speaker accepted an authentic copy: this refuses a forged or replayed one
            # (a security event), it is not the speaker's answer to the command.
            report.unchanged += 1
            continue
        try:
            new = next_state(current, event)
        except InvalidTransition as exc:
            log.debug("ignored ack: %s", exc)
            report.illegal += 1
            continue
        if (
            event is Event.PREEMPTED
            and current is State.PLAYING
            and delivery.playing_at is not None
            and ack.at < delivery.playing_at
        ):
            # A late copy of an earlier pre-emption: the speaker has since played it again.
            report.unchanged += 1
            continue
        if new in (State.RECEIVED, State.PLAYING):
            # The speaker is alive and has it: the next ack is due after the message's length,
            # and once received, after what it holds that plays first (at its priority or
            # above), so a speaker working through a backlog is not asked again before the
            # command's turn can come.
            ahead = timedelta(0)
            if new is State.RECEIVED:
                queue = queues.setdefault(delivery.speaker_id, {})
                priority = priorities[ack.broadcast_id]
                ahead = sum(
                    (d for key, (d, p) in queue.items() if key != delivery.id and p >= priority),
                    timedelta(0),
                )
                queue[delivery.id] = (durations[ack.broadcast_id], priority)
            delivery.deadline_at = ack.at + ahead + durations[ack.broadcast_id] + ACK_GRACE
            # Attempts count asks left unanswered; an answer starts the count again.
            delivery.attempts = 0
        elif new == State.PREEMPTED:
            # It waits behind a higher priority for as long as that takes: no ack is due before
            # the broadcast expires (the sweeper does not ask; `_expire` closes it then).
            delivery.deadline_at = expiries[ack.broadcast_id]
            delivery.attempts = 0
        if event is Event.KEY_REFUSED and new in (State.QUEUED, State.SENT):
            # Waiting for the speaker to learn the key: the sweeper asks again when due.
            delivery.reason = f"rejected: {ack.reason}"
        if new == current and event is not Event.PLAYED:
            report.unchanged += 1
            continue
        if new != current:
            delivery.state = new.value
            delivery.updated_at = ack.at
            report.changed_broadcasts.add(delivery.broadcast_id)
        if new == State.RECEIVED and delivery.received_at is None:
            delivery.received_at = ack.at
        elif new == State.PLAYING and (delivery.playing_at is None or current == State.PREEMPTED):
            # After a pre-emption it plays again from the start: that is the playback to time.
            delivery.playing_at = ack.at
        elif new in HEARD:
            if delivery.played_at is None:
                delivery.played_at = ack.at
                # Played on time: nothing went wrong. Played late: the reason it had ended
                # stays (e.g. no_ack), so the record says what happened.
                if new == State.PLAYED:
                    delivery.reason = _played_as(ack, superseded[ack.broadcast_id])
            assert verdict is not None
            proof.keep_receipt(delivery, ack, verdict)
        elif new == State.FAILED and new != current and bad_proof:
            delivery.reason = proof.BAD_PROOF
        elif new == State.FAILED and new != current:
            prefix = "rejected" if ack.status is AckStatus.REJECTED else "failed"
            delivery.reason = f"{prefix}: {ack.reason or 'unspecified'}"[:200]
        if new != current or event is Event.PLAYED:
            report.applied += 1
    report.bad_proofs = await checks.record_findings(session)
    await session.flush()
    return report


def _played_as(ack: AckIn, supersedes: frozenset[str]) -> str | None:
    """The reason kept with a ``played`` that the speaker answered from an earlier playback."""
    if ack.already_played_as is None:
        return None
    if ack.already_played_as not in supersedes:
        # Not a command this broadcast supersedes: kept as said, marked as unexpected.
        return f"already_played_as_unknown:{ack.already_played_as}"
    return f"already_played_as:{ack.already_played_as}"


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
            ~exists().where(Delivery.broadcast_id == Broadcast.id, Delivery.state.in_(_ACTIVE)),
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
    for chunk in _chunks(sorted(closed)):
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
            if delivery.reason not in _KEY_REFUSED_REASONS:
                delivery.reason = "no_ack"
            delivery.updated_at = now
            report.timed_out += 1
            # Given up: the speaker may still hold the command (frozen, its acks lost). A signed
            # cancel on its own topic makes it drop the command when it wakes, so the record
            # stays true; should it play anyway, its late "played" ends the delivery
            # played_late, never played.
            session.add(
                _speaker_publication(
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
        # The ask goes out after its back-off, not at once: the publish then sets the deadline
        # (ack timeout after it), so asks are spaced by the back-off plus the ack timeout.
        session.add(
            _speaker_publication(
                delivery.broadcast_id, code, delivery.speaker_id, now, available_at=now + wait
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
                reason=reason,
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


async def _speaker_queues(
    session: AsyncSession, speaker_ids: set[int]
) -> dict[int, dict[int, tuple[timedelta, int]]]:
    """What each speaker holds and has not played yet (received, playing or pre-empted, of
    broadcasts still running): delivery id -> (length, priority), per speaker."""
    queues: dict[int, dict[int, tuple[timedelta, int]]] = defaultdict(dict)
    for chunk in _chunks(sorted(speaker_ids)):
        rows = await session.execute(
            select(Delivery.speaker_id, Delivery.id, Broadcast.duration_ms, Broadcast.priority)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(
                Delivery.speaker_id.in_(chunk),
                Delivery.state.in_(_HELD),
                Broadcast.finished_at.is_(None),
                Broadcast.cancelled_at.is_(None),
            )
        )
        for speaker_id, delivery_id, duration_ms, priority in rows.tuples():
            queues[speaker_id][delivery_id] = (timedelta(milliseconds=duration_ms), priority)
    return dict(queues)


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
            select(Delivery.broadcast_id, Delivery.speaker_id, Speaker.code)
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
    for broadcast_id, speaker_id, code in rows:
        session.add(_speaker_publication(broadcast_id, code, speaker_id, now))
        count += 1
    await session.flush()
    return count


def _speaker_publication(
    broadcast_id: str,
    code: str,
    speaker_id: int,
    now: datetime,
    *,
    kind: str = "play",
    available_at: datetime | None = None,
) -> Publication:
    return Publication(
        broadcast_id=broadcast_id,
        kind=kind,
        scope_kind="speaker",
        scope_ids=[code],
        scope_keys=[speaker_id],
        state="pending",
        attempts=0,
        available_at=now if available_at is None else available_at,
        created_at=now,
    )


@dataclass(frozen=True)
class VillageTally:
    village_id: int
    played: int
    open_online: int
    open_offline: int
    total: int

    @property
    def outcome(self) -> str:
        if self.total == 0:
            return "no_speakers"
        if self.open_online:
            return "in_progress"
        if self.open_offline:
            return "offline"
        if self.played == self.total:
            return "played"
        return "partial" if self.played else "missed"


async def tally(
    session: AsyncSession, broadcast_id: str
) -> tuple[dict[str, int], dict[int, VillageTally]]:
    """Speaker counts by state (open deliveries to offline speakers counted as 'offline'), and
    one tally per village that has speakers in the broadcast."""
    rows = (
        await session.execute(
            select(Delivery.village_id, Delivery.state, Speaker.online, func.count())
            .join(Speaker, Speaker.id == Delivery.speaker_id)
            .where(Delivery.broadcast_id == broadcast_id)
            .group_by(Delivery.village_id, Delivery.state, Speaker.online)
        )
    ).tuples()
    speakers: dict[str, int] = defaultdict(int)
    per_village: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for village_id, state, online, count in rows:
        # Open includes PREEMPTED: an interrupted delivery still waits to play from the start.
        is_open = State(state) in ACTIVE
        key = "offline" if is_open and not online else state
        speakers[key] += count
        speakers["total"] += count
        v = per_village[village_id]
        # Played late counts as heard: the village heard it (the speaker counts say when).
        v[0] += count if State(state) in HEARD else 0
        v[1] += count if is_open and online else 0
        v[2] += count if is_open and not online else 0
        v[3] += count
    return dict(speakers), {vid: VillageTally(vid, *counts) for vid, counts in per_village.items()}


async def deliveries_of(
    session: AsyncSession, broadcast_id: str
) -> list[tuple[Delivery, str, bool]]:
    """Every delivery of a broadcast with its speaker's code and presence."""
    rows = await session.execute(
        select(Delivery, Speaker.code, Speaker.online)
        .join(Speaker, Speaker.id == Delivery.speaker_id)
        .where(Delivery.broadcast_id == broadcast_id)
        .order_by(Delivery.village_id, Speaker.code)
    )
    return [(d, code, online) for d, code, online in rows.tuples()]


async def any_open(session: AsyncSession, broadcast_id: str) -> bool:
    """Whether some delivery of the broadcast has not ended yet (a cancel can still stop it)."""
    found = await session.scalar(
        select(Delivery.id)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.state.in_(_CANCELLABLE))
        .limit(1)
    )
    return found is not None


async def cancel_open(session: AsyncSession, broadcast_id: str, now: datetime) -> int:
    """Every delivery that has not finished ends cancelled; a later 'played' makes it
    'played_late'."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.state.in_(_CANCELLABLE))
        .values(
            state=State.CANCELLED.value,
            reason="cancelled",
            updated_at=now,
            version=Delivery.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def mark_resent(
    session: AsyncSession, broadcast_id: str, speaker_ids: Sequence[int], resend_id: str
) -> None:
    """The missed deliveries of `broadcast_id` to these speakers name the resend sent instead
    (their state does not change: they ended, and a late play makes them played_late)."""
    for chunk in _chunks(sorted(set(speaker_ids))):
        await session.execute(
            update(Delivery)
            .where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id.in_(chunk))
            .values(resent_in=resend_id, version=Delivery.version + 1)
            .execution_options(synchronize_session=False)
        )


def _chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterable[Sequence[_T]]:
    """``items`` in lists for ``IN``, each ``padded``."""
    for start in range(0, len(items), size):
        yield padded(items[start : start + size])


def padded(values: Sequence[_T]) -> list[_T]:
    """``values`` with its last repeated up to the next power of two: the same rows for ``IN``.

    Each length of an ``IN`` list is a statement of its own to the driver, which keeps the last
    hundred or so it prepared on each connection, some 80 KiB apiece for a few hundred values.
    Batches of every size from 1 to 512 would fill those caches slowly, for hundreds of
    broadcasts; in powers of two a query has ten shapes.
    """
    if not values:
        return list(values)
    size = 1 << (len(values) - 1).bit_length()
    return [*values, *([values[-1]] * (size - len(values)))]


async def missed_speakers(
    session: AsyncSession,
    broadcast_id: str,
    states: Collection[State],
    *,
    village_ids: Collection[int] = (),
    speaker_ids: Collection[int] = (),
) -> list[TargetSpeaker]:
    """The speakers whose delivery of a broadcast ended in one of ``states`` (e.g. failed or
    expired), optionally only in some villages or among some speakers; ordered by id."""
    query = (
        select(
            Speaker.id,
            Speaker.code,
            Speaker.village_id,
            Speaker.district_id,
            Speaker.codecs,
            Speaker.online,
        )
        .join(Delivery, Delivery.speaker_id == Speaker.id)
        .where(
            Delivery.broadcast_id == broadcast_id,
            Delivery.state.in_([s.value for s in states]),
        )
        .order_by(Speaker.id)
    )
    if village_ids:
        query = query.where(Delivery.village_id.in_(sorted(set(village_ids))))
    if speaker_ids:
        query = query.where(Delivery.speaker_id.in_(sorted(set(speaker_ids))))
    rows = await session.execute(query)
    return [
        TargetSpeaker(sid, code, vid, did, tuple(codecs or ()), bool(online))
        for sid, code, vid, did, codecs, online in rows.tuples()
    ]
