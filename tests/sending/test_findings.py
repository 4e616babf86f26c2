"""The attacks of "one door for every send", each refused now: a split disaster alert, live
talk in quiet hours, resends past the limit, and idempotency keys shared between people."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.auth import Role
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout
from tests.flow.test_schedules import local, move_to
from tests.support.people import Person, make_person

__all__ = ["recording", "stack"]  # the fixtures, shared


async def _send(
    stack: Stack, person: Person, category: str, key: str | None = None, **form: Any
) -> httpx.Response:
    headers = {**person.headers, **({"Idempotency-Key": key} if key else {})}
    return await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": category, "text": "마을 방송을 알려 드립니다.", **form},
        headers=headers,
    )


async def _expire(stack: Stack) -> None:
    stack.clock.advance(40)
    await stack.app.state.sweeper.sweep_once()


async def _resend(stack: Stack, person: Person, broadcast_id: str) -> httpx.Response:
    return await stack.client.post(
        f"/api/v1/broadcasts/{broadcast_id}/resend",
        json={"expires_in_s": 30},
        headers=person.headers,
    )


async def test_a_disaster_alert_split_per_district_still_needs_a_second_person(
    stack: Stack,
) -> None:
    districts, _ = await _layout(stack)
    safety = await make_person(stack.client, Role.SAFETY_OFFICER)
    first = await _send(stack, safety, "disaster", district_ids=[districts[0]["id"]])
    assert first.status_code == 201, first.text
    second = await _send(stack, safety, "disaster", district_ids=[districts[1]["id"]])
    assert second.status_code == 202, second.text
    assert second.json()["state"] == "pending", "the second district waits for a second person"
    # Once the window has passed, one district alone goes out again.
    stack.clock.advance(stack.settings.two_person_window_s + 1)
    later = await _send(stack, safety, "disaster", district_ids=[districts[0]["id"]])
    assert later.status_code == 201, later.text


async def test_a_live_talk_in_quiet_hours_is_refused(stack: Stack) -> None:
    districts, _ = await _layout(stack)
    move_to(stack, local("2026-01-02T01:33"))
    officer = await make_person(
        stack.client, Role.DISTRICT_OFFICER, district_ids=[districts[0]["id"]]
    )
    body = {"category": "village_notice", "district_ids": [districts[0]["id"]]}
    talk = await stack.client.post("/api/v1/live/tickets", json=body, headers=officer.headers)
    assert (talk.status_code, talk.json()["error"]) == (409, "quiet_hours")
    alert = await stack.client.post(
        "/api/v1/live/tickets", json={**body, "category": "disaster"}, headers=officer.headers
    )
    assert alert.status_code == 201, "a disaster alert is never held"


async def test_a_resend_counts_against_the_limit(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    districts, _ = await _layout(stack)
    police = await make_person(stack.client, Role.POLICE_OFFICER, district_ids=[districts[0]["id"]])
    monkeypatch.setattr(stack.settings, "rate_limit_user_per_hour", 1)
    original = await _send(
        stack, police, "crime_prevention", district_ids=[districts[0]["id"]], expires_in_s=30
    )
    assert original.status_code == 201, original.text
    await _expire(stack)
    again = await _send(stack, police, "crime_prevention", district_ids=[districts[0]["id"]])
    assert (again.status_code, again.json()["error"]) == (429, "rate_limited_user")
    resent = await _resend(stack, police, original.json()["id"])
    assert (resent.status_code, resent.json()["error"]) == (429, "rate_limited_user")


async def test_a_resend_of_a_resend_counts_too(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    districts, _ = await _layout(stack)
    police = await make_person(stack.client, Role.POLICE_OFFICER, district_ids=[districts[0]["id"]])
    monkeypatch.setattr(stack.settings, "rate_limit_user_per_hour", 2)
    original = await _send(
        stack, police, "crime_prevention", district_ids=[districts[0]["id"]], expires_in_s=30
    )
    await _expire(stack)
    resent = await _resend(stack, police, original.json()["id"])
    assert resent.status_code == 201, resent.text
    await _expire(stack)
    twice = await _resend(stack, police, resent.json()["id"])
    assert (twice.status_code, twice.json()["error"]) == (429, "rate_limited_user")


async def test_the_same_key_from_two_people_is_two_requests(stack: Stack) -> None:
    districts, _ = await _layout(stack)
    area = {"district_ids": [districts[0]["id"]]}
    one = await make_person(stack.client, Role.DISTRICT_OFFICER, **area)
    other = await make_person(stack.client, Role.DISTRICT_OFFICER, **area)
    first = await _send(stack, one, "administrative", key="notice-1", **area)
    assert first.status_code == 201, first.text
    same = await _send(stack, other, "administrative", key="notice-1", **area)
    assert same.status_code == 201, same.text
    assert same.json()["id"] != first.json()["id"], "not the other person's broadcast"
    different = await _send(
        stack, other, "administrative", key="notice-2", title="다른 방송", **area
    )
    assert different.status_code == 201
    mine_again = await _send(stack, one, "administrative", key="notice-2", **area)
    assert mine_again.status_code == 201, "the other person's key is not mine"
    replay = await _send(stack, one, "administrative", key="notice-1", **area)
    assert (replay.status_code, replay.json()["id"]) == (200, first.json()["id"])


async def test_a_key_is_looked_up_after_the_rights(stack: Stack) -> None:
    districts, _ = await _layout(stack)
    area = {"district_ids": [districts[0]["id"]]}
    officer = await make_person(stack.client, Role.DISTRICT_OFFICER, **area)
    police = await make_person(stack.client, Role.POLICE_OFFICER, **area)
    sent = await _send(stack, officer, "disaster", key="shared", **area)
    assert sent.status_code == 201, sent.text
    asked = await _send(stack, police, "disaster", key="shared", **area)
    assert (asked.status_code, asked.json()["error"]) == (403, "category_not_allowed")


async def test_alerts_sent_at_the_same_moment_by_two_paths_still_need_a_second_person(
    stack: Stack,
) -> None:
    """Two resends at once, each to one district, by one safety officer: one goes, the other
    waits for nobody and is refused, whichever commits first (and a live talk with a resend,
    likewise: every path serializes the person's sends before it counts them)."""
    districts, _ = await _layout(stack)
    originals = []
    for district in districts[:2]:
        sent = await stack.client.post(
            "/api/v1/broadcasts",
            data={
                "category": "disaster",
                "text": "산불이 났습니다. 대피해 주십시오.",
                "district_ids": [district["id"]],
                "expires_in_s": 30,
            },
        )
        assert sent.status_code == 201, sent.text
        originals.append(sent.json()["id"])
    await _expire(stack)
    safety = await make_person(stack.client, Role.SAFETY_OFFICER)
    answers = await asyncio.gather(*(_resend(stack, safety, b) for b in originals))
    codes = sorted((a.status_code, a.json().get("error", "")) for a in answers)
    assert codes == [(201, ""), (409, "approval_required")], [a.text for a in answers]
