"""Enrollment codes: issued for one speaker by those who may manage it, redeemed once by the
speaker's installer for its configuration.

A code is 80 random bits (`wire.contract.enrollment`), valid for ``enrollment_code_ttl_s``
(a day by default) and stored only as its SHA-256: a database dump holds no usable code. A new
code for a speaker ends the ones issued before it. Redeeming is unauthenticated (the code is
the secret) and costs what a failed login costs: each unknown, used or expired code counts
against the source address (``gateway.users.throttle``), which then waits.

Redeeming a code, in one transaction, marks it used, issues the speaker's broker password (on
the broker first, when the gateway manages it), enrolls the receipt key the speaker sent, and
answers the provisioning document. When any step fails, none of it happened and the code can
be redeemed again.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

from fastapi import Request
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway import signing
from gateway.audit import service as audit
from gateway.devicesec.router import issue_and_push
from gateway.enrollment.models import EnrollmentCode
from gateway.enrollment.schemas import (
    EnrollmentCodeIssued,
    EnrollmentRedeem,
    EnrollmentRedeemed,
)
from gateway.errors import Gone, InvalidRequest, MaeulError, TooManyRequests, Unauthorized
from gateway.places.models import City
from gateway.provisioning import provisioning_of
from gateway.settings import Settings
from gateway.speakers import receipt_keys
from gateway.speakers import service as speakers
from gateway.users import throttle
from wire import contract

# What failed redemptions count against in the login throttle: no username looks like it.
THROTTLE_NAME: Final = "#enrollment"
# How long a spent or lapsed code's row stays, so that trying it again is still told "used" or
# "expired" (410) rather than "unknown" (401); then it is deleted (``purge_codes``).
KEPT_AFTER_END: Final = timedelta(days=30)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


async def issue_code(
    session: AsyncSession,
    settings: Settings,
    city: City,
    speaker_id: int,
    *,
    issued_by: str,
    now: datetime,
) -> EnrollmentCodeIssued:
    speaker = await speakers.load_speaker(session, city.id, speaker_id)
    # One code at a time per speaker: a new one ends those before it.
    await session.execute(
        update(EnrollmentCode)
        .where(
            EnrollmentCode.speaker_id == speaker.id,
            EnrollmentCode.redeemed_at.is_(None),
            EnrollmentCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    code = contract.new_enrollment_code()
    expires_at = now + timedelta(seconds=settings.enrollment_code_ttl_s)
    session.add(
        EnrollmentCode(
            city_id=city.id,
            speaker_id=speaker.id,
            code_hash=_digest(code),
            issued_by=issued_by[:64],
            issued_at=now,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return EnrollmentCodeIssued(
        speaker_id=speaker.id,
        speaker_code=speaker.code,
        code=contract.grouped_enrollment_code(code),
        expires_at=expires_at,
    )


async def purge_codes(session: AsyncSession, *, city_id: int, now: datetime) -> int:
    """Delete the codes that ended (redeemed or expired) more than ``KEPT_AFTER_END`` ago."""
    cutoff = now - KEPT_AFTER_END
    result = await session.execute(
        delete(EnrollmentCode)
        .where(
            EnrollmentCode.city_id == city_id,
            or_(EnrollmentCode.expires_at < cutoff, EnrollmentCode.redeemed_at < cutoff),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _unknown() -> Unauthorized:
    return Unauthorized(
        "invalid_enrollment_code",
        ko="설치 코드가 맞지 않습니다. 관리 화면에서 받은 코드를 다시 확인하세요.",
        en="No speaker has this enrollment code; check the code the console showed.",
    )


def _used() -> Gone:
    return Gone(
        "enrollment_code_used",
        ko="이미 사용한 설치 코드입니다. 관리 화면에서 새 코드를 발급받으세요.",
        en="This enrollment code was already redeemed; issue a new one in the console.",
    )


def _expired(at: datetime) -> Gone:
    return Gone(
        "enrollment_code_expired",
        ko=f"설치 코드의 유효 기간({at:%Y-%m-%d %H:%M} UTC)이 지났습니다. 새 코드를 발급받으세요.",
        en=f"This enrollment code expired at {at:%Y-%m-%d %H:%M} UTC; issue a new one.",
    )


def _throttled(retry_after_s: int) -> TooManyRequests:
    return TooManyRequests(
        "enrollment_throttled",
        ko=f"이 주소에서 틀린 설치 코드가 너무 많습니다. {retry_after_s}초 뒤에 다시 시도하세요.",
        en=f"Too many wrong enrollment codes from this address: try again in {retry_after_s} "
        "second(s).",
        retry_after_s=retry_after_s,
    )


def _bad_proof() -> InvalidRequest:
    return InvalidRequest(
        "invalid_receipt_key_proof",
        ko="수신 확인 키의 소유 증명 서명이 이 설치 코드와 맞지 않습니다.",
        en="The proof of possession of the receipt key does not verify for this code.",
    )


async def _failed(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    city: City,
    source: str,
    now: datetime,
    error: MaeulError,
) -> MaeulError:
    """Count a failed redemption against its source, in a transaction of its own (the
    request's is rolled back with the error)."""
    async with sessions() as own:
        await throttle.record_failure(
            own, settings, city_id=city.id, source=source, username=THROTTLE_NAME, now=now
        )
        await own.commit()
    return error


async def redeem(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    city: City,
    body: EnrollmentRedeem,
    *,
    now: datetime,
    source: str | None,
    seal: signing.KeySeal,
    request: Request,
) -> EnrollmentRedeemed:
    counted_as = throttle.source_of(source)
    try:
        await throttle.check(
            session, city_id=city.id, source=counted_as, username=THROTTLE_NAME, now=now
        )
    except TooManyRequests as exc:
        raise _throttled(exc.retry_after_s) from None
    code = contract.normalize_enrollment_code(body.code)
    row = (
        None
        if code is None
        else await session.scalar(
            select(EnrollmentCode).where(
                EnrollmentCode.city_id == city.id, EnrollmentCode.code_hash == _digest(code)
            )
        )
    )
    if code is None or row is None:
        raise await _failed(sessions, settings, city, counted_as, now, _unknown())
    if row.redeemed_at is not None:
        raise await _failed(sessions, settings, city, counted_as, now, _used())
    if row.expires_at <= now:
        raise await _failed(sessions, settings, city, counted_as, now, _expired(row.expires_at))
    speaker = await speakers.load_speaker(session, city.id, row.speaker_id)
    public_key = body.receipt_public_key
    if public_key is not None:
        if body.receipt_key_proof is None or not contract.verify_enrollment_key_proof(
            code, public_key, body.receipt_key_proof
        ):
            raise _bad_proof()
        public_key = receipt_keys.checked_key(speaker.code, public_key)
    # Claimed only if nobody claimed it meanwhile: of two redemptions at once, one wins.
    claimed = await session.execute(
        update(EnrollmentCode)
        .where(EnrollmentCode.id == row.id, EnrollmentCode.redeemed_at.is_(None))
        .values(redeemed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise _used()
    if public_key is not None:
        speaker.receipt_public_key = public_key
        speaker.receipt_key_enrolled_at = now
    issued = await issue_and_push(session, city, speaker.id, now=now, request=request)
    placement = await speakers.placement_of(session, city, speaker.code)
    await audit.append(
        session,
        at=now,
        city_id=city.id,
        actor=speaker.code,
        action="speaker_enrolled",
        outcome="ok",
        target=speaker.code,
        source=source,
        details={"receipt_key": public_key is not None},
    )
    return EnrollmentRedeemed(
        speaker_id=speaker.id,
        password=issued.password,
        receipt_key_enrolled=public_key is not None,
        provisioning=await provisioning_of(session, settings, city, placement, seal),
    )
