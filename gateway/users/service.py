"""Accounts: login (throttled per source), refresh tokens used once, API keys, suspension."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, func, or_, select, update
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
    new_api_key,
    with_city_rights,
)
from gateway.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from gateway.places.models import City, District, Village
from gateway.settings import Settings
from gateway.users import throttle
from gateway.users.models import AccountEvent, ApiKey, RefreshToken, User

_hasher = PasswordHasher()
# Checked against when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD = 10
# The audit's name for a failed login with a username no account has: what was typed is the
# caller's own text (or a mistyped password), never recorded.
UNKNOWN_ACCOUNT: Final = "unknown-account"

# Account events that give someone a way in (the account, its password) or rights (a role, a
# wider area, being enabled again). Whoever did one of these may be able to act as the account.
EMPOWERING: Final = frozenset(
    {"created", "password_set", "role_changed", "scope_widened", "reinstated"}
)
# Of those, the ones that give rights: the account's standing dates from the last of them.
GRANTING: Final = frozenset({"created", "role_changed", "scope_widened", "reinstated"})

# Which scope each role needs: districts, villages, either, or none (city-wide).
_SCOPE: dict[Role, str] = {
    Role.CITY_ADMIN: "none",
    Role.SAFETY_OFFICER: "none",
    Role.AUDITOR: "none",
    Role.DISTRICT_OFFICER: "districts",
    Role.VILLAGE_HEAD: "villages",
    Role.POLICE_OFFICER: "either",
}


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


def check_password_rules(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD or password.lower() == username.lower():
        raise InvalidRequest(
            "weak_password",
            ko=f"비밀번호는 {MIN_PASSWORD}자 이상이어야 하며 아이디와 달라야 합니다.",
            en=f"A password needs at least {MIN_PASSWORD} characters and must differ from "
            "the username.",
        )


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
        await _revoke_all(own, user_id, now)
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


async def _revoke_all(session: AsyncSession, user_id: int, now: datetime) -> None:
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


# --- administration ------------------------------------------------------------------------


async def _check_scope(
    session: AsyncSession,
    city: City,
    role: Role,
    district_ids: Sequence[int],
    village_ids: Sequence[int],
) -> None:
    need = _SCOPE[role]
    if need == "none" and (district_ids or village_ids):
        raise InvalidRequest(
            "scope_not_allowed",
            ko="이 역할은 시 전체 권한이라 지역을 지정하지 않습니다.",
            en=f"The role {role.value!r} is city-wide and takes no districts or villages.",
        )
    missing = (
        (need == "districts" and not district_ids)
        or (need == "villages" and not village_ids)
        or (need == "either" and not (district_ids or village_ids))
    )
    if missing:
        raise InvalidRequest(
            "scope_required",
            ko="이 역할에는 담당 읍·면·동 또는 마을을 지정해야 합니다.",
            en=f"The role {role.value!r} needs the districts or villages it covers.",
        )
    if (need == "districts" and village_ids) or (need == "villages" and district_ids):
        raise InvalidRequest(
            "scope_not_allowed",
            ko="이 역할에 맞지 않는 지역 범위입니다.",
            en=f"The role {role.value!r} takes only {need}.",
        )
    for ids, name in ((district_ids, "district"), (village_ids, "village")):
        if not ids:
            continue
        model: type[District] | type[Village] = District if name == "district" else Village
        found = set(
            await session.scalars(
                select(model.id).where(model.city_id == city.id, model.id.in_(sorted(set(ids))))
            )
        )
        unknown = sorted(set(ids) - found)
        if unknown:
            raise InvalidRequest(
                "unknown_district" if name == "district" else "unknown_village",
                ko=f"없는 지역이 포함되어 있습니다: {unknown[:10]}",
                en=f"Unknown {name} ids: {unknown[:10]}",
            )


async def create_user(
    session: AsyncSession,
    city: City,
    *,
    username: str,
    display_name: str,
    role: Role,
    password: str | None,
    district_ids: Sequence[int] = (),
    village_ids: Sequence[int] = (),
    by: Principal | None,
    now: datetime,
) -> User:
    """``by`` is who creates it (None: the demo seed), kept as the account's provenance."""
    await _check_scope(session, city, role, district_ids, village_ids)
    exists = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.city_id == city.id, User.username == username)
    )
    if exists:
        raise Conflict(
            "username_taken",
            ko="이미 있는 아이디입니다.",
            en=f"The username {username!r} is already taken.",
        )
    if password is not None:
        check_password_rules(password, username)
    user = User(
        city_id=city.id,
        username=username,
        display_name=display_name,
        role=role.value,
        district_ids=sorted(set(district_ids)),
        village_ids=sorted(set(village_ids)),
        password_hash=await hash_password(password) if password is not None else None,
        token_version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await session.flush()
    await _record_change(session, user, "created", by, now)
    return user


async def _record_change(
    session: AsyncSession, user: User, kind: str, by: Principal | None, now: datetime
) -> None:
    session.add(
        AccountEvent(
            user_id=user.id,
            kind=kind,
            at=now,
            by_user_id=by.user_id if by is not None else None,
            by_actor=by.actor if by is not None else "seed",
        )
    )
    await session.flush()


@dataclass(frozen=True)
class Standing:
    """What the two-person rule needs to know of an account's history."""

    # When it was created, or last given a role, a wider area or re-enabled.
    rights_since: datetime
    # Users who created it, set its password, gave it rights or re-enabled it, and, in turn,
    # the users who did so to theirs: anyone who may be able to act as it.
    empowered_by: frozenset[int]


async def standing(session: AsyncSession, user_id: int) -> Standing:
    user = await session.get(User, user_id)
    if user is None:
        raise invalid_token()
    rights_since = user.created_at
    # A password someone else set counts too: whoever set it can sign in as the account.
    since = await session.scalar(
        select(func.max(AccountEvent.at)).where(
            AccountEvent.user_id == user.id,
            or_(
                AccountEvent.kind.in_(GRANTING),
                and_(
                    AccountEvent.kind == "password_set",
                    or_(AccountEvent.by_user_id.is_(None), AccountEvent.by_user_id != user.id),
                ),
            ),
        )
    )
    if since is not None and since > rights_since:
        rights_since = since
    seen: set[int] = set()
    frontier = {user.id}
    while frontier:
        found = set(
            await session.scalars(
                select(AccountEvent.by_user_id).where(
                    AccountEvent.user_id.in_(sorted(frontier)),
                    AccountEvent.kind.in_(EMPOWERING),
                    AccountEvent.by_user_id.is_not(None),
                )
            )
        )
        frontier = {u for u in found if u is not None} - seen - {user.id}
        seen |= frontier
    return Standing(rights_since=rights_since, empowered_by=frozenset(seen))


async def account_events(session: AsyncSession, user: User) -> list[AccountEvent]:
    rows = await session.scalars(
        select(AccountEvent)
        .where(AccountEvent.user_id == user.id)
        .order_by(AccountEvent.at, AccountEvent.id)
    )
    return list(rows)


async def get_user(session: AsyncSession, city: City, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None or user.city_id != city.id:
        raise NotFound("user_not_found", ko="사용자를 찾을 수 없습니다.", en="No such user.")
    return user


async def list_users(
    session: AsyncSession, city: City, *, limit: int, offset: int
) -> tuple[list[User], int]:
    query = select(User).where(User.city_id == city.id)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(User.id).limit(limit).offset(offset))
    return list(rows), total


async def update_user(
    session: AsyncSession,
    city: City,
    user: User,
    *,
    display_name: str | None,
    role: Role | None,
    district_ids: Sequence[int] | None,
    village_ids: Sequence[int] | None,
    by: Principal | None,
    now: datetime,
) -> User:
    new_role = role or Role(user.role)
    districts = list(district_ids) if district_ids is not None else list(user.district_ids)
    villages = list(village_ids) if village_ids is not None else list(user.village_ids)
    if role is not None and role != Role(user.role):
        # A new role starts from its own scope unless one is given.
        districts = list(district_ids or ())
        villages = list(village_ids or ())
    await _check_scope(session, city, new_role, districts, villages)
    changed_rights = (
        new_role.value != user.role
        or sorted(set(districts)) != user.district_ids
        or sorted(set(villages)) != user.village_ids
    )
    if changed_rights:
        await _record_change(
            session, user, _rights_change(user, new_role, districts, villages), by, now
        )
    user.role = new_role.value
    user.district_ids = sorted(set(districts))
    user.village_ids = sorted(set(villages))
    if display_name is not None:
        user.display_name = display_name
    if changed_rights:
        user.token_version += 1  # tokens carrying the old rights stop working now
    user.updated_at = now
    await session.flush()
    return user


def _rights_change(
    user: User, role: Role, district_ids: Sequence[int], village_ids: Sequence[int]
) -> str:
    """Which kind of rights change: narrowing an area gives nothing, anything else may."""
    if role.value != user.role:
        return "role_changed"
    if set(district_ids) - set(user.district_ids) or set(village_ids) - set(user.village_ids):
        return "scope_widened"
    # Fewer districts or villages: no right the account did not already have.
    return "scope_narrowed"


async def set_password(
    session: AsyncSession, user: User, password: str, *, by: Principal | None, now: datetime
) -> None:
    check_password_rules(password, user.username)
    user.password_hash = await hash_password(password)
    user.token_version += 1
    user.updated_at = now
    await _revoke_all(session, user.id, now)
    await session.flush()
    await _record_change(session, user, "password_set", by, now)


async def suspend(
    session: AsyncSession, actor: Principal, user: User, reason: str, *, now: datetime
) -> User:
    """Refused at once everywhere: access tokens (version), refresh tokens and API keys.
    What the person left running (schedules, live sessions) is stopped by
    `gateway.users.suspension`, in the same transaction."""
    if actor.user_id == user.id:
        raise Conflict(
            "cannot_suspend_self",
            ko="자기 자신의 계정은 정지할 수 없습니다.",
            en="You cannot suspend your own account.",
        )
    if user.suspended_at is None:
        user.suspended_at = now
        user.suspended_reason = reason
        user.token_version += 1
        user.updated_at = now
        await _revoke_all(session, user.id, now)
        await session.flush()
        await _record_change(session, user, "suspended", actor, now)
    return user


async def reinstate(
    session: AsyncSession, user: User, *, by: Principal | None, now: datetime
) -> User:
    """The person may log in again. Their paused schedules stay paused until someone with
    rights over them resumes them: nothing goes on air again unseen."""
    if user.suspended_at is not None:
        await _record_change(session, user, "reinstated", by, now)
    user.suspended_at = None
    user.suspended_reason = None
    user.updated_at = now
    await session.flush()
    return user


AccountState = Literal["active", "suspended", "removed", "system"]


async def account_state(session: AsyncSession, actor: str) -> AccountState:
    """The state of the account behind an actor name (``Principal.actor``, as records keep it):
    ``system`` for an actor that is not a person's account (the bootstrap token), ``removed``
    when the account no longer exists. Work a person left behind (a schedule, a live session)
    goes on only while this is ``active`` or ``system``."""
    if not _is_person(actor):
        return "system"
    user = await _user_of_actor(session, actor)
    if user is None:
        return "removed"
    return "active" if user.suspended_at is None else "suspended"


def _is_person(actor: str) -> bool:
    _name, sep, user_id = actor.rpartition("#")
    return bool(sep) and user_id.isdigit()


async def _user_of_actor(session: AsyncSession, actor: str) -> User | None:
    name, _sep, user_id = actor.rpartition("#")
    user = await session.get(User, int(user_id))
    return user if user is not None and user.username == name else None


async def current_principal(
    session: AsyncSession, settings: Settings, actor: str
) -> Principal | None:
    """The rights the person behind ``actor`` has now (their role, area and the city's
    categories for that role), for work they left behind that acts in their name when it runs
    (a schedule's occurrence): what they could do when they made it no longer counts. None for
    an actor that is not a person's account (the bootstrap token) or an account that is gone
    (``account_state`` tells the two apart)."""
    if not _is_person(actor):
        return None
    user = await _user_of_actor(session, actor)
    return None if user is None else with_city_rights(principal_of(user), settings)


async def create_api_key(
    session: AsyncSession, user: User, name: str, *, now: datetime
) -> tuple[ApiKey, str]:
    key, prefix = new_api_key()
    row = ApiKey(
        user_id=user.id, name=name, prefix=prefix, key_hash=hash_api_key(key), created_at=now
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_api_keys(session: AsyncSession, user: User) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)))


async def revoke_api_key(
    session: AsyncSession, city: City, key_id: int, *, now: datetime
) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    owner = await session.get(User, row.user_id) if row is not None else None
    if row is None or owner is None or owner.city_id != city.id:
        raise NotFound("api_key_not_found", ko="API 키를 찾을 수 없습니다.", en="No such API key.")
    row.revoked_at = row.revoked_at or now
    await session.flush()
    return row
