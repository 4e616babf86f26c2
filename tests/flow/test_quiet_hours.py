"""Quiet hours: broadcasts other than disaster alerts are deferred to their end or refused,
districts keep their own windows, and scheduled occurrences follow the same rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_schedules import (
    _aware,
    _broadcast_count,
    _fire,
    _read,
    _schedule,
    local,
    move_to,
)

__all__ = ["recording"]  # the module-scoped fixture, shared


async def _send(
    stack: Stack, recording: bytes, *, key: str | None = None, **form: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {"category": "administrative", "all_villages": "true", **form}
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data=data,
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers={"Idempotency-Key": key} if key else {},
    )
    return response.status_code, response.json(), dict(response.headers)


async def _districts(stack: Stack) -> list[int]:
    items = (await stack.client.get("/api/v1/districts")).json()["items"]
    return [d["id"] for d in items]


async def test_a_notice_in_quiet_hours_is_deferred_to_their_end(
    stack: Stack, recording: bytes
) -> None:
    move_to(stack, local("2026-01-01T22:15"))
    status, deferred, _ = await _send(stack, recording, key="late-notice", title="밤 공지")
    assert status == 202, deferred
    assert deferred["origin"] == "quiet_hours"
    assert deferred["title"] == "밤 공지"
    assert _aware(deferred["next_fire_at"]) == local("2026-01-02T07:00")
    assert await _broadcast_count(stack) == 0
    assert not stack.bus.published

    status, again, headers = await _send(stack, recording, key="late-notice", title="밤 공지")
    assert (status, again["id"]) == (202, deferred["id"]), "a retry finds the same schedule"
    assert headers.get("idempotent-replayed") == "true"

    move_to(stack, local("2026-01-02T06:59:59"))
    assert (await _fire(stack))["fired"] == 0
    move_to(stack, local("2026-01-02T07:00"))
    assert (await _fire(stack))["fired"] == 1
    [broadcast_id] = (await _read(stack, deferred["id"]))["broadcast_ids"]
    summary = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert summary["title"] == "밤 공지"
    assert await stack.publish_pending() == 1


async def test_with_the_refuse_policy_a_notice_is_refused_naming_the_end(
    stack: Stack, recording: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.settings, "quiet_hours_policy", "refuse")
    move_to(stack, local("2026-01-01T23:40"))
    status, body, _ = await _send(stack, recording)
    assert (status, body["error"]) == (409, "quiet_hours")
    assert "1월 2일 오전\u00a07:00" in body["detail"]
    assert "2026-01-01T22:00:00+00:00" in body["detail"], "the end, in English, as ISO 8601"
    assert await _broadcast_count(stack) == 0
    status, _, _ = await _send(stack, recording, category="disaster")
    assert status == 201


async def test_disaster_alerts_ignore_quiet_hours(stack: Stack, recording: bytes) -> None:
    move_to(stack, local("2026-01-02T03:00"))
    status, body, _ = await _send(stack, recording, category="disaster")
    assert status == 201, body
    assert body["category"] == "disaster"
    assert await stack.publish_pending() == 1


async def test_the_edges_of_quiet_hours(stack: Stack, recording: bytes) -> None:
    move_to(stack, local("2026-01-01T20:59:59"))
    assert (await _send(stack, recording))[0] == 201
    move_to(stack, local("2026-01-01T21:00"))
    assert (await _send(stack, recording))[0] == 202
    move_to(stack, local("2026-01-02T06:59:59"))
    assert (await _send(stack, recording))[0] == 202
    move_to(stack, local("2026-01-02T07:00"))
    assert (await _send(stack, recording))[0] == 201


async def test_districts_keep_their_own_quiet_hours(stack: Stack, recording: bytes) -> None:
    first, second = await _districts(stack)
    response = await stack.client.put(
        f"/api/v1/quiet-hours/districts/{first}", json={"window": "off"}
    )
    assert response.status_code == 200, response.text
    response = await stack.client.put(
        f"/api/v1/quiet-hours/districts/{second}", json={"window": "22:30-05:00"}
    )
    assert response.json()["window"] == "22:30-05:00"
    listed = (await stack.client.get("/api/v1/quiet-hours")).json()
    assert listed["window"] == "21:00-07:00"
    assert listed["policy"] == "defer"
    assert {d["district_id"]: d["window"] for d in listed["districts"]} == {
        first: "off",
        second: "22:30-05:00",
    }

    move_to(stack, local("2026-01-01T22:00"))
    for district in (first, second):
        status, _, _ = await _send(stack, recording, all_villages="false", district_ids=[district])
        assert status == 201
    assert (await _send(stack, recording))[0] == 201, "no targeted district is quiet at 22:00"

    move_to(stack, local("2026-01-01T23:00"))
    status, _, _ = await _send(stack, recording, all_villages="false", district_ids=[first])
    assert status == 201
    status, deferred, _ = await _send(stack, recording)
    assert status == 202, "the whole city includes a district that is quiet now"
    assert _aware(deferred["next_fire_at"]) == local("2026-01-02T05:00")

    cleared = await stack.client.delete(f"/api/v1/quiet-hours/districts/{second}")
    assert cleared.status_code == 204
    status, deferred, _ = await _send(stack, recording, all_villages="false", district_ids=[second])
    assert status == 202
    assert _aware(deferred["next_fire_at"]) == local("2026-01-02T07:00"), "the city's window"


@pytest.mark.parametrize("window", ["9pm-7am", "21:00-21:00", "24:00-07:00", ""])
async def test_a_bad_window_is_refused(stack: Stack, window: str) -> None:
    first, _ = await _districts(stack)
    response = await stack.client.put(
        f"/api/v1/quiet-hours/districts/{first}", json={"window": window}
    )
    assert (response.status_code, response.json()["error"]) == (422, "invalid_quiet_hours")
    response = await stack.client.put(
        "/api/v1/quiet-hours/districts/999999", json={"window": "off"}
    )
    assert (response.status_code, response.json()["error"]) == (404, "district_not_found")


async def test_scheduled_occurrences_in_quiet_hours_are_deferred_once(
    stack: Stack, recording: bytes
) -> None:
    move_to(stack, local("2026-01-01T20:30"))
    status, made = await _schedule(
        stack, recording, send_at="2026-01-01T20:40", repeat_count="5", repeat_every_min="10"
    )
    assert status == 201, made
    for minute in range(0, 12 * 60, 10):
        move_to(stack, local("2026-01-01T20:40") + timedelta(minutes=minute))
        await _fire(stack)
    done = await _read(stack, made["id"])
    assert [(o["state"], o["reason"]) for o in done["occurrences"]] == [
        ("fired", None),  # 20:40
        ("fired", None),  # 20:50
        ("skipped", "quiet_hours"),  # 21:00, held until 07:00
        ("skipped", "quiet_hours"),  # 21:10
        ("fired", None),  # 21:20, sent once at 07:00 for the three held
    ]
    assert done["state"] == "completed"
    broadcasts = [
        (await stack.client.get(f"/api/v1/broadcasts/{b}")).json() for b in done["broadcast_ids"]
    ]
    assert _aware(broadcasts[-1]["created_at"]) == local("2026-01-02T07:00")


async def test_scheduled_occurrences_in_quiet_hours_are_refused_by_that_policy(
    stack: Stack, recording: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.settings, "quiet_hours_policy", "refuse")
    status, body = await _schedule(stack, recording, send_at="2026-01-01T22:00")
    assert (status, body["error"]) == (409, "quiet_hours"), "refused when made, not later"
    assert "1월 1일 오후\u00a010:00" in body["detail"]

    move_to(stack, local("2026-01-01T20:30"))
    status, made = await _schedule(
        stack, recording, send_at="2026-01-01T20:40", repeat_count="3", repeat_every_min="15"
    )
    assert status == 201, made
    for minute in range(0, 60, 5):
        move_to(stack, local("2026-01-01T20:40") + timedelta(minutes=minute))
        await _fire(stack)
    done = await _read(stack, made["id"])
    assert [(o["state"], o["reason"]) for o in done["occurrences"]] == [
        ("fired", None),  # 20:40
        ("fired", None),  # 20:55
        ("skipped", "quiet_hours"),  # 21:10
    ]


async def test_a_schedule_made_for_quiet_hours_is_deferred_when_made(
    stack: Stack, recording: bytes
) -> None:
    status, made = await _schedule(stack, recording, send_at="2026-01-01T23:00")
    assert status == 201, made
    assert _aware(made["next_occurrence_at"]) == local("2026-01-01T23:00")
    assert _aware(made["next_fire_at"]) == local("2026-01-02T07:00")
    status, alert = await _schedule(
        stack, recording, send_at="2026-01-01T23:00", category="disaster"
    )
    assert _aware(alert["next_fire_at"]) == local("2026-01-01T23:00")
