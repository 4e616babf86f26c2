"""Accounts and their administration: creating, changing and listing them, passwords, suspension
and API keys.

Logging in, tokens and the principal a credential stands for live in ``gateway.users.logins``;
an account's standing and state in ``gateway.users.standing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import (
    Principal,
    Role,
    hash_api_key,
    new_api_key,
)
from gateway.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
)
from gateway.places.models import City, District, Village
from gateway.users.logins import hash_password, revoke_all
from gateway.users.models import AccountEvent, ApiKey, User

MIN_PASSWORD = 10

# Which scope each role needs: districts, villages, either, or none (city-wide).
_SCOPE: dict[Role, str] = {
    Role.CITY_ADMIN: "none",
    Role.SAFETY_OFFICER: "none",
    Role.AUDITOR: "none",
    Role.DISTRICT_OFFICER: "districts",
    Role.VILLAGE_HEAD: "villages",
    Role.POLICE_OFFICER: "either",
}


def check_password_rules(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD or password.lower() == username.lower():
        raise InvalidRequest(
            "weak_password",
            ko=f"비밀번호는 {MIN_PASSWORD}자 이상이어야 하며 아이디와 달라야 합니다.",
            en=f"A password needs at least {MIN_PASSWORD} characters and must differ from "
            "the username.",
        )


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
    await revoke_all(session, user.id, now)
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
        await revoke_all(session, user.id, now)
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
