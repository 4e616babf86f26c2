"""Residents signing themselves up, and withdrawing: a six-digit code by SMS, and its check.

A code is kept only as a keyed hash, lives five minutes and allows five tries (each try is
counted in a transaction of its own before the code is compared, so a wrong guess is counted
even though the request fails, and parallel guesses cannot share a try). Codes are limited per
number and per source address an hour. Whether a number is already signed up is never told
before the code is verified: a verified sign-up of a number already there renews its consent.

Exceptions: 404 signup_not_found, 409 verification_expired, 422 invalid_verification_code,
outdated_consent, consent_required, 429 signup_rate_limited.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from gateway.places.models import City
from gateway.places.service import load_village
from gateway.residents import service
from gateway.residents.consent import CONSENT_VERSION
from gateway.residents.crypto import PhoneCipher, mask_last4, normalise_phone
from gateway.residents.models import (
    SIGNUP,
    WITHDRAWAL,
    ConsentSource,
    PhoneVerification,
    ResidentState,
)
from gateway.residents.schemas import (
    SignupDone,
    SignupStart,
    SignupStarted,
    SignupVerify,
    WithdrawalDone,
    WithdrawalStart,
)
from gateway.residents.sms import SmsSender
from gateway.settings import Settings

CODE_TTL: Final = timedelta(minutes=5)
MAX_TRIES: Final = 5
WINDOW: Final = timedelta(hours=1)
CODES_PER_NUMBER: Final = 3
CODES_PER_SOURCE: Final = 10
# Sign-ups are kept this long for the limits above, then deleted; the number in one sooner,
# as soon as it is verified or its code expired.
KEPT: Final = timedelta(days=1)


def _context(signup_id: str) -> str:
    return f"signup:{signup_id}"


def _code_hash(cipher: PhoneCipher, signup_id: str, code: str) -> str:
    return cipher.hmac("signup code", signup_id, code)


def _limited(what_ko: str, what_en: str, oldest: datetime | None, now: datetime) -> TooManyRequests:
    wait = WINDOW - (now - oldest) if oldest is not None else WINDOW
    return TooManyRequests(
        "signup_rate_limited",
        ko=f"{what_ko} 인증번호 요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
        en=f"Too many verification codes {what_en}; try again later.",
        retry_after_s=max(1, int(wait.total_seconds())),
    )


async def _check_limits(
    session: AsyncSession, city_id: int, lookups: list[str], source: str, now: datetime
) -> None:
    since = now - WINDOW
    for column, values, limit, ko, en in (
        (PhoneVerification.phone_lookup, lookups, CODES_PER_NUMBER, "이 번호로", "for this number"),
        (PhoneVerification.source_lookup, [source], CODES_PER_SOURCE, "이 곳에서", "from here"),
    ):
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(PhoneVerification.created_at)).where(
                    PhoneVerification.city_id == city_id,
                    column.in_(values),
                    PhoneVerification.created_at > since,
                )
            )
        ).one()
        if count >= limit:
            raise _limited(ko, en, oldest, now)


async def start_signup(
    session: AsyncSession,
    city: City,
    cipher: PhoneCipher,
    sender: SmsSender,
    body: SignupStart,
    *,
    source: str,
    now: datetime,
) -> SignupStarted:
    if not body.consent:
        raise InvalidRequest(
            "consent_required",
            ko="개인정보 수집·이용에 동의하셔야 가입할 수 있습니다.",
            en="Signing up needs consent to the collection and use of personal data.",
        )
    if body.consent_version != CONSENT_VERSION:
        raise InvalidRequest(
            "outdated_consent",
            ko="동의서 내용이 바뀌었습니다. 페이지를 새로 고쳐 다시 읽어 주세요.",
            en=f"The consent text shown is not the current one ({CONSENT_VERSION}).",
        )
    await load_village(session, city.id, body.village_id)
    return await _send_code(
        session,
        city,
        cipher,
        sender,
        PhoneVerification(
            purpose=SIGNUP,
            village_id=body.village_id,
            language=body.language,
            channels=sorted({c.value for c in body.channels}),
            consent_version=body.consent_version,
        ),
        body.phone,
        source=source,
        now=now,
    )


async def start_withdrawal(
    session: AsyncSession,
    city: City,
    cipher: PhoneCipher,
    sender: SmsSender,
    body: WithdrawalStart,
    *,
    source: str,
    now: datetime,
) -> SignupStarted:
    """A resident withdraws their consent themselves: a code to the number proves it is theirs
    (whether it is signed up is told only after)."""
    return await _send_code(
        session,
        city,
        cipher,
        sender,
        PhoneVerification(purpose=WITHDRAWAL, language="", channels=[], consent_version=""),
        body.phone,
        source=source,
        now=now,
    )


async def _send_code(
    session: AsyncSession,
    city: City,
    cipher: PhoneCipher,
    sender: SmsSender,
    verification: PhoneVerification,
    phone: str,
    *,
    source: str,
    now: datetime,
) -> SignupStarted:
    number = normalise_phone(phone)
    source_lookup = cipher.hmac("signup source", source)
    await _check_limits(session, city.id, cipher.lookups(number), source_lookup, now)
    signup_id = secrets.token_hex(16)
    code = f"{secrets.randbelow(10**6):06d}"
    sealed = cipher.seal(number, context=_context(signup_id))
    verification.id = signup_id
    verification.city_id = city.id
    verification.phone_key_id = sealed.key_id
    verification.phone_ciphertext = sealed.ciphertext
    verification.phone_lookup = sealed.lookup
    verification.source_lookup = source_lookup
    verification.code_hash = _code_hash(cipher, signup_id, code)
    verification.attempts = 0
    verification.created_at = now
    verification.expires_at = now + CODE_TTL
    session.add(verification)
    await session.flush()
    what = "가입" if verification.purpose == SIGNUP else "동의 철회"
    await sender.send(
        number,
        f"[마을방송] {what} 인증번호 {code} (5분 안에 입력). 요청하지 않으셨다면 무시하세요.",
        reference=_context(signup_id),
    )
    return SignupStarted(
        signup_id=signup_id, expires_at=verification.expires_at, phone=mask_last4(sealed.last4)
    )


def _not_found() -> NotFound:
    return NotFound(
        "signup_not_found",
        ko="가입 요청을 찾을 수 없습니다. 처음부터 다시 해 주세요.",
        en="No such sign-up waiting for its code; start again.",
    )


def _expired() -> Conflict:
    return Conflict(
        "verification_expired",
        ko="인증번호가 만료되었거나 입력 횟수를 넘었습니다. 인증번호를 다시 받아 주세요.",
        en="The code expired or was tried too often; ask for a new one.",
    )


async def _count_try(
    sessions: async_sessionmaker[AsyncSession], city_id: int, signup_id: str, now: datetime
) -> None:
    """Use up one try, in a transaction of its own that stays even if the code is wrong."""
    async with sessions() as own:
        taken = await own.execute(
            update(PhoneVerification)
            .where(
                PhoneVerification.id == signup_id,
                PhoneVerification.city_id == city_id,
                PhoneVerification.verified_at.is_(None),
                PhoneVerification.attempts < MAX_TRIES,
                PhoneVerification.expires_at > now,
            )
            .values(attempts=PhoneVerification.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        await own.commit()
    if getattr(taken, "rowcount", 0) != 1:
        async with sessions() as own:
            exists = await own.scalar(
                select(PhoneVerification.id).where(
                    PhoneVerification.id == signup_id,
                    PhoneVerification.city_id == city_id,
                    PhoneVerification.verified_at.is_(None),
                )
            )
        raise _expired() if exists is not None else _not_found()


async def _checked(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    city: City,
    cipher: PhoneCipher,
    body: SignupVerify,
    purpose: str,
    now: datetime,
) -> tuple[PhoneVerification, str]:
    """The verification and its number, once the code is right (a try used up either way);
    the number and the code are then forgotten (the row stays a day, for the limits)."""
    await _count_try(sessions, city.id, body.signup_id, now)
    verification = await session.get(PhoneVerification, body.signup_id)
    if verification is None or verification.code_hash is None or verification.purpose != purpose:
        raise _not_found()
    if not hmac.compare_digest(
        verification.code_hash, _code_hash(cipher, verification.id, body.code)
    ):
        left = MAX_TRIES - verification.attempts
        raise InvalidRequest(
            "invalid_verification_code",
            ko=f"인증번호가 맞지 않습니다 (남은 횟수 {left}번).",
            en=f"Wrong code ({left} tries left).",
        )
    assert verification.phone_key_id is not None
    assert verification.phone_ciphertext is not None
    number = cipher.open(
        verification.phone_key_id,
        verification.phone_ciphertext,
        context=_context(verification.id),
    )
    verification.verified_at = now
    verification.phone_key_id = None
    verification.phone_ciphertext = None
    verification.code_hash = None
    await session.flush()
    return verification, number


async def verify_signup(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    city: City,
    cipher: PhoneCipher,
    settings: Settings,
    body: SignupVerify,
    *,
    now: datetime,
) -> SignupDone:
    verification, number = await _checked(session, sessions, city, cipher, body, SIGNUP, now)
    assert verification.village_id is not None
    existing = await service.find_by_number(session, cipher, city.id, number)
    if existing is not None:
        if existing.village_id != verification.village_id:  # moved: a new village
            existing.village_id = verification.village_id
            existing.household_id = None
        await service.renew_consent(
            session,
            settings,
            existing,
            channels=verification.channels,
            language=verification.language,
            consent_version=verification.consent_version,
            now=now,
        )
        resident = existing
    else:
        resident = await service.insert_resident(
            session,
            cipher,
            settings,
            city.id,
            service.NewResident(
                village_id=verification.village_id,
                household_id=None,
                number=number,
                language=verification.language,
                channels=verification.channels,
                source=ConsentSource.SIGNUP,
                consent_version=verification.consent_version,
                consented_at=now,
            ),
            now=now,
        )
    read = service.resident_read(resident)
    return SignupDone(
        resident_id=resident.id,
        village_id=resident.village_id,
        phone=read.phone or "",
        channels=list(resident.channels),
        consent_expires_at=resident.consent_expires_at,
        renewed=existing is not None,
    )


async def verify_withdrawal(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    city: City,
    cipher: PhoneCipher,
    body: SignupVerify,
    *,
    now: datetime,
) -> WithdrawalDone:
    """The code from the SMS: the resident with that number is erased at once."""
    _, number = await _checked(session, sessions, city, cipher, body, WITHDRAWAL, now)
    resident = await service.find_by_number(session, cipher, city.id, number)
    if resident is not None:
        service.erase(resident, ResidentState.WITHDRAWN, now=now)
        await session.flush()
    return WithdrawalDone(withdrawn=resident is not None)


async def purge_signups(session: AsyncSession, *, city_id: int, now: datetime) -> int:
    """Forget the numbers of sign-ups whose code expired, and delete sign-ups past a day."""
    await session.execute(
        update(PhoneVerification)
        .where(
            PhoneVerification.city_id == city_id,
            PhoneVerification.expires_at <= now,
            PhoneVerification.phone_ciphertext.is_not(None),
        )
        .values(phone_key_id=None, phone_ciphertext=None, code_hash=None)
        .execution_options(synchronize_session=False)
    )
    gone = await session.execute(
        delete(PhoneVerification)
        .where(PhoneVerification.city_id == city_id, PhoneVerification.created_at < now - KEPT)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return int(getattr(gone, "rowcount", 0) or 0)
