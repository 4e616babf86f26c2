"""Starting broadcasts: idempotency, targets, audio, and the rows the outbox publishes from."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio.pipeline import Transcoded
from audio.speech.engine import synthesize_file
from audio.speech.normalize import validate_text
from gateway import logs, scopes
from gateway.auth import Principal
from gateway.broadcasts.models import AudioAsset, Broadcast, Publication
from gateway.broadcasts.schemas import (
    BroadcastDetail,
    BroadcastSummary,
    SpeakerCounts,
    SpeakerDelivery,
    VillageCounts,
    VillageDelivery,
)
from gateway.broadcasts.status_cache import StatusCache
from gateway.datafiles import private_dir, private_file
from gateway.deliveries import proof
from gateway.deliveries import service as deliveries
from gateway.deliveries.models import Delivery
from gateway.deps import Runtime
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.officer_alerts import service as officer_alerts
from gateway.places import service as places
from gateway.places.models import City
from gateway.speakers import service as speakers
from wire import contract
from wire.contract import Category


@dataclass(frozen=True)
class BroadcastRequest:
    category: Category
    title: str | None
    text: str | None
    all_villages: bool
    district_ids: tuple[int, ...]
    village_ids: tuple[int, ...]
    expires_in_s: int | None
    idempotency_key: str | None
    created_by: str
    repeat: bool = False
    mode: str = "live"
    # Who asks: their role and area are checked, and their sending is rate-limited. None only
    # for the gateway's own work (e.g. a schedule firing, checked when it was created).
    principal: Principal | None = None
    # Recorded in the broadcast's target as requested (e.g. the broadcast a resend repeats).
    extra_target: Mapping[str, object] = field(default_factory=dict)

    def fingerprint(self, source_sha256: str) -> str:
        """What makes two requests 'the same' for an Idempotency-Key."""
        body: dict[str, object] = {
            "category": self.category.value,
            "title": self.title,
            "text": self.text,
            "all": self.all_villages,
            "districts": sorted(set(self.district_ids)),
            "villages": sorted(set(self.village_ids)),
            "expires_in_s": self.expires_in_s,
            "repeat": self.repeat,
            "mode": self.mode,
            "source": source_sha256,
        }
        if self.extra_target:
            body["extra"] = dict(self.extra_target)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class StoredAudio:
    """A broadcast's audio once transcoded and stored: what a broadcast row points at."""

    source_sha256: str
    duration_ms: int
    sha256: Mapping[str, str]  # codec -> sha256 of an AudioAsset


@dataclass(frozen=True)
class Started:
    broadcast: Broadcast
    replayed: bool


async def find_replay(
    session: AsyncSession, city: City, request: BroadcastRequest, source_sha256: str, scope: str
) -> Broadcast | None:
    """The broadcast an earlier request with the same Idempotency-Key, from the same person
    (``scope``), created, if any."""
    if request.idempotency_key is None:
        return None
    existing = await session.scalar(
        select(Broadcast).where(
            Broadcast.city_id == city.id,
            Broadcast.idempotency_scope == scope,
            Broadcast.idempotency_key == request.idempotency_key,
        )
    )
    if existing is None:
        return None
    if existing.request_hash != request.fingerprint(source_sha256):
        raise key_reused()
    return existing


def key_reused() -> InvalidRequest:
    return InvalidRequest(
        "idempotency_key_reused",
        ko="같은 Idempotency-Key로 다른 내용의 방송 요청이 이미 있었습니다.",
        en="This Idempotency-Key was already used for a different broadcast request.",
    )


async def record_broadcast(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    target: places.ResolvedTarget,
    recipients: Sequence[speakers.TargetSpeaker],
    audio: StoredAudio,
    *,
    scope: str,
    per_speaker: bool = False,
) -> Started:
    """Write a broadcast of audio already stored, its deliveries and its publications.

    With ``per_speaker`` each recipient gets the command on its own topic (a resend to the
    speakers that missed one), instead of one publish per group topic.
    """
    now = runtime.clock.now()
    settings = runtime.settings
    expires_in = request.expires_in_s or settings.default_expiry_s
    broadcast = Broadcast(
        id=contract.new_id(),
        city_id=city.id,
        command_id=contract.new_id(),
        category=request.category.value,
        priority=settings.priority_of(request.category, request.mode),
        mode=request.mode,
        title=request.title,
        text=request.text,
        target={
            "all": target.all,
            "district_ids": list(target.district_ids),
            "village_ids": sorted(set(request.village_ids)),
            "resolved_village_ids": list(target.village_ids),
            **request.extra_target,
        },
        duration_ms=audio.duration_ms,
        audio_sha256=dict(audio.sha256),
        source_sha256=audio.source_sha256,
        created_by=request.created_by,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
        idempotency_key=request.idempotency_key,
        idempotency_scope=scope,
        request_hash=request.fingerprint(audio.source_sha256),
    )
    try:
        # A savepoint: losing a race on the key undoes this insert, not the request's work.
        async with session.begin_nested():
            session.add(broadcast)
            await session.flush()
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one won.
        winner = await find_replay(session, city, request, audio.source_sha256, scope)
        if winner is None:
            raise
        return Started(winner, replayed=True)

    await deliveries.create_deliveries(session, broadcast.id, recipients, now)
    # A village head's disaster alert: the district's officers are told in this transaction.
    role = request.principal.role if request.principal is not None else None
    await officer_alerts.head_disaster_sent(session, city.id, broadcast, role, now)
    if per_speaker:
        await _plan_speaker_publications(session, broadcast, recipients, now)
    else:
        await _plan_publications(session, city, broadcast, target, now)
    logs.broadcast_created(broadcast, len(recipients))
    return Started(broadcast, replayed=False)


async def authorize_request(
    session: AsyncSession, runtime: Runtime, city: City, request: BroadcastRequest
) -> None:
    """Refuse a category or an area outside the caller's rights (403), before any work."""
    if request.principal is None:
        return
    await scopes.authorize_send(
        session,
        request.principal,
        request.category,
        all_villages=request.all_villages,
        district_ids=request.district_ids,
        village_ids=request.village_ids,
    )


# Said before and after a test or exercise played aloud (GATEWAY_TEST_PLAYBACK=announce), so
# nobody takes it for a real alert.
TEST_ANNOUNCEMENTS: Final[Mapping[str, tuple[str, str]]] = {
    "test": (
        "지금부터 시험 방송을 하겠습니다. 실제 상황이 아닙니다.",
        "이상, 시험 방송이었습니다. 실제 상황이 아닙니다.",
    ),
    "exercise": (
        "지금부터 훈련 방송을 하겠습니다. 실제 상황이 아닙니다.",
        "이상, 훈련 방송이었습니다. 실제 상황이 아닙니다.",
    ),
}


async def spoken_frame(runtime: Runtime, mode: str) -> tuple[Path, Path] | None:
    """The spoken announcements around a test or exercise played aloud, made once per engine
    and kept in the data directory; None for a real broadcast or when tests are only logged."""
    phrases = TEST_ANNOUNCEMENTS.get(mode)
    settings = runtime.settings
    if phrases is None or settings.test_playback != "announce":
        return None
    directory = private_dir(settings.data_dir / "announcements")
    paths: list[Path] = []
    for phrase in phrases:
        key = hashlib.sha256(f"{settings.speech_engine}:{phrase}".encode()).hexdigest()[:16]
        path = directory / f"{mode}-{key}.wav"
        if not path.exists():
            scratch = path.with_suffix(f".{secrets.token_hex(4)}.tmp.wav")
            await runtime.worker.run(
                synthesize_file, phrase, str(scratch), engine=settings.speech_engine
            )
            private_file(scratch)
            scratch.replace(path)
        paths.append(path)
    return paths[0], paths[1]


async def _speak(
    runtime: Runtime,
    request: BroadcastRequest,
    codecs: list[str],
    frame: tuple[Path, Path] | None = None,
) -> Transcoded:
    assert request.text is not None
    # Speech and transcode wait in the broadcast's lane: a disaster's never behind previews.
    priority = runtime.settings.priority_of(request.category, request.mode)
    directory = private_dir(runtime.settings.data_dir / "uploads")
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        wav = Path(scratch) / "speech.wav"
        await runtime.worker.speak(
            request.text,
            wav,
            engine=runtime.settings.speech_engine,
            repeat=request.repeat,
            priority=priority,
        )
        return await runtime.worker.transcode(
            wav, category=request.category, codecs=codecs, spoken_frame=frame, priority=priority
        )


async def _sha256_file(path: Path) -> str:
    def digest() -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    return await asyncio.to_thread(digest)


async def _store_audio(
    session: AsyncSession, transcoded: Transcoded, codecs: Sequence[str], now: datetime
) -> None:
    for codec in codecs:
        await store_encoded(session, transcoded.variants[codec], now)


class EncodedAudio(Protocol):
    """Encoded bytes and what a speaker needs to know of them (a transcoded variant, a chime,
    a live talk's recording)."""

    @property
    def sha256(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def duration_ms(self) -> int: ...


async def store_encoded(session: AsyncSession, encoded: EncodedAudio, now: datetime) -> None:
    """Keep encoded audio by its sha256 (once: the same bytes are the same asset)."""
    existing = await session.get(AudioAsset, encoded.sha256)
    if existing is not None:
        # Stored again: its retention clock for audio nothing uses yet starts anew, so the
        # purge of unused audio does not take it from the request about to use it.
        existing.created_at = max(existing.created_at, now)
    else:
        session.add(
            AudioAsset(
                sha256=encoded.sha256,
                codec=encoded.codec,
                mime_type=encoded.mime_type,
                size=len(encoded.data),
                duration_ms=encoded.duration_ms,
                data=encoded.data,
                created_at=now,
            )
        )


async def _plan_publications(
    session: AsyncSession,
    city: City,
    broadcast: Broadcast,
    target: places.ResolvedTarget,
    now: datetime,
) -> None:
    """One publish per group topic, so the broker fans out: the whole city, whole districts, or
    the remaining villages one by one."""
    if target.all:
        plan: list[tuple[str, list[str], list[int]]] = [("all", [], [])]
    else:
        districts = await places.district_codes(session, target.district_ids)
        villages = await places.village_codes(session, target.village_ids)
        whole = set(target.district_ids)
        plan = [("district", [districts[d]], [d]) for d in target.district_ids]
        plan += [
            ("village", [code], [vid])
            for vid, (code, _name, district_id) in sorted(villages.items())
            if district_id not in whole
        ]
    await session.execute(
        insert(Publication),
        [
            {
                "broadcast_id": broadcast.id,
                "kind": "play",
                "scope_kind": kind,
                "scope_ids": ids,
                "scope_keys": keys,
                "state": "pending",
                "attempts": 0,
                "available_at": now,
                "created_at": now,
            }
            for kind, ids, keys in plan
        ],
    )


async def _plan_speaker_publications(
    session: AsyncSession,
    broadcast: Broadcast,
    recipients: Sequence[speakers.TargetSpeaker],
    now: datetime,
) -> None:
    if not recipients:
        return
    await session.execute(
        insert(Publication),
        [
            {
                "broadcast_id": broadcast.id,
                "kind": "play",
                "scope_kind": "speaker",
                "scope_ids": [r.code],
                "scope_keys": [r.id],
                "state": "pending",
                "attempts": 0,
                "available_at": now,
                "created_at": now,
            }
            for r in recipients
        ],
    )


async def cancel_broadcast(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    broadcast_id: str,
    principal: Principal,
) -> Broadcast:
    """Stop a broadcast everywhere: nothing more is sent, open deliveries end cancelled, and a
    signed cancel reaches every speaker it was sent to, stopping those already playing."""
    from gateway.sending.cancelling import authorize_cancel  # the sending slice imports this
    from gateway.sending.rules import CancelPath

    broadcast = await get_broadcast(session, city.id, broadcast_id)

    async def rights() -> None:
        await scopes.authorize_act(
            session, principal, Category(broadcast.category), reached_villages(broadcast)
        )

    await authorize_cancel(
        session,
        runtime.settings,
        principal,
        CancelPath.BROADCAST,
        sender=broadcast.created_by,
        rights=rights,
    )
    if broadcast.cancelled_at is not None:
        return broadcast
    now = runtime.clock.now()
    # Past its expiry a speaker may still be playing it: open deliveries, not the clock,
    # say whether there is anything left to stop.
    if not await deliveries.any_open(session, broadcast.id):
        raise Conflict(
            "broadcast_finished",
            ko="이미 끝난 방송은 취소할 수 없습니다.",
            en="The broadcast has already finished; there is nothing to cancel.",
        )
    broadcast.cancelled_at = now
    await deliveries.cancel_open(session, broadcast.id, now)
    published = (
        await session.execute(
            select(Publication.scope_kind, Publication.scope_ids, Publication.scope_keys)
            .where(Publication.broadcast_id == broadcast.id, Publication.kind == "play")
            .order_by(Publication.id)
        )
    ).tuples()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for kind, ids, keys in published:
        if (kind, tuple(ids)) in seen:
            continue
        seen.add((kind, tuple(ids)))
        session.add(
            Publication(
                broadcast_id=broadcast.id,
                kind="cancel",
                scope_kind=kind,
                scope_ids=ids,
                scope_keys=keys,
                state="pending",
                attempts=0,
                available_at=now,
                created_at=now,
            )
        )
    await session.flush()
    return broadcast


def reached_villages(broadcast: Broadcast) -> list[int]:
    return [int(v) for v in broadcast.target.get("resolved_village_ids", [])]  # type: ignore[attr-defined]


async def authorize_read(session: AsyncSession, principal: Principal, broadcast: Broadcast) -> None:
    await scopes.authorize_read(session, principal, reached_villages(broadcast))


async def check_readable(
    session: AsyncSession, principal: Principal, city_id: int, broadcast_id: str
) -> None:
    """Refuse a caller whose area the broadcast does not reach (city-wide roles: no query)."""
    if principal.role in scopes.CITY_WIDE:
        return
    await authorize_read(session, principal, await get_broadcast(session, city_id, broadcast_id))


async def get_broadcast(session: AsyncSession, city_id: int, broadcast_id: str) -> Broadcast:
    broadcast = await session.get(Broadcast, broadcast_id) if len(broadcast_id) == 32 else None
    if broadcast is None or broadcast.city_id != city_id:
        raise NotFound(
            "broadcast_not_found",
            ko="방송을 찾을 수 없습니다.",
            en=f"Broadcast {broadcast_id!r} does not exist.",
        )
    return broadcast


async def list_broadcasts(
    session: AsyncSession,
    city: City,
    *,
    category: Category | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    principal: Principal,
    mode: str | None = None,
    created_by: str | None = None,
) -> tuple[list[Broadcast], int]:
    query = select(Broadcast).where(Broadcast.city_id == city.id)
    if created_by is not None:
        query = query.where(Broadcast.created_by == created_by)
    if category is not None:
        query = query.where(Broadcast.category == category.value)
    if mode is not None:
        query = query.where(Broadcast.mode == mode)
    if since is not None:
        query = query.where(Broadcast.created_at >= since)
    if until is not None:
        query = query.where(Broadcast.created_at < until)
    ordered = query.order_by(Broadcast.created_at.desc(), Broadcast.id)
    if principal.role not in scopes.CITY_WIDE:
        # Scoped callers see the broadcasts that reach their area (filtered here: the target
        # is JSON, and a district or village sees a bounded number of broadcasts).
        visible = [
            b
            for b in await session.scalars(ordered)
            if await scopes.touches(session, principal, reached_villages(b))
        ]
        return visible[offset : offset + limit], len(visible)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(ordered.limit(limit).offset(offset))
    return list(rows), total


def audio_not_found() -> NotFound:
    return NotFound(
        "audio_not_found", ko="오디오를 찾을 수 없습니다.", en="No audio with that sha256."
    )


async def get_audio(session: AsyncSession, sha256: str) -> AudioAsset:
    asset = await session.get(AudioAsset, sha256) if len(sha256) == 64 else None
    if asset is None:
        raise audio_not_found()
    return asset


def broadcast_state(broadcast: Broadcast, speaker_counts: dict[str, int]) -> str:
    if broadcast.cancelled_at is not None:
        return "cancelled"
    open_count = sum(
        speaker_counts.get(k, 0)
        for k in ("queued", "sent", "received", "playing", "preempted", "offline")
    )
    if broadcast.finished_at is not None or open_count == 0:
        return "completed"
    if open_count == speaker_counts.get("queued", 0):
        return "queued"
    return "in_progress"


async def read_summary(
    cache: StatusCache,
    sessions: async_sessionmaker[AsyncSession],
    city_id: int,
    broadcast_id: str,
    *,
    detail: bool,
) -> BroadcastSummary | BroadcastDetail:
    """A broadcast's summary as this replica last read it, at most a moment old."""

    async def load() -> BroadcastSummary | BroadcastDetail:
        async with sessions() as session:
            broadcast = await get_broadcast(session, city_id, broadcast_id)
            return await summarize(session, broadcast, detail=detail)

    summary = await cache.get((city_id, broadcast_id, detail), load)
    assert isinstance(summary, BroadcastSummary)
    return summary


async def summarize(
    session: AsyncSession, broadcast: Broadcast, *, detail: bool
) -> BroadcastSummary | BroadcastDetail:
    """Speakers counted by state and villages by outcome; with detail, every speaker's state."""
    speaker_counts, tallies = await deliveries.tally(session, broadcast.id)
    resolved = reached_villages(broadcast)
    village_counts = VillageCounts(total=len(resolved))
    outcomes: dict[int, str] = {}
    for village_id in resolved:
        tally = tallies.get(village_id)
        outcome = tally.outcome if tally is not None else "no_speakers"
        outcomes[village_id] = outcome
        setattr(village_counts, outcome, getattr(village_counts, outcome) + 1)
    fields = {
        "id": broadcast.id,
        "state": broadcast_state(broadcast, speaker_counts),
        "category": broadcast.category,
        "mode": broadcast.mode,
        "priority": broadcast.priority,
        "title": broadcast.title,
        "text": broadcast.text,
        "created_at": broadcast.created_at,
        "expires_at": broadcast.expires_at,
        "cancelled_at": broadcast.cancelled_at,
        "finished_at": broadcast.finished_at,
        "duration_ms": broadcast.duration_ms,
        "evidence_hold": broadcast.evidence_hold,
        "audio_purged_at": broadcast.audio_purged_at,
        "target": {k: v for k, v in broadcast.target.items() if k != "resolved_village_ids"},
        "villages": village_counts,
        "speakers": SpeakerCounts(**speaker_counts),
    }
    if not detail:
        return BroadcastSummary.model_validate(fields)
    names = await places.village_codes(session, resolved)
    by_village: dict[int, list[SpeakerDelivery]] = {v: [] for v in resolved}
    rows_of: dict[int, list[Delivery]] = {}
    repeated = broadcast.target.get("resend_of")
    resend_of = repeated if isinstance(repeated, str) else None
    for delivery, code, online in await deliveries.deliveries_of(session, broadcast.id):
        rows_of.setdefault(delivery.village_id, []).append(delivery)
        by_village.setdefault(delivery.village_id, []).append(
            SpeakerDelivery(
                speaker_id=delivery.speaker_id,
                code=code,
                state=delivery.state,
                online=online,
                reason=delivery.reason,
                attempts=delivery.attempts,
                updated_at=delivery.updated_at,
                played_at=delivery.played_at,
                proof=proof.shown(delivery),
                live_latency_ms=delivery.live_latency_ms,
                live_frames_lost=delivery.live_frames_lost,
                resent_in=delivery.resent_in,
                resend_of=resend_of,
            )
        )
    villages = [
        VillageDelivery(
            village_id=vid,
            code=names[vid][0] if vid in names else str(vid),
            name=names[vid][1] if vid in names else "",
            outcome=outcomes.get(vid, "no_speakers"),
            speakers=rows,
            **proof.live_figures(rows_of.get(vid, ())).fields(),
        )
        for vid, rows in by_village.items()
    ]
    return BroadcastDetail.model_validate({**fields, "village_deliveries": villages})


async def source_sha256_of(runtime: Runtime, request: BroadcastRequest, upload: Path | None) -> str:
    """What a request's audio comes from, as start_broadcast fingerprints it: the upload's
    sha256, or the spoken text's (checked first: empty or unreadable text is refused)."""
    if upload is not None:
        return await _sha256_file(upload)
    if request.text is None:
        raise InvalidRequest(
            "missing_file",
            ko="녹음 파일이나 방송 문구가 필요합니다.",
            en="A recording or a text to speak is required.",
        )
    spoken = validate_text(request.text)
    engine = runtime.settings.speech_engine
    return hashlib.sha256(f"tts:{engine}:{spoken}".encode()).hexdigest()


@dataclass(frozen=True)
class PreparedAudio:
    """Audio transcoded (or spoken) in memory, before any transaction: what the write stores."""

    transcoded: Transcoded
    stored: StoredAudio

    async def store(self, session: AsyncSession, now: datetime) -> StoredAudio:
        await _store_audio(session, self.transcoded, list(self.stored.sha256), now)
        return self.stored


async def prepare_audio(
    runtime: Runtime,
    request: BroadcastRequest,
    upload: Path | None,
    source_sha256: str,
    *,
    codecs: Sequence[str] = ("opus", "mp3"),
) -> PreparedAudio:
    """Transcode the upload (or speak the text), touching no database: it may take minutes, and
    no transaction may wait on it."""
    wanted = list(codecs)
    frame = await spoken_frame(runtime, request.mode)
    if upload is None:
        transcoded = await _speak(runtime, request, wanted, frame)
    else:
        transcoded = await runtime.worker.transcode(
            upload,
            category=request.category,
            codecs=wanted,
            spoken_frame=frame,
            priority=runtime.settings.priority_of(request.category, request.mode),
        )
    return PreparedAudio(
        transcoded=transcoded,
        stored=StoredAudio(
            source_sha256=source_sha256,
            duration_ms=transcoded.duration_ms,
            sha256={codec: transcoded.variants[codec].sha256 for codec in wanted},
        ),
    )


async def store_audio_for(
    session: AsyncSession,
    runtime: Runtime,
    request: BroadcastRequest,
    upload: Path | None,
    *,
    codecs: Sequence[str] = ("opus", "mp3"),
) -> StoredAudio:
    """Transcode the upload (or speak the text) and store it now, for a broadcast written later
    by record_broadcast. Every codec by default: who will receive it is only known then."""
    source_sha256 = await source_sha256_of(runtime, request, upload)
    prepared = await prepare_audio(runtime, request, upload, source_sha256, codecs=codecs)
    return await prepared.store(session, runtime.clock.now())
