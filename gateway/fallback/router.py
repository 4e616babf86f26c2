"""HTTP routes of the fallback: the city's rule per category (read by anyone signed in, set by
the city's administrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from gateway.auth import Anyone, Principal, Role, allow
from gateway.deps import CityDep, NowDep, SessionDep, SettingsDep
from gateway.error_catalog import documented
from gateway.fallback import rules
from gateway.fallback.rules import RuleBody, RuleRead
from wire.contract import Category

router = APIRouter(tags=["fallback"])

RuleKeeper = Annotated[Principal, allow(Role.CITY_ADMIN)]


@router.get("/fallback-rules", operation_id="list_fallback_rules")
async def list_rules(
    session: SessionDep, _user: Anyone, city: CityDep, settings: SettingsDep
) -> list[RuleRead]:
    """Every category's rule: after how long a village whose speakers have not all played gets
    the notice on its consenting residents' phones (at once when it had no speaker online)."""
    found = await rules.rules_of(session, settings, city.id)
    return list(found.values())


@router.put(
    "/fallback-rules/{category}",
    operation_id="set_fallback_rule",
    responses=documented("fallback_channel_unavailable"),
)
async def set_rule(
    category: Category,
    body: RuleBody,
    session: SessionDep,
    user: RuleKeeper,
    city: CityDep,
    now: NowDep,
) -> RuleRead:
    """Set the city's rule for one category; it applies to broadcasts sent from now on."""
    return await rules.set_rule(session, city.id, category, body, actor=user.name, now=now)


@router.delete("/fallback-rules/{category}", status_code=204, operation_id="reset_fallback_rule")
async def reset_rule(
    category: Category, session: SessionDep, _user: RuleKeeper, city: CityDep
) -> None:
    """The category follows the defaults again."""
    await rules.reset_rule(session, city.id, category)
