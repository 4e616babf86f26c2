"""Test and exercise broadcasts: kept apart from real ones from the request to the speaker."""

from __future__ import annotations

from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, _create, _everyone_online, recording
from tests.flow.test_schedules import _fire, _read, _schedule, local, move_to

__all__ = ["recording"]  # the module-scoped fixture, shared


async def test_a_test_broadcast_is_announced_as_a_test_and_listed_apart(
    stack: Stack, recording: bytes
) -> None:
    await _everyone_online(stack)
    status, real = await _create(stack, recording, all_villages="true")
    assert status == 201, real
    status, test = await _create(stack, recording, all_villages="true", mode="test")
    assert status == 201, test
    assert (real["mode"], test["mode"]) == ("live", "test")
    # Whatever its category, a test never interrupts a real broadcast.
    assert test["priority"] == 0 < real["priority"]
    # Played aloud, it is framed by a spoken "this is a test" before and after the message.
    assert test["duration_ms"] > real["duration_ms"] + 2000

    await stack.publish_pending()
    by_broadcast = {c.broadcast_id: c for _, c in _commands(stack)}
    sent = by_broadcast[test["id"]]
    assert (sent.mode, sent.audible, sent.priority) == ("test", True, 0)
    assert by_broadcast[real["id"]].mode == "live"

    async def listed(**params: str) -> list[str]:
        response = await stack.client.get("/api/v1/broadcasts", params=params)
        assert response.status_code == 200, response.text
        return [b["id"] for b in response.json()["items"]]

    assert await listed(mode="live") == [real["id"]]
    assert await listed(mode="test") == [test["id"]]
    assert await listed(mode="exercise") == []
    assert set(await listed()) == {real["id"], test["id"]}


async def test_a_city_that_logs_tests_has_speakers_stay_silent(
    stack: Stack, recording: bytes
) -> None:
    stack.settings.test_playback = "log"  # the one settings object every part of the app reads
    await _everyone_online(stack)
    status, real = await _create(stack, recording, all_villages="true")
    assert status == 201, real
    status, exercise = await _create(stack, recording, all_villages="true", mode="exercise")
    assert status == 201, exercise
    assert exercise["duration_ms"] == real["duration_ms"], "logged only: no spoken frame"

    await stack.publish_pending()
    by_broadcast = {c.broadcast_id: c for _, c in _commands(stack)}
    assert (by_broadcast[exercise["id"]].mode, by_broadcast[exercise["id"]].audible) == (
        "exercise",
        False,
    )
    assert by_broadcast[real["id"]].audible, "a real broadcast is always heard"


async def test_an_unknown_mode_is_refused(stack: Stack, recording: bytes) -> None:
    status, body = await _create(stack, recording, all_villages="true", mode="drill")
    assert status == 422
    assert body["error"] == "invalid_request"


async def test_a_scheduled_exercise_fires_as_an_exercise(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    status, schedule = await _schedule(
        stack, recording, send_at="2026-01-01T10:00", mode="exercise"
    )
    assert status == 201, schedule
    assert schedule["mode"] == "exercise"
    move_to(stack, local("2026-01-01T10:00"))
    assert (await _fire(stack))["fired"] == 1
    (broadcast_id,) = (await _read(stack, schedule["id"]))["broadcast_ids"]
    fired = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert (fired["mode"], fired["priority"]) == ("exercise", 0)
    await stack.publish_pending()
    sent = {c.broadcast_id: c for _, c in _commands(stack)}[broadcast_id]
    assert sent.mode == "exercise"
