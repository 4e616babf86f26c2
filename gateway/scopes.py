"""Object-level rights: which categories a role may send, and which villages it may reach.

A role says what kind of person calls (``gateway.auth.Role``); the scope on their account says
where. Every broadcast action (send, read, cancel, resend) is checked here against the
broadcast's category and the villages it reaches, so no route can forget a rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import DEFAULT_ROLE_CATEGORIES, Principal, Role
from gateway.errors import Forbidden
from gateway.places import service as places
from wire.contract import Category

# The defaults; a city changes them with GATEWAY_ROLE_CATEGORIES (``auth.role_categories``),
# and each caller carries their own (``Principal.may_send``).
ROLE_CATEGORIES: Final[Mapping[Role, frozenset[Category]]] = DEFAULT_ROLE_CATEGORIES
CITY_WIDE: Final = frozenset({Role.CITY_ADMIN, Role.SAFETY_OFFICER, Role.AUDITOR})


def _category_refused(principal: Principal, category: Category) -> Forbidden:
    return Forbidden(
        "category_not_allowed",
        ko="이 종류의 방송을 보낼 권한이 없습니다.",
        en=f"The role {principal.role.value!r} may not send {category.value!r} broadcasts.",
    )


def _area_refused() -> Forbidden:
    return Forbidden(
        "outside_scope",
        ko="담당 지역 밖의 마을이 포함되어 있습니다.",
        en="The target includes villages outside your area.",
    )


def check_category(principal: Principal, category: Category) -> None:
    if category not in principal.may_send:
        raise _category_refused(principal, category)


async def covers(session: AsyncSession, principal: Principal, village_ids: Collection[int]) -> bool:
    """Whether every one of ``village_ids`` lies in the principal's area."""
    if principal.role in CITY_WIDE:
        return True
    wanted = set(village_ids)
    outside = wanted - principal.village_ids
    if not outside:
        return True
    if not principal.district_ids:
        return False
    districts = await places.village_codes(session, sorted(outside))
    return all(vid in districts and districts[vid][2] in principal.district_ids for vid in outside)


async def touches(
    session: AsyncSession, principal: Principal, village_ids: Collection[int]
) -> bool:
    """Whether any of ``village_ids`` lies in the principal's area (to see a broadcast)."""
    if principal.role in CITY_WIDE:
        return True
    wanted = set(village_ids)
    if wanted & principal.village_ids:
        return True
    if not principal.district_ids or not wanted:
        return False
    districts = await places.village_codes(session, sorted(wanted))
    return any(d[2] in principal.district_ids for d in districts.values())


async def authorize_send(
    session: AsyncSession,
    principal: Principal,
    category: Category,
    *,
    all_villages: bool,
    district_ids: Collection[int],
    village_ids: Collection[int],
) -> None:
    """May this person send a broadcast of ``category`` to this target (as requested)?"""
    check_category(principal, category)
    if principal.role in CITY_WIDE:
        return
    if all_villages:
        raise _area_refused()
    if set(district_ids) - principal.district_ids:
        raise _area_refused()
    if not await covers(session, principal, village_ids):
        raise _area_refused()


async def authorize_act(
    session: AsyncSession, principal: Principal, category: Category, village_ids: Collection[int]
) -> None:
    """May this person cancel or resend a broadcast of ``category`` reaching these villages?"""
    check_category(principal, category)
    if not await covers(session, principal, village_ids):
        raise _area_refused()


async def authorize_read(
    session: AsyncSession, principal: Principal, village_ids: Collection[int]
) -> None:
    if not await touches(session, principal, village_ids):
        raise Forbidden(
            "outside_scope",
            ko="담당 지역의 방송이 아닙니다.",
            en="This broadcast does not reach your area.",
        )
