"""Suspending a person stops their schedules: paused at once, skipped if one falls due anyway,
and resumed only by someone with rights once the account is active again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from gateway.auth import Role
from gateway.users.models import User
from tests.flow.conftest import Stack
from tests.flow.test_roles import _layout, _person
from tests.flow.test_schedules import _aware, _broadcast_count, _fire, _read, local, move_to
from tests.support.people import Person, access_token

ALERT = "하천 수위가 높아지고 있습니다. 하천변에서 즉시 대피해 주십시오."


async def _alert_schedule(stack: Stack, person: Person, **form: Any) -> dict[str, Any]:
    """A disaster alert to one district, spoken from text, scheduled by ``person``."""
    districts, _ = await _layout(stack)
    response = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "disaster",
            "text": ALERT,
            "district_ids": [districts[0]["id"]],
            **form,
        },
        headers=person.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _suspend(stack: Stack, person: Person) -> None:
    response = await stack.client.post(
        f"/api/v1/users/{person.user_id}/suspend", json={"reason": "계정 도용 의심"}
    )
    assert response.status_code == 200, response.text


async def test_suspending_a_person_pauses_their_scheduled_disaster_alerts(stack: Stack) -> None:
    officer = await _person(stack, Role.SAFETY_OFFICER)
    made = await _alert_schedule(
        stack, officer, send_at="2026-01-01T10:00", repeat_count="3", repeat_every_min="10"
    )
    await _suspend(stack, officer)

    paused = await _read(stack, made["id"])
    assert (paused["state"], paused["paused_reason"]) == ("paused", "owner_suspended")
    listed = await stack.client.get("/api/v1/schedules", params={"state": "paused"})
    assert [s["id"] for s in listed.json()["items"]] == [made["id"]]

    for moment in ("2026-01-01T10:00", "2026-01-01T10:05"):
        move_to(stack, local(moment))
        assert sum((await _fire(stack)).values()) == 0, "a paused schedule is never claimed"
    assert await _broadcast_count(stack) == 0

    # Reinstating the account resumes nothing by itself.
    reinstated = await stack.client.post(f"/api/v1/users/{officer.user_id}/reinstate")
    assert reinstated.status_code == 200
    assert (await _read(stack, made["id"]))["state"] == "paused"
    officer.token = await access_token(stack.client, officer.username)

    resumed = await stack.client.post(
        f"/api/v1/schedules/{made['id']}/resume", headers=officer.headers
    )
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert (body["state"], body["paused_reason"]) == ("active", None)
    # The 10:00 alert fell due while paused: skipped, never sent late.
    assert [(o["state"], o["reason"]) for o in body["occurrences"]] == [("skipped", "paused")]
    assert _aware(body["next_fire_at"]) == local("2026-01-01T10:10")
    again = await stack.client.post(f"/api/v1/schedules/{made['id']}/resume")
    assert (again.status_code, again.json()["error"]) == (409, "schedule_not_paused")

    move_to(stack, local("2026-01-01T10:10"))
    assert (await _fire(stack))["fired"] == 1
    assert await _broadcast_count(stack) == 1


async def test_a_suspended_persons_schedule_resumes_only_with_their_account(
    stack: Stack,
) -> None:
    officer = await _person(stack, Role.SAFETY_OFFICER)
    made = await _alert_schedule(stack, officer, send_at="2026-01-01T10:00")
    await _suspend(stack, officer)
    # The city administrator has rights over it, but it would send in a suspended name.
    refused = await stack.client.post(f"/api/v1/schedules/{made['id']}/resume")
    assert (refused.status_code, refused.json()["error"]) == (409, "owner_suspended")
    edit = await stack.client.patch(f"/api/v1/schedules/{made['id']}", json={"text": "바뀜"})
    assert (edit.status_code, edit.json()["error"]) == (409, "schedule_paused")
    cancelled = await stack.client.post(f"/api/v1/schedules/{made['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"


async def test_an_occurrence_is_skipped_when_its_creator_is_suspended_as_it_falls_due(
    stack: Stack,
) -> None:
    officer = await _person(stack, Role.SAFETY_OFFICER)
    made = await _alert_schedule(
        stack, officer, send_at="2026-01-01T10:00", repeat_count="2", repeat_every_min="10"
    )
    # Suspended without its schedules being paused: an account suspended before pausing
    # existed, or a firing that raced the suspension.
    async with stack.app.state.sessions() as session:
        await session.execute(
            update(User)
            .where(User.id == officer.user_id)
            .values(suspended_at=stack.clock.now(), suspended_reason="이전 정지")
        )
        await session.commit()
    assert (await _read(stack, made["id"]))["state"] == "active"

    move_to(stack, local("2026-01-01T10:00"))
    assert await _fire(stack) == {"skipped": 1}
    assert await _broadcast_count(stack) == 0
    done = await _read(stack, made["id"])
    assert [(o["state"], o["reason"]) for o in done["occurrences"]] == [
        ("skipped", "owner_suspended")
    ]
    assert (done["state"], done["paused_reason"]) == ("paused", "owner_suspended")
    move_to(stack, local("2026-01-01T10:10"))
    assert sum((await _fire(stack)).values()) == 0
    assert await _broadcast_count(stack) == 0
