"""A city decides what each role may send (GATEWAY_ROLE_CATEGORIES), and every path obeys it."""

from __future__ import annotations

import pytest

from gateway.auth import Role, role_categories
from gateway.settings import Settings
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout
from tests.sending.test_findings import _send
from tests.support.people import make_person
from wire.contract import Category

__all__ = ["recording", "stack"]


async def test_a_city_that_keeps_disaster_alerts_from_village_heads(stack: Stack) -> None:
    _, villages = await _layout(stack)
    village = villages[0]
    head = await make_person(stack.client, Role.VILLAGE_HEAD, village_ids=[village["id"]])
    police = await make_person(stack.client, Role.POLICE_OFFICER, village_ids=[village["id"]])
    stack.settings.role_categories = {
        "village_head": [Category.VILLAGE_NOTICE, Category.ADMINISTRATIVE],
        "police_officer": [Category.CRIME_PREVENTION, Category.ADMINISTRATIVE],
    }

    alert = await _send(stack, head, "disaster", village_ids=[village["id"]])
    assert (alert.status_code, alert.json()["error"]) == (403, "category_not_allowed")
    ticket = await stack.client.post(
        "/api/v1/live/tickets",
        json={"category": "disaster", "village_ids": [village["id"]]},
        headers=head.headers,
    )
    assert (ticket.status_code, ticket.json()["error"]) == (403, "category_not_allowed")
    schedule = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "disaster",
            "text": "산불 대피 훈련",
            "village_ids": [village["id"]],
            "send_at": (stack.clock.now().replace(microsecond=0)).isoformat(),
        },
        headers=head.headers,
    )
    assert (schedule.status_code, schedule.json()["error"]) == (403, "category_not_allowed")
    notice = await _send(stack, police, "administrative", village_ids=[village["id"]])
    assert notice.status_code in (201, 202), notice.text
    assert await stack.publish_pending() >= 0


def test_a_setting_that_would_break_a_rule_stops_the_start() -> None:
    with pytest.raises(ValueError, match="police never send disaster"):
        role_categories(
            Settings(environment="test", role_categories={"police_officer": ["disaster"]})
        )
    with pytest.raises(ValueError, match="auditor sends nothing"):
        role_categories(
            Settings(environment="test", role_categories={"auditor": ["village_notice"]})
        )
    with pytest.raises(ValueError, match="unknown role"):
        role_categories(Settings(environment="test", role_categories={"mayor": ["disaster"]}))
