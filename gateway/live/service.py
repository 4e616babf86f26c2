"""Live sessions in the record: opening one as a broadcast, keeping it alive, ending it.

A live session is a broadcast like any other (targets, category, priority, deliveries, acks,
the archive). What makes it live is its row in ``live_sessions``: the outbox puts its stream
(`stream_of`) into the signed start command, whose audio is the start chime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from audio.pipeline import Encoded
from gateway.auth import Principal
from gateway.broadcasts import audio_store
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast, Publication
from gateway.deliveries import service as deliveries
from gateway.deps import Runtime
from gateway.errors import Conflict, NotFound
from gateway.live.models import LiveSession
from gateway.live.recorder import Recording
from gateway.live.settings import LiveSettings
from gateway.places import service as places
from gateway.places.models import City
from gateway.sending import service as sending
from gateway.sending.rules import Path as SendPath
from gateway.sending.rules import Refuse, Send
from gateway.speakers import service as speakers
from gateway.users import standing
from wire import contract
from wire.contract import Category

log = logging.getLogger(__name__)

# An open session whose replica has not renewed it for this long died with that replica.
ALIVE_WINDOW: Final = timedelta(seconds=30)
# After the end, speakers still playing their buffers have this long to ack; nothing is resent.
_TAIL: Final = timedelta(seconds=5)
# Advisory lock keys for opening live sessions: this plus the city's id.
_OPEN_LOCK: Final = 0x4D4C_0000
# Session states still on air: open, or closing (marked for ending, its replica ends it).
_RUNNING: Final = ("open", "closing")


@dataclass(frozen=True)
class LiveRequest:
    category: Category
    title: str | None
    all_villages: bool
    district_ids: tuple[int, ...]
    village_ids: tuple[int, ...]
    principal: Principal


@dataclass(frozen=True)
class Opened:
    broadcast_id: str
    stream: contract.LiveStream
    topics: tuple[str, ...]
    speakers: int
    priority: int


def live_busy() -> Conflict:
    return Conflict(
        "live_busy",
        ko="같은 마을에 같은 우선순위의 실시간 방송이 이미 진행 중입니다.",
        en="A live broadcast of the same priority is already on air in one of these villages.",
    )


def _broadcast_request(request: LiveRequest, live: LiveSettings) -> broadcasts.BroadcastRequest:
    return broadcasts.BroadcastRequest(
        category=request.category,
        title=request.title,
        text=None,
        all_villages=request.all_villages,
        district_ids=request.district_ids,
        village_ids=request.village_ids,
        expires_in_s=live.max_s + 60,
        idempotency_key=None,
        created_by=request.principal.actor,
        principal=request.principal,
        extra_target={"live": True},
    )


def _send_request(
    request: LiveRequest, live: LiveSettings, runtime: Runtime
) -> sending.SendRequest:
    return sending.SendRequest(
        path=SendPath.LIVE,
        broadcast=_broadcast_request(request, live),
        principal=request.principal,
        # A live talk has no audio before it starts; nothing is fingerprinted (it has no key).
        source_sha256="",
        at=runtime.clock.now(),
        scope=sending.idempotency_scope(request.principal),
    )


async def check_request(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: LiveRequest,
    live: LiveSettings,
) -> places.ResolvedTarget:
    """Refuse what may not go on air now, by the send rules (rights, area, limits, the
    two-person rule, quiet hours: a live talk can neither wait nor be deferred)."""
    # A ticket writes nothing: an early answer, counted again when the session opens.
    decision = await sending.plan(
        session, runtime, city, _send_request(request, live, runtime), lock=False
    )
    if isinstance(decision, Refuse):
        raise decision.error
    # A live talk has no key (no replay), cannot wait for approval or quiet hours (refused).
    assert isinstance(decision, Send)
    return decision.target


async def busy(
    session: AsyncSession,
    city: City,
    village_ids: tuple[int, ...],
    priority: int,
    now: datetime,
) -> bool:
    """Whether an open live session of the same priority reaches one of these villages."""
    rows = await session.execute(
        select(Broadcast.priority, Broadcast.target)
        .join(LiveSession, LiveSession.broadcast_id == Broadcast.id)
        .where(
            LiveSession.city_id == city.id,
            LiveSession.state == "open",
            LiveSession.alive_at > now - ALIVE_WINDOW,
        )
    )
    wanted = set(village_ids)
    for other_priority, target in rows.tuples():
        reached = {int(v) for v in target.get("resolved_village_ids", [])}  # type: ignore[attr-defined]
        if other_priority == priority and reached & wanted:
            return True
    return False


async def open_session(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: LiveRequest,
    live: LiveSettings,
    *,
    chime: Encoded,
    input_format: str,
) -> Opened:
    """Write the live broadcast, its deliveries, its start command's publications and its
    session row. The outbox publishes after the caller's transaction commits."""
    wanted = _send_request(request, live, runtime)
    decision = await sending.plan(session, runtime, city, wanted)
    if isinstance(decision, Refuse):
        raise decision.error
    assert isinstance(decision, Send)
    target = decision.target
    now = runtime.clock.now()
    priority = runtime.settings.priority_of(request.category)
    await _lock_openings(session, city)
    if await busy(session, city, target.village_ids, priority, now):
        raise live_busy()
    recipients = await speakers.speakers_for(
        session, city.id, village_ids=None if target.all else target.village_ids
    )
    await audio_store.store_encoded(session, chime, now)
    audio = broadcasts.StoredAudio(
        source_sha256=chime.sha256,
        # Deliveries expect an ack within the message's length: a live talk is as long as allowed.
        duration_ms=live.max_s * 1000,
        sha256={"opus": chime.sha256},
    )
    started = await sending.execute(
        session, runtime, city, wanted, decision, audio, recipients=recipients
    )
    assert isinstance(started, broadcasts.Started)
    broadcast = started.broadcast
    key = contract.new_live_key()
    session.add(
        LiveSession(
            broadcast_id=broadcast.id,
            city_id=city.id,
            state="open",
            input_format=input_format,
            key=key,
            jitter_ms=live.jitter_ms,
            stall_ms=live.stall_ms,
            idle_ms=live.idle_s * 1000,
            replica_id=runtime.settings.replica_id,
            created_by=request.principal.actor,
            started_at=now,
            alive_at=now,
            frames=0,
            frames_dropped=0,
            chime_sha256=chime.sha256,
        )
    )
    await session.flush()
    stream = contract.LiveStream(
        session=broadcast.id,
        key=key,
        jitter_ms=live.jitter_ms,
        stall_ms=live.stall_ms,
        idle_ms=live.idle_s * 1000,
    )
    return Opened(
        broadcast_id=broadcast.id,
        stream=stream,
        topics=tuple(await live_topics(session, city, target)),
        speakers=len(recipients),
        priority=broadcast.priority,
    )


async def _lock_openings(session: AsyncSession, city: City) -> None:
    """Serialize check-then-write of live sessions in a city across replicas, until commit.

    PostgreSQL: a transaction-scoped advisory lock. SQLite has one process (the hub's own lock
    serializes it) and one writer at a time."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OPEN_LOCK + city.id}
        )


async def live_topics(
    session: AsyncSession, city: City, target: places.ResolvedTarget
) -> list[str]:
    """One topic per group, as the start command is published: the broker fans out."""
    if target.all:
        return [contract.live_topic_all(city.code)]
    districts = await places.district_codes(session, target.district_ids)
    villages = await places.village_codes(session, target.village_ids)
    whole = set(target.district_ids)
    topics = [contract.live_topic_district(city.code, districts[d]) for d in target.district_ids]
    topics += [
        contract.live_topic_village(city.code, code)
        for _vid, (code, _name, district_id) in sorted(villages.items())
        if district_id not in whole
    ]
    return topics


async def stream_of(session: AsyncSession, broadcast_id: str) -> contract.LiveStream | None:
    """The stream a broadcast's start command names; None for a broadcast that is not live, or
    a live one that has ended."""
    row = await session.get(LiveSession, broadcast_id)
    if row is None or row.state != "open" or row.key is None:
        return None
    return contract.LiveStream(
        session=broadcast_id,
        key=row.key,
        jitter_ms=row.jitter_ms,
        stall_ms=row.stall_ms,
        idle_ms=row.idle_ms,
    )


async def start_published(session: AsyncSession, broadcast_id: str) -> bool:
    """Whether the outbox has published every group's start command."""
    states = await session.scalars(
        select(Publication.state).where(
            Publication.broadcast_id == broadcast_id, Publication.kind == "play"
        )
    )
    found = list(states)
    return bool(found) and all(state != "pending" for state in found)


async def keep_alive(
    session: AsyncSession, broadcast_id: str, now: datetime, *, frames: int, dropped: int
) -> bool:
    """Renew an open session; False when it is no longer open (another replica ended it)."""
    result = await session.execute(
        update(LiveSession)
        .where(LiveSession.broadcast_id == broadcast_id, LiveSession.state == "open")
        .values(alive_at=now, frames=frames, frames_dropped=dropped)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def speaker_counts(session: AsyncSession, broadcast_id: str) -> dict[str, int]:
    counts, _ = await deliveries.tally(session, broadcast_id)
    return counts


async def close_session(
    session: AsyncSession,
    broadcast_id: str,
    now: datetime,
    *,
    reason: str,
    recording: Recording | None,
    frames: int,
    dropped: int,
) -> None:
    """End the session in the record: the recording becomes the broadcast's audio (archive,
    residents' replay, retention), and the broadcast expires once speakers have had the tail."""
    row = await session.get(LiveSession, broadcast_id)
    broadcast = await session.get(Broadcast, broadcast_id)
    if row is None or broadcast is None:
        raise NotFound("live_not_found", ko="실시간 방송이 없습니다.", en="No such live session.")
    if row.state == "ended":
        return
    # A session marked for ending (`end_sessions_of`) keeps the reason it was ended for.
    requested = row.end_reason if row.state == "closing" else None
    row.state = "ended"
    row.key = None
    row.ended_at = now
    row.end_reason = requested or reason[:32]
    row.frames = frames
    row.frames_dropped = dropped
    capped = await deliveries.cap_live_losses(session, broadcast_id, frames)
    if capped:
        log.warning(
            "live session %s: %d speaker(s) reported more frames lost than the %d sent; cut",
            broadcast_id,
            capped,
            frames,
        )
    if recording is not None:
        await audio_store.store_encoded(session, recording, now)
        broadcast.audio_sha256 = {"opus": recording.sha256}
        broadcast.source_sha256 = recording.sha256
        broadcast.duration_ms = recording.duration_ms
    else:
        broadcast.duration_ms = 0
    broadcast.expires_at = min(broadcast.expires_at, now + _TAIL)
    await session.flush()


async def close_stale(session: AsyncSession, city_id: int, now: datetime, *, keep: set[str]) -> int:
    """End open sessions (of any replica) not renewed within `ALIVE_WINDOW`: their replica
    died. Sessions in `keep` are the caller's own, alive whatever the record says."""
    rows = list(
        await session.scalars(
            select(LiveSession).where(
                LiveSession.city_id == city_id,
                LiveSession.state.in_(_RUNNING),
                LiveSession.alive_at < now - ALIVE_WINDOW,
            )
        )
    )
    closed = 0
    for row in rows:
        if row.broadcast_id in keep:
            continue
        await close_session(
            session,
            row.broadcast_id,
            now,
            reason="replica_lost",
            recording=None,
            frames=row.frames,
            dropped=row.frames_dropped,
        )
        closed += 1
    return closed


async def close_abandoned(session: AsyncSession, replica_id: str, now: datetime) -> int:
    """End sessions this replica left open when it stopped (their speakers ended on their own)."""
    rows = list(
        await session.scalars(
            select(LiveSession).where(
                LiveSession.replica_id == replica_id, LiveSession.state.in_(_RUNNING)
            )
        )
    )
    for row in rows:
        await close_session(
            session,
            row.broadcast_id,
            now,
            reason="gateway_restarted",
            recording=None,
            frames=row.frames,
            dropped=row.frames_dropped,
        )
    return len(rows)


async def end_sessions_of(
    session: AsyncSession, city_id: int, actor: str, *, reason: str, now: datetime
) -> int:
    """Mark every open session ``actor`` is speaking for ending (state ``closing``, with the
    reason); how many. The replica that streams each one sees the mark within a second
    (`end_requested`) and ends it the usual way: END to the speakers, the socket closed."""
    result = await session.execute(
        update(LiveSession)
        .where(
            LiveSession.city_id == city_id,
            LiveSession.created_by == actor,
            LiveSession.state == "open",
        )
        .values(state="closing", end_reason=reason[:32])
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def end_requested(session: AsyncSession, broadcast_id: str) -> str | None:
    """Why a running session must end now, or None: it was marked for ending, or the account
    speaking in it is suspended or gone (a suspension that raced its opening)."""
    row = await session.get(LiveSession, broadcast_id, populate_existing=True)
    if row is None or row.state == "ended":
        return None
    if row.state == "closing":
        return row.end_reason or "ended_elsewhere"
    state = await standing.account_state(session, row.created_by)
    if state == "suspended":
        return "owner_suspended"
    if state == "removed":
        return "owner_removed"
    return None
