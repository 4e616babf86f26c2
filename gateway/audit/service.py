"""Appending to the hash-chained audit log, reading it, and verifying that no row changed.

Each row's hash covers its own fields and the previous row's hash, so altering, removing or
reordering any row breaks every hash after it; ``verify`` recomputes the chain and names the
first row that does not match. Rows are never updated or deleted by the gateway.

Whoever can write the database can also compute the hashes again; given signed checkpoints
(`gateway.audit.checkpoints`), kept elsewhere, ``verify`` finds that too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import checkpoints as signed
from gateway.audit.checkpoints import Checkpoint
from gateway.audit.models import AuditEvent, AuditHead
from gateway.db import dialect_insert
from gateway.errors import Unavailable
from gateway.keyfiles import SecretError
from gateway.settings import Settings

GENESIS: Final = "0" * 64
_HEAD_ID: Final = 1


def _canonical(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _at(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def seal(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(fields)).hexdigest()


def _fields(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": _at(row.at),
        "city_id": row.city_id,
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "reason": row.reason,
        "source": row.source,
        "details": row.details or {},
    }


async def append(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    city_id: int | None = None,
    role: str | None = None,
    target: str | None = None,
    reason: str | None = None,
    source: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add one row at the end of the chain, in the caller's transaction."""
    head = await _advance_head(session)
    if head is None:
        # The first row ever. Two first rows at once would both find no head: the head is
        # made with an insert that yields to the other's (waiting for its transaction), and
        # the update then finds it either way.
        insert = dialect_insert(session)
        await session.execute(
            insert(AuditHead)
            .values(id=_HEAD_ID, seq=0, hash=GENESIS)
            .on_conflict_do_nothing(index_elements=[AuditHead.id])
        )
        head = await _advance_head(session)
        assert head is not None, "the audit head was just made"
    seq, prev = head
    row = AuditEvent(
        seq=seq,
        at=at,
        city_id=city_id,
        actor=actor[:120],
        role=role,
        action=action,
        target=target[:200] if target else None,
        outcome=outcome,
        reason=reason[:300] if reason else None,
        source=source,
        details=dict(details or {}),
        prev_hash=prev,
        hash="",
    )
    row.hash = seal(prev, _fields(row))
    session.add(row)
    await session.execute(update(AuditHead).where(AuditHead.id == _HEAD_ID).values(hash=row.hash))
    await session.flush()
    return row


async def _advance_head(session: AsyncSession) -> tuple[int, str] | None:
    """Take the next sequence number and the last hash; updating the head first serialises
    appends across replicas. None before the first row."""
    head = (
        await session.execute(
            update(AuditHead)
            .where(AuditHead.id == _HEAD_ID)
            .values(seq=AuditHead.seq + 1)
            .returning(AuditHead.seq, AuditHead.hash)
        )
    ).first()
    return None if head is None else (int(head[0]), str(head[1]))


@dataclass(frozen=True)
class Verification:
    rows: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0  # signed checkpoints the chain was checked against


def _rewritten(checkpoint: Checkpoint, since: int) -> str:
    return (
        f"rows {since} to {checkpoint.seq} were rewritten: row {checkpoint.seq} differs from "
        f"the checkpoint signed at {checkpoint.at.isoformat()}"
    )


async def verify(
    session: AsyncSession, *, checkpoints: Sequence[Checkpoint] = (), batch: int = 5000
) -> Verification:
    """Recompute the chain, and hold it against ``checkpoints`` (signed ends of the chain kept
    outside the database): a chain re-sealed after rows were altered or removed fails them."""
    pending = sorted(checkpoints, key=lambda c: c.seq)
    prev = GENESIS
    expected = 1
    count = 0
    last = 0
    matched = 0  # the last row a checkpoint vouched for
    while True:
        rows = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not rows:
            break
        for row in rows:
            count += 1
            if row.seq != expected:
                return Verification(count, False, expected, f"row {expected} is missing")
            if row.prev_hash != prev:
                return Verification(count, False, row.seq, "its link to the previous row is broken")
            if seal(prev, _fields(row)) != row.hash:
                return Verification(count, False, row.seq, "its content does not match its hash")
            while pending and pending[0].seq == row.seq:
                checkpoint = pending.pop(0)
                if checkpoint.hash != row.hash or checkpoint.count != count:
                    return Verification(
                        count, False, matched + 1, _rewritten(checkpoint, matched + 1)
                    )
                matched = row.seq
            prev = row.hash
            expected += 1
            last = row.seq
    used = len(checkpoints) - len(pending)
    if pending:
        beyond = pending[-1]
        return Verification(
            count,
            False,
            last + 1,
            f"rows after {last} were removed: the checkpoint signed at "
            f"{beyond.at.isoformat()} counted {beyond.count}",
            used,
        )
    head = await session.get(AuditHead, _HEAD_ID)
    if head is not None and (head.seq != last or head.hash != prev):
        return Verification(count, False, last + 1, "rows after it were removed", used)
    return Verification(count, True, checkpoints=used)


def _checkpoint_key(settings: Settings) -> Ed25519PublicKey:
    try:
        return signed.signing_key(settings).public_key()
    except SecretError:
        raise Unavailable(
            "checkpoint_key_missing",
            ko="감사 체크포인트 키가 설정되지 않았습니다 (GATEWAY_AUDIT_CHECKPOINT_KEY).",
            en="The audit checkpoint key is not configured (GATEWAY_AUDIT_CHECKPOINT_KEY).",
        ) from None


async def checkpoint_public_key(settings: Settings) -> Ed25519PublicKey:
    return await asyncio.to_thread(_checkpoint_key, settings)


async def own_checkpoints(settings: Settings) -> tuple[Checkpoint, ...]:
    """The checkpoints this replica's file holds, signed by its key (none when there is no
    file: a replica without background workers writes none)."""
    path = settings.checkpoint_file

    def read() -> tuple[Checkpoint, ...]:
        if not path.exists():
            return ()
        return signed.read_file(path, _checkpoint_key(settings)).valid

    return await asyncio.to_thread(read)


async def page(
    session: AsyncSession,
    *,
    city_id: int,
    action: str | None,
    actor: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEvent], int]:
    query = select(AuditEvent).where(AuditEvent.city_id == city_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit).offset(offset))
    return list(rows), total
