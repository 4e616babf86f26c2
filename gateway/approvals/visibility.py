"""Who may see an approval request: the person who asked, those whose role may approve it (they
send its category to its whole area), and auditors, read-only. To anyone else it does not exist.

A pending request says what is about to be announced where, before anyone has agreed to it;
that is for the people who decide, not for every account in the city.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal, Role
from gateway.errors import NotFound
from gateway.places import service as places
from gateway.places.models import City
from wire.contract import Category

# The roles that may approve (or reject) another person's request, within their rights.
APPROVERS: Final = frozenset({Role.CITY_ADMIN, Role.SAFETY_OFFICER, Role.DISTRICT_OFFICER})
# Read every request of the city, for audit; never decide one.
READERS: Final = frozenset({Role.AUDITOR})


def not_found(approval_id: str) -> NotFound:
    return NotFound(
        "approval_not_found",
        ko="승인 요청을 찾을 수 없습니다.",
        en=f"Approval request {approval_id!r} does not exist.",
    )


def _categories(principal: Principal) -> frozenset[str]:
    if principal.role in READERS:
        return frozenset(c.value for c in Category)
    if principal.role in APPROVERS:
        return frozenset(c.value for c in principal.may_send)
    return frozenset()


def _requested(target: Mapping[str, object]) -> tuple[bool, list[int], list[int]]:
    districts = target.get("district_ids") or []
    villages = target.get("village_ids") or []
    assert isinstance(districts, list)
    assert isinstance(villages, list)
    return bool(target.get("all")), [int(d) for d in districts], [int(v) for v in villages]


def _within(
    principal: Principal, target: Mapping[str, object], district_of: Mapping[int, int]
) -> bool:
    """Whether the whole target, as requested, lies in an area-bound principal's area."""
    all_villages, districts, villages = _requested(target)
    if all_villages or set(districts) - principal.district_ids:
        return False
    return all(
        v in principal.village_ids or district_of.get(v) in principal.district_ids for v in villages
    )


async def _districts_of(
    session: AsyncSession, targets: Sequence[Mapping[str, object]]
) -> dict[int, int]:
    village_ids = {v for t in targets for v in _requested(t)[2]}
    found = await places.village_codes(session, sorted(village_ids))
    return {vid: district for vid, (_code, _name, district) in found.items()}


def _own(principal: Principal) -> ColumnElement[bool]:
    if principal.user_id is None:
        return false()
    return ApprovalRequest.requested_user_id == principal.user_id


async def visible(
    session: AsyncSession, city: City, principal: Principal, state: str | None
) -> ColumnElement[bool]:
    """A filter on approval requests: those ``principal`` may see."""
    categories = _categories(principal)
    if not categories:
        return _own(principal)
    in_category = ApprovalRequest.category.in_(sorted(categories))
    if principal.role in scopes.CITY_WIDE:
        return or_(_own(principal), in_category)
    query = select(ApprovalRequest.id, ApprovalRequest.target).where(
        ApprovalRequest.city_id == city.id, in_category
    )
    if state is not None:
        query = query.where(ApprovalRequest.state == state)
    candidates = list(await session.execute(query))
    district_of = await _districts_of(session, [target for _id, target in candidates])
    ids = [id_ for id_, target in candidates if _within(principal, target, district_of)]
    return or_(_own(principal), ApprovalRequest.id.in_(ids))


async def may_see(session: AsyncSession, approval: ApprovalRequest, principal: Principal) -> bool:
    if principal.user_id is not None and approval.requested_user_id == principal.user_id:
        return True
    if approval.category not in _categories(principal):
        return False
    if principal.role in scopes.CITY_WIDE:
        return True
    return _within(principal, approval.target, await _districts_of(session, [approval.target]))


async def ensure_visible(
    session: AsyncSession, approval: ApprovalRequest, principal: Principal
) -> None:
    """Raise the same 404 as for an unknown id: existence is not revealed."""
    if not await may_see(session, approval, principal):
        raise not_found(approval.id)
