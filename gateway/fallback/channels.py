"""The channels a broadcast falls back on, one sender each, in one registry (`SENDERS`).

A sender tells one village's consenting residents about one broadcast, in the caller's
transaction, and returns how many messages it queued. The rules accept a channel only once it
is in the registry; a job skips a channel this gateway does not send on (`enabled_channels`).

SMS goes to residents: each resident chosen is recorded as a `ChannelDelivery` (unique per
broadcast, village, resident and channel: a second pass never tells anyone twice).

Web push goes to villages: a subscription belongs to a village's residents' page, not to a
resident, so nothing is recorded per resident. The push outbox itself is the record: one
message per subscription of the village with ``reference_kind`` "broadcast_fallback" and the
broadcast's id, unique per subscription and reference, so a second pass adds nothing; the
broadcast's counts (`gateway.fallback.reading.push_counts`) are read from it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Broadcast
from gateway.fallback.models import ChannelDelivery
from gateway.push.service import enqueue_push, notice_link
from gateway.residents.crypto import PhoneCipher, PhoneKeyUnavailable
from gateway.residents.models import Channel
from gateway.residents.reach import (
    Reachable,
    load_for_sending,
    phone_for_sending,
    reachable_residents,
)
from gateway.settings import Settings
from gateway.sms.segments import count_parts
from gateway.sms.service import enqueue_sms
from wire.contract import Category

log = logging.getLogger(__name__)

REFERENCE_KIND: Final = "broadcast_fallback"


@dataclass(frozen=True)
class Fanout:
    """One village of one broadcast, to tell on one channel."""

    session: AsyncSession
    settings: Settings
    cipher: PhoneCipher
    broadcast: Broadcast
    village_id: int
    village_name: str
    now: datetime


Sender = Callable[[Fanout], Awaitable[int]]


def listen_url(settings: Settings, village_id: int) -> str:
    """The residents' page of the village, where the notice can be heard."""
    return f"{settings.public_url.rstrip('/')}/notices/{village_id}"


def sms_text(broadcast: Broadcast, village_name: str, url: str, *, max_parts: int) -> str:
    """``[마을방송] 상촌리: <text or title>`` and the link to listen, shortened to fit
    ``max_parts`` (the link is never cut)."""
    body = (broadcast.text or broadcast.title or "새 방송이 있습니다.").strip()
    head = f"[마을방송] {village_name}: "
    tail = f"\n듣기: {url}"
    text = head + body + tail
    while count_parts(text) > max_parts and body:
        body = body[: max(0, len(body) - max(1, len(body) // 10))]
        text = head + body.rstrip() + "…" + tail
    return text


async def _already_told(fanout: Fanout, resident_ids: Sequence[int], channel: str) -> set[int]:
    """Those of `resident_ids` told about this broadcast in this village on `channel`."""
    told: set[int] = set()
    for start in range(0, len(resident_ids), 900):
        told.update(
            await fanout.session.scalars(
                select(ChannelDelivery.resident_id).where(
                    ChannelDelivery.broadcast_id == fanout.broadcast.id,
                    ChannelDelivery.village_id == fanout.village_id,
                    ChannelDelivery.resident_id.in_(resident_ids[start : start + 900]),
                    ChannelDelivery.channel == channel,
                )
            )
        )
    return told


async def send_sms(fanout: Fanout) -> int:
    """One SMS to each resident of the village consenting to SMS now; returns how many were
    queued."""
    residents = await reachable_residents(
        fanout.session,
        fanout.broadcast.city_id,
        [fanout.village_id],
        Channel.SMS,
        now=fanout.now,
    )
    return await sms_to(fanout, residents)


async def sms_to(fanout: Fanout, residents: Sequence[Reachable]) -> int:
    """One SMS to each of the chosen residents; one whose consent went since they were chosen
    is skipped (``consent_withdrawn``)."""
    session, now = fanout.session, fanout.now
    text = sms_text(
        fanout.broadcast,
        fanout.village_name,
        listen_url(fanout.settings, fanout.village_id),
        max_parts=fanout.settings.sms_max_parts,
    )
    told = await _already_told(fanout, [r.resident_id for r in residents], Channel.SMS.value)
    fresh = [r for r in residents if r.resident_id not in told]
    # One read for every resident's number, and one write for every row: a village's
    # residents are queued in a few statements, not a few each.
    loaded = await load_for_sending(session, [r.resident_id for r in fresh])
    rows: list[tuple[ChannelDelivery, str]] = []
    for resident in fresh:
        row = ChannelDelivery(
            broadcast_id=fanout.broadcast.id,
            village_id=fanout.village_id,
            resident_id=resident.resident_id,
            channel=Channel.SMS.value,
            state="queued",
            created_at=now,
        )
        session.add(row)
        try:
            number = await phone_for_sending(session, fanout.cipher, resident.resident_id, now=now)
        except PhoneKeyUnavailable:
            number, row.reason = None, "phone_key_unavailable"
        if number is None:
            row.state = "skipped"
            row.reason = row.reason or "consent_withdrawn"
            continue
        rows.append((row, number))
    await session.flush()
    for row, number in rows:
        message = await enqueue_sms(
            session,
            cipher=fanout.cipher,
            city_id=fanout.broadcast.city_id,
            to_number=number,
            text=text,
            reference_kind=REFERENCE_KIND,
            reference_id=str(row.id),
            now=now,
            max_parts=fanout.settings.sms_max_parts,
            flush=False,
        )
        row.message_id = message.id
    await session.flush()
    del loaded
    return len(rows)


async def send_push(fanout: Fanout) -> int:
    """One push message to each browser subscribed to the village's residents' page; returns how
    many were queued (none for a subscription told about this broadcast already)."""
    broadcast = fanout.broadcast
    queued = await enqueue_push(
        fanout.session,
        village_id=fanout.village_id,
        title=f"[마을방송] {fanout.village_name}".strip(),
        body=(broadcast.text or broadcast.title or "새 방송이 있습니다.").strip(),
        url=notice_link(fanout.settings.public_url, fanout.village_id, broadcast.id),
        reference_kind=REFERENCE_KIND,
        reference_id=broadcast.id,
        now=fanout.now,
        category=Category(broadcast.category),
        ttl=timedelta(seconds=fanout.settings.push_ttl_s),
    )
    return len(queued)


# Every channel a rule may name.
SENDERS: Final[dict[str, Sender]] = {
    Channel.SMS.value: send_sms,
    Channel.WEB_PUSH.value: send_push,
}


def enabled_channels(settings: Settings) -> frozenset[str]:
    """The channels this gateway sends on: SMS with an SMS gateway, web push with a VAPID key."""
    on = {Channel.SMS.value: settings.sms_enabled, Channel.WEB_PUSH.value: settings.push_enabled}
    return frozenset(channel for channel, yes in on.items() if yes)
