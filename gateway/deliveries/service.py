"""Delivery bookkeeping: creating deliveries, marking them published, cancelling and resending,
and summaries; with the helpers the other delivery modules share.

Applying acks lives in ``gateway.deliveries.acks``, the sweep (retries, expiry, closing) in
``gateway.deliveries.sweep``, catching up speakers that come back in
``gateway.deliveries.returning``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar

from sqlalchemy import distinct, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import (
    Broadcast,
    Publication,
)
from gateway.deliveries.models import Delivery
from gateway.deliveries.states import (
    ACTIVE,
    HEARD,
    TRANSITIONS,
    Event,
    State,
)
from gateway.residents.models import Household
from gateway.speakers.models import Speaker
from gateway.speakers.service import TargetSpeaker
from wire.contract import FailReason, ReceivedReason, RejectReason

_T = TypeVar("_T")

# Values in one IN list, a power of two (see ``padded``), under SQLite's old limit of 999.
IN_CHUNK: Final = 512

# Refusals of the key, not of the command: signed before the speaker learned the current key, or
# by a key revoked since it was signed. The next ask is signed afresh by the current key.
KEY_REFUSALS: Final = frozenset({RejectReason.UNKNOWN_KEY, RejectReason.REVOKED_KEY})
KEY_REFUSED_REASONS: Final = frozenset(f"rejected: {r.value}" for r in KEY_REFUSALS)
# The reason kept on a delivery an indoor receiver holds for its household until quiet hours end
# (its `received` ack said so); kept if the broadcast expires before they do.
HELD_QUIET_HOURS: Final = ReceivedReason.HELD_QUIET_HOURS.value
# An indoor receiver its household turned down to 0 (``failed: muted``): the household's choice,
# counted with the held ones, never as a miss that would text the whole village.
MUTED: Final = f"failed: {FailReason.MUTED.value}"
HOUSEHOLD_CHOICE: Final = (HELD_QUIET_HOURS, MUTED)
ACTIVE_VALUES = [s.value for s in ACTIVE]

# Derived from the table rather than restated: which states a publish moves, which a cancel ends.
_PUBLISHABLE = [s.value for s in State if TRANSITIONS[s].get(Event.PUBLISHED) == State.SENT]
_CANCELLABLE = [s.value for s in ACTIVE if TRANSITIONS[s].get(Event.CANCELLED) == State.CANCELLED]

# After "received" or "playing", the next ack is due within the message's length plus this;
# if it does not come (an ack lost with a broker restart), the speaker is asked again and
# answers from its journal, without playing twice.
ACK_GRACE = timedelta(seconds=30)

# What a speaker holds and has still to play: a command it received waits behind these.
HELD = [State.RECEIVED.value, State.PLAYING.value, State.PREEMPTED.value]


async def create_deliveries(
    session: AsyncSession,
    broadcast_id: str,
    recipients: Sequence[TargetSpeaker],
    now: datetime,
    *,
    audio_sets: Mapping[int, str] | None = None,
) -> None:
    """One queued delivery per recipient; ``audio_sets``: the language set's audio each
    village is sent, where it is not the broadcast's first."""
    sets = audio_sets or {}
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
                "audio_set": sets.get(s.village_id),
                "state": State.QUEUED.value,
                "attempts": 0,
                "sends": 0,
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
            sends=Delivery.sends + 1,
            sent_at=now,
            deadline_at=now + ack_timeout,
            updated_at=now,
        )
    )
    if scope is not None:
        statement = statement.where(scope.in_(publication.scope_keys))
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def speaker_queues(
    session: AsyncSession, speaker_ids: set[int]
) -> dict[int, dict[int, tuple[timedelta, int]]]:
    """What each speaker holds and has not played yet (received, playing or pre-empted, of
    broadcasts still running): delivery id -> (length, priority), per speaker."""
    queues: dict[int, dict[int, tuple[timedelta, int]]] = defaultdict(dict)
    for chunk in in_chunks(sorted(speaker_ids)):
        rows = await session.execute(
            select(Delivery.speaker_id, Delivery.id, Broadcast.duration_ms, Broadcast.priority)
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(
                Delivery.speaker_id.in_(chunk),
                Delivery.state.in_(HELD),
                Broadcast.finished_at.is_(None),
                Broadcast.cancelled_at.is_(None),
            )
        )
        for speaker_id, delivery_id, duration_ms, priority in rows.tuples():
            queues[speaker_id][delivery_id] = (timedelta(milliseconds=duration_ms), priority)
    return dict(queues)


def speaker_publication(
    broadcast_id: str,
    code: str,
    speaker_id: int,
    now: datetime,
    *,
    kind: str = "play",
    available_at: datetime | None = None,
    audio_set: str | None = None,
) -> Publication:
    return Publication(
        broadcast_id=broadcast_id,
        kind=kind,
        audio_set=audio_set,
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
    # Indoor receivers holding it for their household until quiet hours end (or whose hold
    # outlasted it), or muted by it: the household's choice, so neither waited for nor counted
    # as missed.
    held: int = 0
    held_open: int = 0

    @property
    def settled(self) -> bool:
        """Every speaker played it, but receivers their households had hold it."""
        return self.played + self.held == self.total

    @property
    def outcome(self) -> str:
        if self.total == 0:
            return "no_speakers"
        if self.open_online > self.held_open:
            return "in_progress"
        if self.open_offline:
            return "offline"
        if self.settled:
            return "played" if self.played else "in_progress"
        return "partial" if self.played else "missed"


async def tally(
    session: AsyncSession, broadcast_id: str
) -> tuple[dict[str, int], dict[int, VillageTally]]:
    """Speaker counts by state (open deliveries to offline speakers counted as 'offline', those
    indoor receivers held for their households as 'held'), and one tally per village that has
    speakers in the broadcast."""
    is_held = func.coalesce(Delivery.reason.in_(HOUSEHOLD_CHOICE), False)
    rows = (
        await session.execute(
            select(Delivery.village_id, Delivery.state, Speaker.online, is_held, func.count())
            .join(Speaker, Speaker.id == Delivery.speaker_id)
            .where(Delivery.broadcast_id == broadcast_id)
            .group_by(Delivery.village_id, Delivery.state, Speaker.online, is_held)
        )
    ).tuples()
    speakers: dict[str, int] = defaultdict(int)
    per_village: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for village_id, state, online, held, count in rows:
        # Open includes PREEMPTED: an interrupted delivery still waits to play from the start.
        is_open = State(state) in ACTIVE
        held_back = bool(held) and State(state) not in HEARD
        key = "held" if held_back else "offline" if is_open and not online else state
        speakers[key] += count
        speakers["total"] += count
        v = per_village[village_id]
        # Played late counts as heard: the village heard it (the speaker counts say when).
        v[0] += count if State(state) in HEARD else 0
        v[1] += count if is_open and online else 0
        v[2] += count if is_open and not online else 0
        v[3] += count
        v[4] += count if held_back else 0
        v[5] += count if held_back and is_open and online else 0
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
    for chunk in in_chunks(sorted(set(speaker_ids))):
        await session.execute(
            update(Delivery)
            .where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id.in_(chunk))
            .values(resent_in=resend_id, version=Delivery.version + 1)
            .execution_options(synchronize_session=False)
        )


def in_chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterable[Sequence[_T]]:
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


async def households_confirmed(session: AsyncSession, broadcast_id: str) -> dict[int, int]:
    """Per village: distinct households whose indoor receiver sent a verified ``heard`` for the
    broadcast (its 들었어요 button)."""
    rows = await session.execute(
        select(Delivery.village_id, func.count(distinct(Household.id)))
        .join(Household, Household.receiver_id == Delivery.speaker_id)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.heard_at.is_not(None))
        .group_by(Delivery.village_id)
    )
    return {village_id: n for village_id, n in rows.tuples()}  # noqa: C416


async def cap_live_losses(session: AsyncSession, broadcast_id: str, sent: int) -> int:
    """A live session ended having sent `sent` frames: speakers' reports of more lost are cut
    to that (reports that came before the end could not be checked). How many were cut."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.live_frames_lost > sent)
        .values(live_frames_lost=sent)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
