"""Who may cancel: the sender, or someone whose rights cover the category and the whole target
and whose area is at least as wide as the sender's (``rules.CANCEL``), on every cancel path."""

from __future__ import annotations

from typing import Any

from gateway.auth import Role
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout, _send
from tests.support.people import Person, make_person

__all__ = ["recording", "stack"]  # the fixtures, shared


async def _cancel(stack: Stack, person: Person, broadcast: Any) -> tuple[int, str | None]:
    response = await stack.client.post(
        f"/api/v1/broadcasts/{broadcast.json()['id']}/cancel", headers=person.headers
    )
    return response.status_code, response.json().get("error")


async def test_a_village_head_cannot_cancel_a_district_or_city_broadcast_to_their_village(
    stack: Stack, recording: bytes
) -> None:
    districts, villages = await _layout(stack)
    mine = districts[0]["id"]
    village = next(v["id"] for v in villages if v["district_id"] == mine)
    head = await make_person(stack.client, Role.VILLAGE_HEAD, village_ids=[village])
    officer = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[mine])
    colleague = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[mine])
    admin = await make_person(stack.client, Role.CITY_ADMIN)
    safety = await make_person(stack.client, Role.SAFETY_OFFICER)

    alert = await _send(stack, officer, recording, "disaster", village_ids=[village])
    assert alert.status_code == 201, alert.text
    assert await _cancel(stack, head, alert) == (403, "cancel_outranked")
    notice = await _send(stack, admin, recording, "administrative", village_ids=[village])
    assert await _cancel(stack, head, notice) == (403, "cancel_outranked")
    assert await _cancel(stack, officer, notice) == (403, "cancel_outranked")
    city_alert = await _send(stack, safety, recording, "disaster", village_ids=[village])
    assert await _cancel(stack, officer, city_alert) == (403, "cancel_outranked")
    refused = await stack.client.get(f"/api/v1/broadcasts/{alert.json()['id']}")
    assert refused.json()["state"] != "cancelled"

    # An equal or wider area with the category's rights may; so may the sender.
    assert await _cancel(stack, colleague, alert) == (200, None)
    own = await _send(stack, head, recording, "village_notice", village_ids=[village])
    assert await _cancel(stack, officer, own) == (200, None), "the district outranks the head"
    assert await _cancel(stack, safety, city_alert) == (200, None)
    assert await _cancel(stack, admin, notice) == (200, None)


async def test_a_village_head_cannot_cancel_a_district_schedule_for_their_village(
    stack: Stack, recording: bytes
) -> None:
    districts, villages = await _layout(stack)
    mine = districts[0]["id"]
    village = next(v["id"] for v in villages if v["district_id"] == mine)
    head = await make_person(stack.client, Role.VILLAGE_HEAD, village_ids=[village])
    officer = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[mine])
    made = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "administrative",
            "village_ids": str(village),
            "send_at": "2026-01-02T10:00",
        },
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=officer.headers,
    )
    assert made.status_code == 201, made.text
    url = f"/api/v1/schedules/{made.json()['id']}"
    cancel = await stack.client.post(f"{url}/cancel", headers=head.headers)
    assert (cancel.status_code, cancel.json()["error"]) == (403, "cancel_outranked")
    edit = await stack.client.patch(url, json={"title": "바뀜"}, headers=head.headers)
    assert (edit.status_code, edit.json()["error"]) == (403, "cancel_outranked")
    assert (await stack.client.get(url)).json()["state"] == "active"
    assert (await stack.client.post(f"{url}/cancel", headers=officer.headers)).status_code == 200
