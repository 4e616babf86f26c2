"""The two-person rule: a disaster alert to several districts or the whole city waits for a
second authorised person; nothing is sent before, and the requester cannot approve it."""

from __future__ import annotations

from typing import Any

from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, recording
from tests.flow.test_roles import _layout, _people, _send
from tests.support.people import Person

__all__ = ["recording"]


async def _pending(stack: Stack, person: Person, recording: bytes, **target: Any) -> dict[str, Any]:
    response = await _send(stack, person, recording, "disaster", **target)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "pending"
    return body


async def test_city_wide_disaster_waits_for_a_second_person(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    safety, admin = people[Role.SAFETY_OFFICER], people[Role.CITY_ADMIN]
    approval = await _pending(
        stack, safety, recording, all_villages="true", title="산불 대피", expires_in_s=600
    )
    assert await stack.publish_pending() == 0, "nothing is sent before approval"
    assert (await stack.client.get("/api/v1/broadcasts")).json()["total"] == 0
    listed = await stack.client.get("/api/v1/approvals", headers=admin.headers)
    assert [a["id"] for a in listed.json()["items"]] == [approval["id"]]

    own = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=safety.headers
    )
    assert own.status_code == 409
    assert own.json()["error"] == "own_approval"
    police = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=people[Role.POLICE_OFFICER].headers
    )
    assert police.status_code == 403
    district = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve",
        headers=people[Role.DISTRICT_OFFICER].headers,
    )
    assert district.status_code == 404, "not theirs to see: as if it did not exist"
    assert district.json()["error"] == "approval_not_found"

    approved = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve",
        json={"note": "확인함"},
        headers=admin.headers,
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["approval"]["state"] == "approved"
    assert body["approval"]["decided_by"] == f"{admin.username}#{admin.user_id}"
    broadcast = body["broadcast"]
    assert broadcast["target"]["approved_by"] == body["approval"]["decided_by"]
    assert broadcast["title"] == "산불 대피"
    assert await stack.publish_pending() == 1
    [(_, command)] = _commands(stack)
    assert command.broadcast_id == broadcast["id"]

    again = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=admin.headers
    )
    assert again.status_code == 409
    assert again.json()["error"] == "approval_not_pending"


async def test_one_district_needs_no_second_person(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    districts, _ = await _layout(stack)
    officer = people[Role.DISTRICT_OFFICER]
    response = await _send(stack, officer, recording, "disaster", district_ids=[districts[0]["id"]])
    assert response.status_code == 201, response.text
    two = await _send(
        stack,
        people[Role.CITY_ADMIN],
        recording,
        "disaster",
        district_ids=[districts[0]["id"], districts[1]["id"]],
    )
    assert two.status_code == 202


async def test_reject_withdraw_and_lapse_send_nothing(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    safety, admin = people[Role.SAFETY_OFFICER], people[Role.CITY_ADMIN]

    first = await _pending(stack, safety, recording, all_villages="true")
    rejected = await stack.client.post(
        f"/api/v1/approvals/{first['id']}/reject",
        json={"note": "훈련 상황 아님"},
        headers=admin.headers,
    )
    assert rejected.json()["state"] == "rejected"

    second = await _pending(stack, safety, recording, all_villages="true")
    withdrawn = await stack.client.post(
        f"/api/v1/approvals/{second['id']}/reject", headers=safety.headers
    )
    assert withdrawn.json()["state"] == "withdrawn"

    third = await _pending(stack, safety, recording, all_villages="true")
    stack.clock.advance(31 * 60)  # past the approval window (and the people's tokens)
    late = await stack.client.post(f"/api/v1/approvals/{third['id']}/approve")
    assert late.status_code == 409
    lapsed = await stack.client.get(f"/api/v1/approvals/{third['id']}")
    assert lapsed.json()["state"] == "expired"

    assert await stack.publish_pending() == 0
    assert not stack.bus.published


async def test_cancel_needs_no_approval(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    admin, safety = people[Role.CITY_ADMIN], people[Role.SAFETY_OFFICER]
    approval = await _pending(stack, safety, recording, all_villages="true")
    approved = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=admin.headers
    )
    broadcast_id = approved.json()["broadcast"]["id"]
    cancelled = await stack.client.post(
        f"/api/v1/broadcasts/{broadcast_id}/cancel", headers=safety.headers
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
