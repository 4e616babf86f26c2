"""Starting broadcasts: idempotency, targets, and the rows the outbox publishes from; cancelling.

A broadcast's audio is made and stored by ``gateway.broadcasts.audio_store``; reading
broadcasts and their summaries lives in ``gateway.broadcasts.reading``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import logs, scopes
from gateway.auth import Principal
from gateway.broadcasts import language_audio
from gateway.broadcasts.models import Broadcast, Publication
from gateway.broadcasts.reading import get_broadcast, reached_villages
from gateway.deliveries import service as deliveries
from gateway.deps import Runtime
from gateway.errors import Conflict, InvalidRequest
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
    # The text in other languages, validated (audio.speech.languages.validate_texts).
    texts: Mapping[str, str] = field(default_factory=dict)

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
        if self.texts:
            body["texts"] = dict(self.texts)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# What a request keeps of its ``extra_target`` when it waits (a schedule made for the end of quiet
# hours, an approval request): the area as given, the alert an all clear ends, and the CAP alert
# it came from (whose ``expires`` bounds it: ``ends_at``).
CARRIED_TARGET: Final = ("area", "all_clear_of", "cap")


def carried(target: Mapping[str, object]) -> dict[str, object]:
    return {k: target[k] for k in CARRIED_TARGET if k in target}


def ends_at(target: Mapping[str, object]) -> datetime | None:
    """The fixed end a waiting request carries (its CAP alert's ``expires``): when it goes out
    later, it expires then, and past it, it does not go out at all."""
    alert = target.get("cap")
    expires = alert.get("expires") if isinstance(alert, dict) else None
    return datetime.fromisoformat(expires) if isinstance(expires, str) else None


def kept_texts(request: BroadcastRequest) -> dict[str, object]:
    """What a waiting request's target keeps of its texts in other languages."""
    return {"texts": dict(request.texts)} if request.texts else {}


def texts_of(target: Mapping[str, object]) -> dict[str, str]:
    """The texts in other languages a waiting request's target kept (``kept_texts``)."""
    texts = target.get("texts")
    if not isinstance(texts, dict):
        return {}
    return {str(k): str(v) for k, v in texts.items()}


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
        texts=dict(request.texts),
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
        all_clear_of=_all_clear_of(request),
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

    # Villages reading another set of languages than the first audio's are sent their own.
    sets = await language_audio.village_sets(
        session, request.texts, target.village_ids, settings.spoken_language_tags, audio.sha256
    )
    await deliveries.create_deliveries(session, broadcast.id, recipients, now, audio_sets=sets)
    # A village head's disaster alert: the district's officers are told in this transaction.
    role = request.principal.role if request.principal is not None else None
    await officer_alerts.head_disaster_sent(session, city.id, broadcast, role, now)
    if per_speaker:
        await _plan_speaker_publications(session, broadcast, recipients, now, sets)
    else:
        await _plan_publications(session, city, broadcast, target, now, sets)
    logs.broadcast_created(broadcast, len(recipients))
    return Started(broadcast, replayed=False)


def _all_clear_of(request: BroadcastRequest) -> str | None:
    cleared = request.extra_target.get("all_clear_of")
    return cleared if isinstance(cleared, str) else None


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


async def _plan_publications(
    session: AsyncSession,
    city: City,
    broadcast: Broadcast,
    target: places.ResolvedTarget,
    now: datetime,
    sets: Mapping[int, str],
) -> None:
    """One publish per group topic, so the broker fans out: the whole city, whole districts, or
    the remaining villages one by one. A topic carries one audio, so where villages are sent
    different ones (``sets``) the city's topic is not used, nor a district's whose villages
    differ: their villages are published to one by one."""
    if target.all and not sets:
        plan: list[tuple[str, list[str], list[int], str | None]] = [("all", [], [], None)]
    else:
        districts = await places.district_codes(session, target.district_ids)
        villages = await places.village_codes(session, target.village_ids)
        of_district: dict[int, set[str | None]] = {d: set() for d in target.district_ids}
        for vid, (_code, _name, district_id) in villages.items():
            of_district.setdefault(district_id, set()).add(sets.get(vid))
        whole = {d for d in target.district_ids if len(of_district[d]) <= 1}
        plan = [
            ("district", [districts[d]], [d], next(iter(of_district[d]), None))
            for d in target.district_ids
            if d in whole
        ]
        plan += [
            ("village", [code], [vid], sets.get(vid))
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
                "audio_set": audio_set,
                "state": "pending",
                "attempts": 0,
                "available_at": now,
                "created_at": now,
            }
            for kind, ids, keys, audio_set in plan
        ],
    )


async def _plan_speaker_publications(
    session: AsyncSession,
    broadcast: Broadcast,
    recipients: Sequence[speakers.TargetSpeaker],
    now: datetime,
    sets: Mapping[int, str],
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
                "audio_set": sets.get(r.village_id),
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
    broadcast = await get_broadcast(session, city.id, broadcast_id)
    await may_cancel(session, runtime, broadcast, principal)
    if broadcast.cancelled_at is not None:
        return broadcast
    # Past its expiry a speaker may still be playing it: open deliveries, not the clock,
    # say whether there is anything left to stop.
    if not await deliveries.any_open(session, broadcast.id):
        raise Conflict(
            "broadcast_finished",
            ko="이미 끝난 방송은 취소할 수 없습니다.",
            en="The broadcast has already finished; there is nothing to cancel.",
        )
    await _stop(session, runtime, broadcast)
    return broadcast


async def may_cancel(
    session: AsyncSession, runtime: Runtime, broadcast: Broadcast, principal: Principal
) -> None:
    """Refuse (403) unless ``principal`` may cancel ``broadcast`` (the cancel rule)."""
    from gateway.sending.cancelling import authorize_cancel  # the sending slice imports this
    from gateway.sending.rules import CancelPath

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


async def replace_on_send(
    session: AsyncSession, runtime: Runtime, city: City, broadcast: Broadcast
) -> list[str]:
    """A CAP Update that went out late (approved, or held by quiet hours or its <effective>)
    stops, now, what has not played of the broadcasts it replaces (``target.cap.replaces``,
    checked against its sender's rights when the Update was taken in); those stopped."""
    cap = broadcast.target.get("cap")
    replaces = cap.get("replaces") if isinstance(cap, dict) else None
    stopped: list[str] = []
    for old_id in replaces if isinstance(replaces, list) else ():
        old = await session.get(Broadcast, old_id)
        if old is None or old.city_id != city.id or old.cancelled_at is not None:
            continue
        if await deliveries.any_open(session, old.id):
            await _stop(session, runtime, old)
            stopped.append(old.id)
    return stopped


async def _stop(session: AsyncSession, runtime: Runtime, broadcast: Broadcast) -> None:
    """Nothing more is sent; open deliveries end cancelled; a signed cancel goes wherever the
    broadcast was published, stopping speakers that are playing it."""
    now = runtime.clock.now()
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
