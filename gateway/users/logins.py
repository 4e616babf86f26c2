"""Logging in and staying in: passwords checked (throttled per source), refresh tokens used once,
logout, and the principal a token or an API key stands for."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import service as audit
from gateway.audit.budget import AnonymousBudget
from gateway.auth import (
    Principal,
    Role,
    api_key_prefix,
    hash_api_key,
    invalid_token,
    issue_access_token,
)
from gateway.errors import (
    Forbidden,
    TooManyRequests,
    Unauthorized,
)
from gateway.places.models import City
from gateway.settings import Settings
from gateway.users import throttle
from gateway.users.models import ApiKey, RefreshToken, User

_hasher = PasswordHasher()

# Checked against when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

# The audit's name for a failed login with a username no account has: what was typed is the
# caller's own text (or a mistyped password), never recorded.
UNKNOWN_ACCOUNT: Final = "unknown-account"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str


def _bad_credentials() -> Unauthorized:
    return Unauthorized(
        "invalid_credentials",
        ko="아이디 또는 비밀번호가 올바르지 않습니다.",
        en="The username or password is not correct.",
    )


def account_suspended() -> Forbidden:
    return Forbidden(
        "account_suspended",
        ko="정지된 계정입니다. 시청 관리자에게 문의해 주세요.",
        en="This account is suspended; contact the city administrator.",
    )


def principal_of(user: User) -> Principal:
    return Principal(
        name=user.username,
        role=Role(user.role),
        user_id=user.id,
        district_ids=frozenset(int(d) for d in user.district_ids or ()),
        village_ids=frozenset(int(v) for v in user.village_ids or ()),
        via="jwt",
    )


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def login(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key: bytes,
    city: City,
    username: str,
    password: str,
    *,
    now: datetime,
    source: str | None = None,
    budget: AnonymousBudget | None = None,
) -> tuple[User, Tokens]:
    """Tokens for a right password. Every attempt is audited with its `source` address; a
    failure within the source's `budget` only, and under a name the caller did not make up (an
    account's, or ``UNKNOWN_ACCOUNT``). Failures are counted per source
    (``gateway.users.throttle``): a source that must wait is refused before anything is hashed;
    an unknown username costs and counts as a wrong password does, so neither the time taken nor
    the answer tells whether it exists."""

    def admitted() -> bool:
        return budget is None or budget.admit(source, now)

    async def failed(actor: str, role: str | None, why: str) -> None:
        if admitted():
            await _record(sessions, city, actor, role, "login_failed", "denied", now, why, source)

    user = await session.scalar(
        select(User).where(User.city_id == city.id, User.username == username)
    )
    actor = username if user is not None else UNKNOWN_ACCOUNT
    role = user.role if user is not None else None
    counted_as = throttle.source_of(source)
    try:
        await throttle.check(
            session, city_id=city.id, source=counted_as, username=username, now=now
        )
    except TooManyRequests:
        await failed(actor, role, "throttled")
        raise
    password_hash = user.password_hash if user is not None else None
    known = password_hash is not None
    right = await _verify(password_hash or _DUMMY_HASH, password)
    if user is None or password_hash is None or not right:
        # Written in a transaction of its own: the request's is rolled back with the 401.
        async with sessions() as own:
            waits = await throttle.record_failure(
                own, settings, city_id=city.id, source=counted_as, username=username, now=now
            )
            why = "unknown" if not known else "wrong_password"
            if admitted():
                await audit.append(
                    own,
                    at=now,
                    city_id=city.id,
                    actor=actor,
                    role=role,
                    action="login_failed",
                    outcome="denied",
                    source=source,
                    # The failure after which this source must wait before trying again.
                    details={"why": why, "source_waits": True} if waits else {"why": why},
                )
            await own.commit()
        raise _bad_credentials()
    if user.suspended_at is not None:
        await failed(username, user.role, "suspended")
        raise account_suspended()
    await throttle.clear(session, city_id=city.id, source=counted_as, username=username)
    user.last_login_at = now
    if user.password_hash is not None and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    await _signed(session, city, user, "login", now=now, source=source)
    return user, await _issue(session, settings, key, city, user, now=now)


async def _signed(
    session: AsyncSession,
    city: City,
    user: User,
    action: str,
    *,
    now: datetime,
    source: str | None,
) -> None:
    """Audit a person signing in or out, in their own name."""
    await audit.append(
        session,
        at=now,
        city_id=city.id,
        actor=principal_of(user).actor,
        role=user.role,
        action=action,
        outcome="ok",
        source=source,
    )


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    city: City,
    actor: str,
    role: str | None,
    action: str,
    outcome: str,
    now: datetime,
    why: str,
    source: str | None,
) -> None:
    """An audit row in a transaction of its own (the request's is rolled back with its error)."""
    async with sessions() as own:
        await audit.append(
            own,
            at=now,
            city_id=city.id,
            actor=actor,
            role=role,
            action=action,
            outcome=outcome,
            source=source,
            details={"why": why},
        )
        await own.commit()


async def _issue(
    session: AsyncSession, settings: Settings, key: bytes, city: City, user: User, *, now: datetime
) -> Tokens:
    access, ttl = issue_access_token(
        settings, key, user_id=user.id, city=city.code, token_version=user.token_version, now=now
    )
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            id=secrets.token_hex(16),
            user_id=user.id,
            token_hash=hashlib.sha256(refresh.encode()).hexdigest(),
            issued_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        )
    )
    await session.flush()
    return Tokens(access_token=access, expires_in=ttl, refresh_token=refresh)


async def refresh(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key: bytes,
    city: City,
    token: str,
    *,
    now: datetime,
) -> tuple[User, Tokens]:
    """A new pair for a refresh token, which is used up. A refresh token presented once it is
    used (or while another request is using it: of concurrent refreshes exactly one wins) is
    taken as stolen: every session of that person ends at once, its access tokens included."""
    row = await session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == hashlib.sha256(token.encode()).hexdigest()
        )
    )
    if row is None or row.expires_at <= now:
        raise invalid_token()
    user = await session.get(User, row.user_id)
    if user is None or user.city_id != city.id:
        raise invalid_token()
    # Read now: a rollback below expires the loaded rows.
    city_id, reuse = city.id, (user.id, principal_of(user).actor, user.role)
    if row.revoked_at is not None:
        await _reused(sessions, city_id, *reuse, now=now)
    if user.suspended_at is not None:
        raise account_suspended()
    # The use itself is the check: only the request whose update finds the token unused wins
    # (PostgreSQL makes a concurrent one wait for this transaction, then finds it used; SQLite
    # lets one writer at a time).
    spent = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        # Release this request's transaction (on SQLite it holds the write lock) first.
        await session.rollback()
        await _reused(sessions, city_id, *reuse, now=now)
    return user, await _issue(session, settings, key, city, user, now=now)


async def _reused(
    sessions: async_sessionmaker[AsyncSession],
    city_id: int,
    user_id: int,
    actor: str,
    role: str,
    *,
    now: datetime,
) -> NoReturn:
    """A used refresh token came back: revoke every refresh token of its person and raise their
    token version, so their access tokens are refused from the next request on. In a transaction
    of its own: the request's is rolled back with the 401."""
    async with sessions() as own:
        await revoke_all(own, user_id, now)
        await own.execute(
            update(User)
            .where(User.id == user_id)
            .values(token_version=User.token_version + 1, updated_at=now)
        )
        await audit.append(
            own,
            at=now,
            city_id=city_id,
            actor=actor,
            role=role,
            action="refresh_token_reused",
            outcome="denied",
            details={"why": "a used refresh token was presented: every session revoked"},
        )
        await own.commit()
    raise invalid_token()


async def logout(
    session: AsyncSession, city: City, token: str, *, now: datetime, source: str | None = None
) -> None:
    """Revoke a refresh token. Only a token that was live is audited, in its owner's name: a
    logout with anything else changes nothing and leaves no row."""
    revoked = (
        await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == hashlib.sha256(token.encode()).hexdigest(),
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .returning(RefreshToken.user_id)
        )
    ).first()
    if revoked is None:
        return
    user = await session.get(User, revoked[0])
    if user is None or user.city_id != city.id:
        return
    await _signed(session, city, user, "logout", now=now, source=source)


async def revoke_all(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def principal_for_claims(
    session: AsyncSession, claims: dict[str, Any], *, now: datetime
) -> Principal:
    try:
        user_id = int(claims["sub"])
    except (KeyError, ValueError):
        raise invalid_token() from None
    user = await session.get(User, user_id)
    if user is None:
        raise invalid_token()
    # A token we signed, of a person now suspended: say so, not "log in again" (they cannot).
    if user.suspended_at is not None:
        raise account_suspended()
    if user.token_version != claims.get("ver"):
        raise invalid_token()
    return principal_of(user)


async def principal_for_api_key(session: AsyncSession, key: str, *, now: datetime) -> Principal:
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == api_key_prefix(key)))
    if row is None or row.revoked_at is not None:
        raise invalid_token()
    if not secrets.compare_digest(row.key_hash, hash_api_key(key)):
        raise invalid_token()
    user = await session.get(User, row.user_id)
    if user is None:
        raise invalid_token()
    if user.suspended_at is not None:
        raise account_suspended()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now  # at most once a minute: a busy integration is not a write load
    principal = principal_of(user)
    return Principal(**{**principal.__dict__, "via": "api_key"})
