"""Speakers' presence from the wire: online and offline as their status messages and wills say, and
those gone silent marked offline."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import UTCDateTime
from gateway.speakers.models import Speaker
from gateway.speakers.schemas import (
    CODEC_ORDER,
)
from gateway.speakers.service import in_chunks, speaker_ids_by_code, speakers_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PresenceUpdate:
    code: str
    status: Literal["online", "heartbeat", "offline"]
    at: datetime
    codecs: tuple[str, ...] | None
    firmware: str | None
    clock_offset_ms: int | None = None


async def apply_presence(
    session: AsyncSession, city_id: int, updates: Sequence[PresenceUpdate]
) -> list[int]:
    """Apply a batch of presence messages with a few statements, whatever the batch size.

    Within the batch the last message of a speaker decides whether it is online: a will
    (``offline``) carries the time its connection began, so times cannot order it. Returns the
    ids of speakers that came online (were offline before), so they can be sent what they missed.
    """
    final: dict[str, str] = {}
    seen_at: dict[str, datetime] = {}
    declared: dict[str, dict[str, object]] = {}
    for message in updates:
        final[message.code] = message.status
        if message.status == "offline":
            continue
        if message.code not in seen_at or message.at > seen_at[message.code]:
            seen_at[message.code] = message.at
        if message.clock_offset_ms is not None:
            declared.setdefault(message.code, {})["clock_offset_ms"] = message.clock_offset_ms
        if message.status == "online":
            facts = declared.setdefault(message.code, {})
            codecs = [c for c in CODEC_ORDER if c in (message.codecs or ())]
            if codecs:
                facts["codecs"] = codecs
            if message.firmware is not None:
                facts["firmware"] = message.firmware[:64]
    if not final:
        return []
    ids = await speaker_ids_by_code(session, city_id, final.keys())
    unknown = len(final) - len(ids)
    if unknown:
        log.info("presence from %d unknown speakers ignored", unknown)

    going_offline = sorted(
        ids[c] for c, status in final.items() if status == "offline" and c in ids
    )
    going_online = sorted(ids[c] for c, status in final.items() if status != "offline" and c in ids)
    for chunk in in_chunks(going_offline):
        await session.execute(
            update(Speaker)
            .where(Speaker.id.in_(chunk), Speaker.online.is_(True))
            .values(online=False)
            .execution_options(synchronize_session=False)
        )
    came_online: list[int] = []
    for chunk in in_chunks(going_online):
        # Flipping only rows that were offline makes "came online" exact even when two gateway
        # replicas see the same speaker: the second finds it online already.
        came_online += await session.scalars(
            update(Speaker)
            .where(Speaker.id.in_(chunk), Speaker.online.is_(False))
            .values(online=True)
            .returning(Speaker.id)
            .execution_options(synchronize_session=False)
        )

    table = speakers_table()
    at = bindparam("b_at", type_=UTCDateTime())
    # One executemany per shape of change; last_seen_at never moves backwards.
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for code, moment in seen_at.items():
        if code not in ids:
            continue
        facts = declared.get(code, {})
        shape = tuple(sorted(facts))
        shapes.setdefault(shape, []).append(
            {"b_id": ids[code], "b_at": moment, **{f"b_{k}": v for k, v in facts.items()}}
        )
    for shape, params in shapes.items():
        values: dict[str, object] = {
            "last_seen_at": case(
                (or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < at), at),
                else_=table.c.last_seen_at,
            )
        }
        for name in shape:
            values[name] = bindparam(f"b_{name}", type_=table.c[name].type)
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(values), params
        )
    return sorted(came_online)


async def mark_silent_offline(
    session: AsyncSession, city_id: int, *, older_than: datetime
) -> list[int]:
    """Speakers online but not heard from since ``older_than`` go offline; returns their ids."""
    silent = await session.scalars(
        update(Speaker)
        .where(
            Speaker.city_id == city_id,
            Speaker.online.is_(True),
            or_(Speaker.last_seen_at.is_(None), Speaker.last_seen_at < older_than),
        )
        .values(online=False)
        .returning(Speaker.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(silent)
