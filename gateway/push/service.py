"""Putting push messages in the outbox, claiming them for sending, and every change of their
state.

`enqueue_push` writes one message per subscription of a village, once per reference: the same
broadcast enqueued again (a retry of the caller, another replica's fallback) adds nothing.
Every change is one compare-and-set on the row's ``version`` (`_move`), so two gateway replicas
never both move a message: the loser reads the row again and applies its event to what it
finds, through the transition table in `gateway.push.states`. Services flush, never commit.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import dialect_insert
from gateway.push.models import PushMessage, PushSubscription
from gateway.push.states import PushEvent, PushStatus, next_status
from wire.contract import Category

# RFC 8291: one 4096-byte record holds 3993 bytes of plaintext (86 bytes of header, a padding
# delimiter and the 16-byte tag); every push service takes at least that much.
MAX_PAYLOAD_BYTES: Final = 3993
MAX_TITLE_CHARS: Final = 100
_CANDIDATES: Final = 20
_MOVE_ATTEMPTS: Final = 10
# Rows per INSERT: well within SQLite's limit of bound parameters (14 a row).
_INSERT_CHUNK: Final = 500
_ELLIPSIS: Final = "…"
# References whose id is a broadcast's.
_BROADCAST_KINDS: Final = frozenset({"broadcast", "broadcast_fallback"})


def urgency_of(category: Category) -> str:
    """RFC 8030's Urgency: a phone in power saving still wakes for a disaster at once."""
    return "high" if category is Category.DISASTER else "normal"


def notice_link(public_url: str, village_id: int, broadcast_id: str | None = None) -> str:
    """The residents' page of the village, at the notice when there is one: the link to listen."""
    base = f"{public_url.rstrip('/')}/notices/{village_id}"
    return f"{base}#notice-{broadcast_id}" if broadcast_id else base


def build_payload(
    *, title: str, body: str, url: str, broadcast_id: str | None, category: Category
) -> str:
    """The JSON the browser decrypts, within one record: a long body is cut (the link has the
    whole notice), never the link."""
    title = title.strip()
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + _ELLIPSIS
    fields: dict[str, Any] = {
        "title": title,
        "body": body.strip(),
        "url": url,
        "broadcast_id": broadcast_id,
        "category": category.value,
    }

    def encoded(body: str) -> str:
        return json.dumps({**fields, "body": body}, ensure_ascii=False, separators=(",", ":"))

    text = fields["body"]
    payload = encoded(text)
    if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        # The longest start of the body that fits, found by halving.
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if len(encoded(text[:middle] + _ELLIPSIS).encode("utf-8")) <= MAX_PAYLOAD_BYTES:
                low = middle
            else:
                high = middle - 1
        payload = encoded(text[:low] + _ELLIPSIS)
        if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            raise ValueError("the title and link alone do not fit one push message")
    return payload


async def enqueue_push(
    session: AsyncSession,
    *,
    village_id: int,
    title: str,
    body: str,
    url: str,
    reference_kind: str,
    reference_id: str,
    now: datetime,
    category: Category = Category.ADMINISTRATIVE,
    ttl: timedelta = timedelta(hours=12),
) -> list[str]:
    """Put one message per subscription of the village in the outbox, queued; the push worker
    sends them. A subscription that has a message for this reference already gets none: the
    ids of the new messages are returned. ``reference_kind`` "broadcast" makes ``reference_id`` the
    payload's broadcast id (so does "broadcast_fallback", the fallback's)."""
    if not (0 < len(reference_kind) <= 32 and 0 < len(reference_id) <= 64):
        raise ValueError("reference_kind (1-32 characters) and reference_id (1-64) are required")
    payload = build_payload(
        title=title,
        body=body,
        url=url,
        broadcast_id=reference_id if reference_kind in _BROADCAST_KINDS else None,
        category=category,
    )
    already = select(PushMessage.subscription_id).where(
        PushMessage.reference_kind == reference_kind,
        PushMessage.reference_id == reference_id,
        PushMessage.subscription_id.is_not(None),
    )
    subscriptions = await session.execute(
        select(PushSubscription.id, PushSubscription.city_id)
        .where(PushSubscription.village_id == village_id, PushSubscription.id.not_in(already))
        .order_by(PushSubscription.id)
    )
    rows = [
        {
            "id": secrets.token_hex(16),
            "city_id": city_id,
            "village_id": village_id,
            "subscription_id": subscription_id,
            "reference_kind": reference_kind,
            "reference_id": reference_id,
            "payload": payload,
            "urgency": urgency_of(category),
            "status": PushStatus.QUEUED,
            "attempts": 0,
            "version": 0,
            "next_attempt_at": now,
            "expires_at": now + ttl,
            "created_at": now,
        }
        for subscription_id, city_id in subscriptions.tuples()
    ]
    # Two callers queueing the same reference at once: the unique key keeps one message per
    # subscription, and the second caller's insert skips it instead of failing.
    insert = dialect_insert(session)
    queued: list[str] = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        result = await session.execute(
            insert(PushMessage)
            .values(rows[start : start + _INSERT_CHUNK])
            .on_conflict_do_nothing(
                index_elements=["subscription_id", "reference_kind", "reference_id"]
            )
            .returning(PushMessage.id)
        )
        queued.extend(result.scalars())
    return queued


@dataclass(frozen=True)
class Claim:
    """A message claimed for sending, with what sending it needs, as it was when claimed."""

    id: str
    subscription_id: str
    endpoint: str
    p256dh: str
    auth: str
    payload: str
    urgency: str
    attempts: int
    expires_at: datetime


async def claim_next(
    session: AsyncSession,
    *,
    city_id: int,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    passed: set[str] | None = None,
) -> Claim | None:
    """Claim the next due message of the city for this worker, or None when none is due.

    Due: queued with its next attempt now or past, or sending under a lease that ran out (its
    worker died before recording the push service's answer). One whose time ran out, or whose
    subscription is gone, is ended as expired on the way, not returned."""
    query = (
        select(
            PushMessage.id,
            PushMessage.version,
            PushMessage.status,
            PushMessage.expires_at,
            PushMessage.subscription_id,
        )
        .where(
            PushMessage.city_id == city_id,
            or_(
                and_(PushMessage.status == PushStatus.QUEUED, PushMessage.next_attempt_at <= now),
                and_(PushMessage.status == PushStatus.SENDING, PushMessage.lease_until < now),
            ),
        )
        .order_by(PushMessage.next_attempt_at, PushMessage.id)
        .limit(_CANDIDATES)
    )
    if passed:
        query = query.where(PushMessage.id.not_in(list(passed)))
    for message_id, version, status, expires_at, subscription_id in (
        await session.execute(query)
    ).all():
        if subscription_id is None or expires_at <= now:
            reason = "unsubscribed" if subscription_id is None else "ttl"
            ended = next_status(PushStatus(status), PushEvent.EXPIRE)
            await _set(session, message_id, version, ended, {**_ended(now), "reason": reason})
            continue
        claimed = next_status(PushStatus(status), PushEvent.CLAIMED)
        won = await _set(
            session,
            message_id,
            version,
            claimed,
            {
                "attempts": PushMessage.attempts + 1,
                "claimed_by": worker_id,
                "lease_until": now + lease,
            },
        )
        if not won:
            continue  # another worker took it first
        row = (
            await session.execute(
                select(
                    PushMessage.payload,
                    PushMessage.urgency,
                    PushMessage.attempts,
                    PushSubscription.endpoint,
                    PushSubscription.p256dh,
                    PushSubscription.auth,
                )
                .join(PushSubscription, PushSubscription.id == PushMessage.subscription_id)
                .where(PushMessage.id == message_id)
            )
        ).one()
        return Claim(
            id=message_id,
            subscription_id=subscription_id,
            endpoint=row.endpoint,
            p256dh=row.p256dh,
            auth=row.auth,
            payload=row.payload,
            urgency=row.urgency,
            attempts=row.attempts,
            expires_at=expires_at,
        )
    return None


def _ended(now: datetime) -> dict[str, Any]:
    return {"claimed_by": None, "lease_until": None, "finished_at": now}


async def _set(
    session: AsyncSession, message_id: str, version: int, status: PushStatus, values: dict[str, Any]
) -> bool:
    moved = await session.execute(
        update(PushMessage)
        .where(PushMessage.id == message_id, PushMessage.version == version)
        .values(status=status, version=PushMessage.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return getattr(moved, "rowcount", 0) == 1


async def _move(
    session: AsyncSession, message_id: str, event: PushEvent, values: dict[str, Any]
) -> PushStatus:
    """Apply `event` to the message as it is now. Raises InvalidTransition (nothing changed)."""
    for _ in range(_MOVE_ATTEMPTS):
        row = (
            await session.execute(
                select(PushMessage.status, PushMessage.version).where(PushMessage.id == message_id)
            )
        ).one()
        current = PushStatus(row.status)
        new = next_status(current, event)
        if new == current or await _set(session, message_id, row.version, new, values):
            return new
    raise RuntimeError(f"push {message_id}: still contended after {_MOVE_ATTEMPTS} attempts")


_RELEASED: Final = {"claimed_by": None, "lease_until": None}


async def record_sent(session: AsyncSession, message_id: str, now: datetime) -> PushStatus:
    values = {**_ended(now), "sent_at": now, "reason": None}
    return await _move(session, message_id, PushEvent.ACCEPTED, values)


async def record_retry(
    session: AsyncSession, message_id: str, *, reason: str, at: datetime
) -> PushStatus:
    values = {**_RELEASED, "reason": reason[:200], "next_attempt_at": at}
    return await _move(session, message_id, PushEvent.RETRY, values)


async def record_failed(
    session: AsyncSession, message_id: str, *, reason: str, now: datetime, event: PushEvent
) -> PushStatus:
    """End the message as failed (GIVE_UP) or expired (EXPIRE)."""
    return await _move(session, message_id, event, {**_ended(now), "reason": reason[:200]})


async def drop_subscription(
    session: AsyncSession, message_id: str, subscription_id: str, *, reason: str, now: datetime
) -> PushStatus:
    """The push service no longer knows the subscription (404, 410): the message ends expired,
    the subscription is forgotten, and its other waiting messages end with it."""
    status = await _move(session, message_id, PushEvent.GONE, {**_ended(now), "reason": reason})
    waiting = (
        await session.execute(
            select(PushMessage.id, PushMessage.version).where(
                PushMessage.subscription_id == subscription_id,
                PushMessage.status == PushStatus.QUEUED,
            )
        )
    ).all()
    for other_id, version in waiting:
        ended = {**_ended(now), "reason": "unsubscribed"}
        await _set(session, other_id, version, PushStatus.EXPIRED, ended)
    await session.execute(
        delete(PushSubscription)
        .where(PushSubscription.id == subscription_id)
        .execution_options(synchronize_session=False)
    )
    return status


async def get_message(session: AsyncSession, message_id: str) -> PushMessage | None:
    return await session.get(PushMessage, message_id, populate_existing=True)
