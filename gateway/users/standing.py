"""An account's standing: since when it holds its rights, what has happened to it, whether it is
active, and the principal an actor acts as now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import (
    Principal,
    invalid_token,
    with_city_rights,
)
from gateway.settings import Settings
from gateway.users.logins import principal_of
from gateway.users.models import AccountEvent, User

# Account events that give someone a way in (the account, its password) or rights (a role, a
# wider area, being enabled again). Whoever did one of these may be able to act as the account.
EMPOWERING: Final = frozenset(
    {"created", "password_set", "role_changed", "scope_widened", "reinstated"}
)

# Of those, the ones that give rights: the account's standing dates from the last of them.
GRANTING: Final = frozenset({"created", "role_changed", "scope_widened", "reinstated"})


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
