"""Receipt keys: each speaker's own Ed25519 key, of which the gateway keeps the public half to check
the receipts the speaker signs."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deliveries import ed25519
from gateway.errors import InvalidRequest, NotFound
from gateway.places.models import City
from gateway.speakers.models import Speaker
from gateway.speakers.schemas import (
    ReceiptKeyEnroll,
    ReceiptKeyRead,
    ReceiptKeysEnrolled,
)
from gateway.speakers.service import in_chunks, load_speaker, speaker_ids_by_code
from wire import contract


def _bad_receipt_key(code: str) -> InvalidRequest:
    return InvalidRequest(
        "invalid_receipt_key",
        ko=f"스피커 {code}의 수신 확인 키가 올바른 Ed25519 공개 키가 아닙니다.",
        en=f"The receipt key of speaker {code} is not a valid Ed25519 public key "
        "(a canonical point of the prime-order subgroup).",
    )


def _proven_key(city: City, code: str, public_key: str, proof: str) -> str:
    """A strong key whose holder signed its enrollment for this speaker of this city."""
    key = checked_key(code, public_key)
    if not contract.verify_receipt_key_proof(city.code, code, key, proof):
        raise InvalidRequest(
            "invalid_receipt_key_proof",
            ko=f"스피커 {code}의 수신 확인 키 소유 증명 서명이 맞지 않습니다.",
            en=f"The proof of possession of speaker {code}'s receipt key does not verify.",
        )
    return key


def checked_key(code: str, public_key: str) -> str:
    """`public_key` when it is a strong Ed25519 public key, else 422 `invalid_receipt_key`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(public_key, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise _bad_receipt_key(code) from None
    # A small-order or mixed-order point (all zeros among them) would let anyone forge the
    # speaker's receipts: only a point of the prime-order subgroup is a receipt key.
    if not ed25519.is_strong_public_key(raw):
        raise _bad_receipt_key(code)
    return public_key


async def enroll_receipt_key(
    session: AsyncSession,
    city: City,
    speaker_id: int,
    enrollment: ReceiptKeyEnroll,
    *,
    now: datetime,
) -> ReceiptKeyRead:
    """Set a speaker's receipt key; receipts it signs from now on verify against this one."""
    speaker = await load_speaker(session, city.id, speaker_id)
    public_key = enrollment.public_key
    speaker.receipt_public_key = _proven_key(city, speaker.code, public_key, enrollment.proof)
    speaker.receipt_key_enrolled_at = now
    await session.flush()
    return ReceiptKeyRead(
        speaker_id=speaker.id, code=speaker.code, public_key=public_key, enrolled_at=now
    )


async def enroll_receipt_keys(
    session: AsyncSession, city: City, keys: Mapping[str, ReceiptKeyEnroll], *, now: datetime
) -> ReceiptKeysEnrolled:
    """Set the receipt keys of many speakers by code: all or none."""
    # A few milliseconds of pure Python per key (the subgroup check): a fleet's thousands
    # are checked off the event loop, which keeps taking acks and heartbeats meanwhile.
    checked = await asyncio.to_thread(
        lambda: {code: _proven_key(city, code, e.public_key, e.proof) for code, e in keys.items()}
    )
    ids = await speaker_ids_by_code(session, city.id, checked)
    unknown = sorted(set(checked) - set(ids))
    if unknown:
        raise NotFound(
            "speaker_not_found",
            ko=f"없는 스피커 코드: {', '.join(unknown[:10])}",
            en=f"Unknown speaker codes: {', '.join(unknown[:10])}",
        )
    # One executemany, not a statement per speaker: the write lock is held for milliseconds.
    table = cast(Table, Speaker.__table__)
    if checked:
        await (await session.connection()).execute(
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(receipt_public_key=bindparam("key"), receipt_key_enrolled_at=now),
            [{"sid": ids[code], "key": key} for code, key in checked.items()],
        )
    await session.flush()
    return ReceiptKeysEnrolled(enrolled=len(checked))


async def receipt_keys(
    session: AsyncSession, speaker_ids: Collection[int]
) -> dict[int, tuple[str, bytes | None]]:
    """Speaker id -> (code, raw receipt public key or None when none is enrolled)."""
    found: dict[int, tuple[str, bytes | None]] = {}
    for chunk in in_chunks(sorted(set(speaker_ids))):
        rows = await session.execute(
            select(Speaker.id, Speaker.code, Speaker.receipt_public_key).where(
                Speaker.id.in_(chunk)
            )
        )
        for speaker_id, code, key in rows.tuples():
            found[speaker_id] = (code, base64.b64decode(key) if key else None)
    return found
