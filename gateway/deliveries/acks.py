"""Applying speakers' acks to their deliveries: each ack a move in the state table, duplicates and
late acks changing nothing."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import (
    Broadcast,
    cancel_command_id,
    superseded_command_ids,
)
from gateway.deliveries import ed25519, live_report, proof
from gateway.deliveries.models import Delivery
from gateway.deliveries.service import (
    ACK_GRACE,
    HELD_QUIET_HOURS,
    KEY_REFUSALS,
    in_chunks,
    padded,
    speaker_queues,
)
from gateway.deliveries.states import (
    HEARD,
    Event,
    InvalidTransition,
    State,
    next_state,
)
from gateway.speakers.models import Speaker
from gateway.speakers.receipt_keys import receipt_keys
from wire.contract import COPY_REFUSALS, Ack, AckStatus, verify_heard

log = logging.getLogger(__name__)
_ACK_EVENTS = {
    AckStatus.RECEIVED: Event.RECEIVED,
    AckStatus.PLAYING: Event.PLAYING,
    AckStatus.PREEMPTED: Event.PREEMPTED,
    AckStatus.PLAYED: Event.PLAYED,
    AckStatus.FAILED: Event.FAILED,
    AckStatus.REJECTED: Event.REJECTED,
}


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
    live_mouth_p50_ms: int | None = None
    live_mouth_p95_ms: int | None = None
    # A resend acked ``played`` without playing again: the speaker had played this earlier
    # command, which the resend supersedes (the proof is that playback's).
    already_played_as: str | None = None
    # The speaker's code, as its acks name it (a heard ack's signature covers it).
    speaker_code: str = ""


@dataclass
class AckReport:
    applied: int = 0
    unchanged: int = 0
    unknown: int = 0
    illegal: int = 0
    cancel_acks: int = 0
    bad_proofs: int = 0
    changed_broadcasts: set[str] = field(default_factory=set)
    heard: int = 0
    # Heard acks dropped, by reason (see `_heard`).
    heard_refused: Counter[str] = field(default_factory=Counter)
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
    for chunk in in_chunks(sorted({a.speaker_id for a in acks})):
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
    heard_acks = [a for a in acks if a.status is AckStatus.HEARD]
    receivers = await _receivers(session, {a.speaker_id for a in heard_acks})
    checks = await proof.prepare(session, acks)
    sent = await live_report.live_frames_sent(
        session, {a.broadcast_id for a in acks if a.live_frames_lost is not None}
    )
    queues = await speaker_queues(
        session, {a.speaker_id for a in acks if a.status is AckStatus.RECEIVED}
    )

    for ack in sorted(acks, key=lambda a: a.at):
        found_row = rows.get((ack.broadcast_id, ack.speaker_id))
        play_id = command_ids.get(ack.broadcast_id)
        if play_id is not None and ack.command_id == cancel_command_id(play_id):
            report.cancel_acks += 1
            continue
        if ack.status is AckStatus.HEARD:
            refusal = _heard(found_row, play_id, ack, receivers)
            if refusal is not None:
                report.heard_refused[refusal] += 1
                if refusal == "not_delivered":
                    # Bounded like any ack that matches nothing (the intake's allowance).
                    report.unknown_by_speaker[ack.speaker_id] += 1
                log.info("heard from speaker %s dropped: %s", ack.speaker_id, refusal)
            elif found_row is not None and found_row.heard_at is None:
                found_row.heard_at = ack.at
                report.heard += 1
                report.changed_broadcasts.add(found_row.broadcast_id)
            continue
        if found_row is None or play_id != ack.command_id:
            report.unknown += 1
            report.unknown_by_speaker[ack.speaker_id] += 1
            continue
        delivery = found_row
        event = _ACK_EVENTS[ack.status]
        if event is Event.REJECTED and ack.reason in KEY_REFUSALS:
            event = Event.KEY_REFUSED  # not final: asked again, signed by the current key
        verdict = checks.judge(ack, delivery.audio_set) if event is Event.PLAYED else None
        bad_proof = verdict is not None and verdict.problem is not None
        if bad_proof:
            event = Event.FAILED  # a "played" that proves nothing is a failure, never a play
        live_report.keep_live_report(delivery, ack, sent.get(ack.broadcast_id))
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
        if new is State.RECEIVED and ack.reason == HELD_QUIET_HOURS:
            # An indoor receiver holds it for its household until quiet hours end: no ack is
            # due before then, so it is not asked again; it expires with its broadcast.
            delivery.deadline_at = expiries[ack.broadcast_id]
            delivery.attempts = 0
            delivery.reason = HELD_QUIET_HOURS
        elif new in (State.RECEIVED, State.PLAYING):
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
            if delivery.reason == HELD_QUIET_HOURS:
                delivery.reason = None  # quiet hours are over: it plays
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
        elif new == State.FAILED and new != current and delivery.reason != HELD_QUIET_HOURS:
            # (One held until it expired or was cancelled keeps saying its household held it.)
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


async def _receivers(session: AsyncSession, speaker_ids: set[int]) -> dict[int, bytes | None]:
    """The indoor receivers among these speakers: id -> raw receipt public key (None: none)."""
    if not speaker_ids:
        return {}
    kinds = await session.execute(
        select(Speaker.id).where(
            Speaker.id.in_(sorted(speaker_ids)), Speaker.kind == "household_receiver"
        )
    )
    ids = set(kinds.scalars())
    keys = await receipt_keys(session, ids)
    return {sid: keys[sid][1] if sid in keys else None for sid in ids}


def _heard(
    delivery: Delivery | None,
    play_id: str | None,
    ack: AckIn,
    receivers: dict[int, bytes | None],
) -> str | None:
    """Why a heard ack is dropped, or None when it stands: it must come from an indoor receiver,
    for the command delivered to that receiver, after it played, signed with its receipt key."""
    if ack.speaker_id not in receivers:
        return "not_receiver"
    if delivery is None or play_id != ack.command_id:
        return "not_delivered"
    if State(delivery.state) not in HEARD:
        return "not_played"
    key = receivers[ack.speaker_id]
    if key is None or ack.at_ms is None or ack.receipt_sig is None:
        return "unsigned"
    stated = Ack(
        command_id=ack.command_id,
        broadcast_id=ack.broadcast_id,
        speaker=ack.speaker_code,
        status=AckStatus.HEARD,
        at_ms=ack.at_ms,
        receipt_sig=ack.receipt_sig,
    )
    if ed25519.is_small_order(key) or not verify_heard(stated, key):
        return "bad_signature"
    return None
