"""Scheduled broadcasts: made, edited and cancelled; fired at their time, exactly once, by
whichever scheduler claims them, across restarts; refused with clear errors when wrong.

Over 600 lines on purpose: a schedule's whole life, one test per step, sharing one set-up.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import create_app
from gateway.auth import Role
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.db import create_engine, create_sessions
from gateway.schedules.worker import ScheduleWorker
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, _everyone_online, recording
from tests.flow.test_roles import _layout, _people, _person
from tests.support.people import Person, access_token

__all__ = ["recording"]  # the module-scoped fixture, shared

SEOUL = ZoneInfo("Asia/Seoul")


def local(text: str) -> datetime:
    """A wall-clock time in Seoul, as the aware moment it is."""
    return datetime.fromisoformat(text).replace(tzinfo=SEOUL)


def move_to(stack: Stack, moment: datetime) -> None:
    stack.clock.advance((moment - stack.clock.now()).total_seconds())


async def _schedule(
    stack: Stack, recording: bytes | None = None, *, key: str | None = None, **form: Any
) -> tuple[int, dict[str, Any]]:
    data: dict[str, Any] = {"category": "administrative", "all_villages": "true", **form}
    files = {"file": ("notice.m4a", recording, "audio/mp4")} if recording is not None else None
    headers = {"Idempotency-Key": key} if key else {}
    response = await stack.client.post("/api/v1/schedules", data=data, files=files, headers=headers)
    return response.status_code, response.json()


async def _read(stack: Stack, schedule_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _fire(stack: Stack) -> Counter[str]:
    outcomes: Counter[str] = await stack.app.state.scheduler.fire_due()
    return outcomes


async def _broadcast_count(stack: Stack) -> int:
    response = await stack.client.get("/api/v1/broadcasts", params={"limit": 1})
    total: int = response.json()["total"]
    return total


def _aware(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_schedule_is_made_edited_and_cancelled_before_it_fires(stack: Stack) -> None:
    status, made = await _schedule(
        stack, send_at="2026-01-01T10:00", text="오늘 오전 열 시에 마을 회관에서 모입니다."
    )
    assert status == 201, made
    assert made["state"] == "active"
    assert made["source"] == "text"
    assert made["duration_ms"] > 1000, "typed text is spoken when scheduled"
    assert _aware(made["next_fire_at"]) == local("2026-01-01T10:00")
    assert made["recurrence"]["kind"] == "once"
    assert made["broadcast_ids"] == []

    response = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}",
        json={"send_at": "2026-01-01T11:30:00+09:00", "text": "오전 열한 시 반으로 바뀌었습니다."},
    )
    assert response.status_code == 200, response.text
    edited = response.json()
    assert _aware(edited["next_fire_at"]) == local("2026-01-01T11:30")
    assert edited["text"] == "오전 열한 시 반으로 바뀌었습니다."
    assert edited["duration_ms"] != made["duration_ms"], "new text, spoken again"

    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    response = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}",
        json={"all_villages": False, "district_ids": [districts[0]["id"]]},
    )
    assert response.json()["target"] == {
        "all": False,
        "district_ids": [districts[0]["id"]],
        "village_ids": [],
        "area": None,
    }
    # What cannot change is refused, never silently ignored.
    category = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}", json={"category": "disaster"}
    )
    assert (category.status_code, category.json()["error"]) == (422, "invalid_request")

    cancelled = await stack.client.post(f"/api/v1/schedules/{made['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["next_fire_at"] is None
    again = await stack.client.post(f"/api/v1/schedules/{made['id']}/cancel")
    assert again.status_code == 200, "cancelling twice is harmless"
    late = await stack.client.patch(f"/api/v1/schedules/{made['id']}", json={"text": "늦은 수정"})
    assert (late.status_code, late.json()["error"]) == (409, "schedule_cancelled")

    move_to(stack, local("2026-01-01T12:00"))
    assert (await _fire(stack))["fired"] == 0
    assert await _broadcast_count(stack) == 0


async def test_a_recording_fires_once_at_its_time_with_targets_resolved_then(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    status, made = await _schedule(stack, recording, send_at="2026-01-01T09:30", title="예약 방송")
    assert status == 201, made
    assert made["source"] == "recording"

    move_to(stack, local("2026-01-01T09:29:59"))
    assert sum((await _fire(stack)).values()) == 0
    move_to(stack, local("2026-01-01T09:30"))
    assert (await _fire(stack))["fired"] == 1
    assert (await _fire(stack))["fired"] == 0, "fired once, never again"

    done = await _read(stack, made["id"])
    assert done["state"] == "completed"
    assert done["next_fire_at"] is None
    [broadcast_id] = done["broadcast_ids"]
    [occurrence] = done["occurrences"]
    assert occurrence["state"] == "fired"
    assert _aware(occurrence["occurrence_at"]) == local("2026-01-01T09:30")

    summary = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert summary["title"] == "예약 방송"
    assert summary["target"]["schedule_id"] == made["id"]
    assert summary["speakers"]["total"] == len(codes)
    assert await stack.publish_pending() == 1
    [(_, command)] = _commands(stack)
    assert command.broadcast_id == broadcast_id
    assert {a.codec for a in command.audio} == {"opus", "mp3"}, "both kept: one speaker is MP3-only"

    late = await stack.client.patch(f"/api/v1/schedules/{made['id']}", json={"title": "늦음"})
    assert (late.status_code, late.json()["error"]) == (409, "schedule_already_fired")


async def test_repeat_n_times_every_m_minutes(stack: Stack, recording: bytes) -> None:
    status, made = await _schedule(
        stack, recording, send_at="2026-01-01T10:00", repeat_count="3", repeat_every_min="10"
    )
    assert status == 201, made
    assert made["recurrence"]["description"] == "1월 1일 10:00부터 10분마다 3회"
    fired = 0
    for minute in range(0, 60, 5):
        move_to(stack, local("2026-01-01T10:00") + timedelta(minutes=minute))
        fired += (await _fire(stack))["fired"]
    assert fired == 3
    done = await _read(stack, made["id"])
    assert done["state"] == "completed"
    assert [_aware(o["occurrence_at"]) for o in done["occurrences"]] == [
        local("2026-01-01T10:00"),
        local("2026-01-01T10:10"),
        local("2026-01-01T10:20"),
    ]
    assert len(set(done["broadcast_ids"])) == 3
    assert await _broadcast_count(stack) == 3


async def test_daily_recurrence_until_a_date(stack: Stack, recording: bytes) -> None:
    status, made = await _schedule(stack, recording, daily_at="07:00", until="2026-01-03")
    assert status == 201, made
    assert _aware(made["next_fire_at"]) == local("2026-01-02T07:00"), "today's 07:00 has passed"
    assert made["recurrence"]["description"] == "매일 07:00 (1월 3일까지)"

    status, weekly = await _schedule(
        stack, recording, daily_at="08:00", weekdays=["sat", "sun"], until="2026-01-10"
    )
    assert status == 201, weekly
    assert _aware(weekly["next_fire_at"]) == local("2026-01-03T08:00"), "Jan 3, 2026 is a Sat."

    for hour in range(0, 24 * 12, 1):
        move_to(stack, local("2026-01-01T09:00") + timedelta(hours=hour))
        await _fire(stack)
    daily = await _read(stack, made["id"])
    assert [_aware(o["occurrence_at"]) for o in daily["occurrences"]] == [
        local("2026-01-02T07:00"),
        local("2026-01-03T07:00"),
    ]
    assert daily["state"] == "completed"
    weekend = await _read(stack, weekly["id"])
    assert [_aware(o["occurrence_at"]).astimezone(SEOUL).day for o in weekend["occurrences"]] == [
        3,
        4,
        10,
    ]
    assert all(o["state"] == "fired" for o in weekend["occurrences"])


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"send_at": "2025-12-31T23:00"}, "send_at_in_past"),
        ({"send_at": "2026-01-01T08:59:00+09:00"}, "send_at_in_past"),
        ({"daily_at": "07:00"}, "recurrence_without_end"),
        ({"send_at": "2026-01-02T10:00", "repeat_every_min": "5"}, "recurrence_without_end"),
        ({"send_at": "2026-01-02T10:00", "repeat_count": "3"}, "invalid_recurrence"),
        (
            {"send_at": "2026-01-02T10:00", "repeat_count": "3", "repeat_every_min": "5",
             "daily_at": "07:00", "until": "2026-01-09"},
            "invalid_recurrence",
        ),
        ({"send_at": "2026-01-02T10:00", "until": "2026-01-09"}, "invalid_recurrence"),
        ({"daily_at": "07:00", "until": "2028-01-01"}, "until_too_far"),
        ({"daily_at": "07:00", "until": "2025-12-31"}, "recurrence_never_fires"),
        ({}, "missing_send_at"),
        ({"send_at": "2026-01-02T10:00", "daily_at": "7시"}, "invalid_request"),
        ({"send_at": "tomorrow"}, "invalid_request"),
    ],
)  # fmt: skip
async def test_bad_times_are_refused_clearly(stack: Stack, form: dict[str, str], code: str) -> None:
    status, body = await _schedule(stack, text="마을 청소를 합니다.", **form)
    assert (status, body["error"]) == (422, code), body
    assert "/" in body["detail"], "Korean and English"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"text": "   "}, "empty_text"),
        ({"text": "!!! ### ~~~"}, "unspeakable_text"),
        ({"text": "<b></b> ***"}, "unspeakable_text"),
        ({"text": "가" * 2001}, "text_too_long"),
        ({"text": "가" * 5001}, "invalid_request"),
        ({}, "missing_file"),
        ({"text": "안내", "all_villages": "false"}, "empty_target"),
    ],
)
async def test_bad_content_is_refused_before_anything_is_stored(
    stack: Stack, form: dict[str, str], code: str
) -> None:
    status, body = await _schedule(stack, send_at="2026-01-02T10:00", **form)
    assert (status, body["error"]) == (422, code), body
    assert (await stack.client.get("/api/v1/schedules")).json()["total"] == 0


async def test_a_schedule_from_a_template(stack: Stack) -> None:
    [meeting] = (
        await stack.client.get("/api/v1/templates", params={"name": "마을 회의 안내"})
    ).json()["items"]
    values = {"날짜": "1월 5일", "시각": "오후 2시", "장소": "마을 회관", "안건": "제설"}
    status, made = await _schedule(
        stack,
        send_at="2026-01-02T10:00",
        category="village_notice",
        template_id=str(meeting["id"]),
        values=json.dumps(values),
    )
    assert status == 201, made
    assert made["template_id"] == meeting["id"]
    assert made["template_values"] == values
    assert "1월 5일 오후 2시에 마을 회관에서" in made["text"]

    response = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}", json={"values": {**values, "안건": "경로당 난방"}}
    )
    assert response.status_code == 200, response.text
    assert "경로당 난방" in response.json()["text"]
    response = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}", json={"values": {**values, "시간": "3시"}}
    )
    assert (response.status_code, response.json()["error"]) == (422, "unknown_placeholder")
    response = await stack.client.patch(
        f"/api/v1/schedules/{made['id']}", json={"values": values, "text": "직접 쓴 문구"}
    )
    assert (response.status_code, response.json()["error"]) == (422, "text_and_template")

    status, body = await _schedule(
        stack,
        send_at="2026-01-02T10:00",
        template_id=str(meeting["id"]),
        values=json.dumps({"날짜": "1월 5일"}),
    )
    assert (status, body["error"]) == (422, "missing_placeholder")


async def test_the_same_idempotency_key_makes_one_schedule(stack: Stack) -> None:
    form = {"send_at": "2026-01-02T10:00", "text": "마을 청소를 합니다."}
    first_status, first = await _schedule(stack, key="phone-42", **form)
    again_status, again = await _schedule(stack, key="phone-42", **form)
    assert (first_status, again_status) == (201, 200)
    assert again["id"] == first["id"]
    other_status, other = await _schedule(
        stack, key="phone-42", send_at="2026-01-02T11:00", text="마을 청소를 합니다."
    )
    assert (other_status, other["error"]) == (422, "idempotency_key_reused")


async def test_a_new_gateway_on_the_same_database_fires_what_is_due(
    stack: Stack, recording: bytes
) -> None:
    _, due = await _schedule(stack, recording, send_at="2026-01-01T09:10")
    _, stale = await _schedule(stack, recording, send_at="2026-01-01T09:05")
    _, burst = await _schedule(
        stack, recording, send_at="2026-01-01T09:01", repeat_count="4", repeat_every_min="3"
    )
    # The first gateway goes away; a new one starts at 09:14 on the same database.
    restarted = create_app(
        stack.settings, bus=FakeBus(), clock=FakeClock(local("2026-01-01T09:14"))
    )
    async with restarted.router.lifespan_context(restarted):
        monkey_grace = restarted.state.runtime.settings.schedule_grace_s
        assert monkey_grace == 600
        outcomes = await restarted.state.scheduler.fire_due()
        assert await restarted.state.scheduler.fire_due() == Counter()
    assert outcomes["fired"] == 3
    assert (await _read(stack, due["id"]))["state"] == "completed"
    assert len((await _read(stack, stale["id"]))["broadcast_ids"]) == 1
    collapsed = await _read(stack, burst["id"])
    states = [(o["state"], o["reason"]) for o in collapsed["occurrences"]]
    assert states == [("skipped", "missed")] * 3 + [("fired", None)], (
        "occurrences that fell due together during downtime are sent once"
    )


async def test_occurrences_older_than_the_grace_window_are_skipped(
    stack: Stack, recording: bytes
) -> None:
    _, made = await _schedule(stack, recording, send_at="2026-01-01T09:10")
    move_to(stack, local("2026-01-01T09:10") + timedelta(seconds=601))
    assert (await _fire(stack))["skipped"] == 1
    done = await _read(stack, made["id"])
    assert done["state"] == "completed"
    assert [(o["state"], o["reason"]) for o in done["occurrences"]] == [("skipped", "missed")]
    assert done["broadcast_ids"] == []
    assert await _broadcast_count(stack) == 0


async def test_a_deleted_target_fails_that_occurrence_with_its_reason(
    stack: Stack, recording: bytes
) -> None:
    created = await stack.client.post("/api/v1/districts", json={"code": "d99", "name": "임시면"})
    assert created.status_code == 201, created.text
    district = created.json()["id"]
    _, made = await _schedule(
        stack, recording, send_at="2026-01-01T09:10", all_villages="false", district_ids=[district]
    )
    assert (await stack.client.delete(f"/api/v1/districts/{district}")).status_code == 204
    move_to(stack, local("2026-01-01T09:10"))
    assert (await _fire(stack))["failed"] == 1
    done = await _read(stack, made["id"])
    assert [(o["state"], o["reason"]) for o in done["occurrences"]] == [
        ("failed", "district_not_found")
    ]


async def test_two_schedulers_racing_create_one_broadcast_per_occurrence(
    stack: Stack, recording: bytes
) -> None:
    made = []
    for minute in range(6):
        status, body = await _schedule(stack, recording, send_at=f"2026-01-01T09:{10 + minute:02d}")
        assert status == 201, body
        made.append(body["id"])
    status, body = await _schedule(
        stack, recording, send_at="2026-01-01T09:10", repeat_count="5", repeat_every_min="1"
    )
    made.append(body["id"])

    # A second gateway process: its own engine and connections on the same database.
    engine = create_engine(stack.settings.database_url)
    runtime = stack.app.state.runtime
    rival = ScheduleWorker(create_sessions(engine), runtime, city_code=stack.settings.city_code)
    ours = stack.app.state.scheduler
    try:
        for minute in range(10, 20):
            move_to(stack, local(f"2026-01-01T09:{minute:02d}"))
            await asyncio.gather(ours.fire_due(), rival.fire_due(), ours.fire_due())
    finally:
        await engine.dispose()
    assert ours.totals["fired"] + rival.totals["fired"] == 11
    assert ours.totals["error"] == rival.totals["error"] == 0
    assert await _broadcast_count(stack) == 11
    for schedule_id in made:
        schedule = await _read(stack, schedule_id)
        assert schedule["state"] == "completed"
        occurrences = [o["occurrence_at"] for o in schedule["occurrences"]]
        assert len(occurrences) == len(set(occurrences)) == len(schedule["broadcast_ids"])


async def test_a_schedule_is_held_to_the_senders_rights(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    form = {"send_at": "2026-01-02T10:00", "all_villages": "true"}
    files = {"file": ("notice.m4a", recording, "audio/mp4")}
    response = await stack.client.post(
        "/api/v1/schedules",
        data={**form, "category": "disaster"},
        files=files,
        headers=people[Role.SAFETY_OFFICER].headers,
    )
    assert (response.status_code, response.json()["error"]) == (409, "approval_required"), (
        "nobody is there to approve a schedule when it fires"
    )
    response = await stack.client.post(
        "/api/v1/schedules",
        data={**form, "category": "administrative"},
        files=files,
        headers=people[Role.POLICE_OFFICER].headers,
    )
    assert (response.status_code, response.json()["error"]) == (403, "category_not_allowed")
    auditor = await stack.client.post(
        "/api/v1/schedules",
        data={**form, "category": "administrative"},
        files=files,
        headers=people[Role.AUDITOR].headers,
    )
    assert auditor.status_code == 403
    assert (await stack.client.get("/api/v1/schedules")).json()["total"] == 0


async def _as(stack: Stack, person: Person, **form: Any) -> tuple[int, dict[str, Any]]:
    response = await stack.client.post("/api/v1/schedules", data=form, headers=person.headers)
    return response.status_code, response.json()


async def test_people_see_and_change_only_the_schedules_of_their_area_and_categories(
    stack: Stack,
) -> None:
    people = await _people(stack)
    districts, villages = await _layout(stack)
    mine, other = districts[0]["id"], districts[1]["id"]
    head, police = people[Role.VILLAGE_HEAD], people[Role.POLICE_OFFICER]
    officer = people[Role.DISTRICT_OFFICER]
    village = (await stack.client.get("/api/v1/auth/me", headers=head.headers)).json()[
        "village_ids"
    ][0]
    assert any(v["id"] == village and v["district_id"] == mine for v in villages)
    made: dict[str, str] = {}
    for name, form in {
        "notice": {"category": "village_notice", "village_ids": [village]},
        "elsewhere": {"category": "administrative", "district_ids": [other]},
        "crime": {"category": "crime_prevention", "district_ids": [mine]},
        "district": {"category": "administrative", "district_ids": [mine]},
        "city": {"category": "administrative", "all_villages": "true"},
    }.items():
        status, body = await _schedule(
            stack,
            send_at="2026-01-01T11:00",
            text="예약 방송입니다.",
            **{"all_villages": "false"} | form,
        )
        assert status == 201, body
        made[name] = body["id"]

    async def visible(person: Person) -> set[str]:
        listed = await stack.client.get("/api/v1/schedules", headers=person.headers)
        assert listed.status_code == 200, listed.text
        ids = {s["id"] for s in listed.json()["items"]}
        assert listed.json()["total"] == len(ids)
        return {name for name, sid in made.items() if sid in ids}

    assert await visible(head) == {"notice", "district", "city"}
    assert await visible(police) == {"crime"}
    assert await visible(officer) == {"notice", "crime", "district", "city"}
    assert await visible(people[Role.AUDITOR]) == set(made)
    assert await visible(people[Role.CITY_ADMIN]) == set(made)
    assert await visible(people[Role.SAFETY_OFFICER]) == set(), "no disaster alert scheduled"

    for person, name in ((head, "elsewhere"), (head, "crime"), (police, "district")):
        hidden = await stack.client.get(f"/api/v1/schedules/{made[name]}", headers=person.headers)
        assert (hidden.status_code, hidden.json()["error"]) == (403, "outside_scope"), name
    seen = await stack.client.get(f"/api/v1/schedules/{made['notice']}", headers=head.headers)
    assert seen.status_code == 200

    # Acting needs the right to send it as it stands: no taking over another district's.
    takeover = await stack.client.patch(
        f"/api/v1/schedules/{made['elsewhere']}",
        json={"district_ids": [mine]},
        headers=officer.headers,
    )
    assert (takeover.status_code, takeover.json()["error"]) == (403, "outside_scope")
    assert (await _read(stack, made["elsewhere"]))["target"]["district_ids"] == [other]
    for person, name, code in (
        (officer, "elsewhere", "outside_scope"),
        (officer, "city", "outside_scope"),
        (head, "district", "outside_scope"),
        (police, "district", "category_not_allowed"),
    ):
        refused = await stack.client.post(
            f"/api/v1/schedules/{made[name]}/cancel", headers=person.headers
        )
        assert (refused.status_code, refused.json()["error"]) == (403, code), name
    for person, name in ((officer, "district"), (police, "crime"), (head, "notice")):
        # The rights would do, but the city made these: only the city's own may stop them.
        outranked = await stack.client.post(
            f"/api/v1/schedules/{made[name]}/cancel", headers=person.headers
        )
        assert (outranked.status_code, outranked.json()["error"]) == (403, "cancel_outranked")
        cancelled = await stack.client.post(
            f"/api/v1/schedules/{made[name]}/cancel", headers=people[Role.CITY_ADMIN].headers
        )
        assert cancelled.status_code == 200, (name, cancelled.text)
        assert cancelled.json()["state"] == "cancelled"
    again = await stack.client.post(
        f"/api/v1/schedules/{made['district']}/cancel", headers=head.headers
    )
    assert again.status_code == 403, "a cancelled schedule outside the area stays hidden"


async def test_schedules_are_rate_limited_when_made_and_when_they_fire(stack: Stack) -> None:
    people = await _people(stack)
    head = people[Role.VILLAGE_HEAD]
    me = await stack.client.get("/api/v1/auth/me", headers=head.headers)
    village = me.json()["village_ids"][0]
    limit = stack.settings.rate_limit_village_notices_per_hour
    notice = {"category": "village_notice", "village_ids": [village], "text": "마을 알림입니다."}
    for _ in range(limit):
        sent = await stack.client.post("/api/v1/broadcasts", data=notice, headers=head.headers)
        assert sent.status_code == 201, sent.text

    # Made: checked like a send.
    status, body = await _as(stack, head, send_at="2026-01-01T09:30", **notice)
    assert (status, body["error"]) == (429, "rate_limited_village")
    status, body = await _as(
        stack, head, send_at="2026-01-01T09:30", **notice | {"category": "disaster"}
    )
    assert status == 201, "a disaster alert is never rate-limited"
    status, body = await _as(
        stack,
        head,
        send_at="2026-01-01T09:30",
        repeat_count="40",
        repeat_every_min="1",
        **notice | {"category": "administrative"},
    )
    assert (status, body["error"]) == (422, "repetition_over_rate_limit")
    # A village head's disaster alerts are limited too: a repetition past it is refused at once.
    status, body = await _as(
        stack,
        head,
        send_at="2026-01-01T09:30",
        repeat_count="5",
        repeat_every_min="1",
        **notice | {"category": "disaster"},
    )
    assert (status, body["error"]) == (422, "repetition_over_rate_limit")

    move_to(stack, local("2026-01-01T09:30"))
    assert (await _fire(stack))["fired"] == 1

    # An hour on, schedules piled up for one moment: each counts when it fires, and those
    # over the village's share are skipped, not sent.
    move_to(stack, local("2026-01-01T10:00:01"))
    head.token = await access_token(stack.client, head.username)
    piled = []
    for _ in range(limit + 1):
        status, body = await _as(stack, head, send_at="2026-01-01T10:30", **notice)
        assert status == 201, body
        piled.append(body["id"])
    move_to(stack, local("2026-01-01T10:30"))
    outcomes = await _fire(stack)
    assert (outcomes["fired"], outcomes["skipped"]) == (limit, 1)
    reasons = [o["reason"] for sid in piled for o in (await _read(stack, sid))["occurrences"]]
    assert reasons.count("rate_limited_village") == 1
    # What fired counts as sent, once: the village's share is spent now.
    head.token = await access_token(stack.client, head.username)
    refused = await stack.client.post("/api/v1/broadcasts", data=notice, headers=head.headers)
    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited_village")


async def _take_away(stack: Stack, police: Person, change: str, other_district: int) -> None:
    """What an administrator (or the city's configuration) changes after the schedule is made."""
    if change == "city_table":
        stack.settings.role_categories = {"police_officer": []}
        return
    body: dict[str, Any] = (
        {"district_ids": [other_district]} if change == "area" else {"role": "auditor"}
    )
    response = await stack.client.patch(f"/api/v1/users/{police.user_id}", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("area", "outside_scope"),
        ("role", "category_not_allowed"),
        ("city_table", "category_not_allowed"),
    ],
)
async def test_a_schedule_fires_only_while_its_maker_may_still_send_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, change: str, code: str
) -> None:
    """A schedule sends in its maker's name: each occurrence is held to their rights as they
    are when it falls due (their area narrowed, their role demoted, the city's table for their
    role), not as they were when they made it."""
    await _everyone_online(stack)
    monkeypatch.setattr(stack.settings, "role_categories", dict(stack.settings.role_categories))
    districts, villages = await _layout(stack)
    first, other = districts[0]["id"], districts[1]["id"]
    village = next(v["id"] for v in villages if v["district_id"] == first)
    police = await _person(stack, Role.POLICE_OFFICER, district_ids=[first])
    start = stack.clock.now() + timedelta(minutes=1)
    status, made = await _as(
        stack,
        police,
        category="crime_prevention",
        village_ids=str(village),
        text="밤길 조심하시고 문단속을 꼭 해 주세요.",
        send_at=start.isoformat(),
        repeat_count="2",
        repeat_every_min="10",
    )
    assert status == 201, made

    await _take_away(stack, police, change, other)
    move_to(stack, start)
    assert (await _fire(stack))["skipped"] == 1

    done = await _read(stack, made["id"])
    [occurrence] = done["occurrences"]
    assert (occurrence["state"], occurrence["reason"]) == ("skipped", code)
    assert (done["state"], done["paused_reason"]) == ("paused", "owner_rights_changed"), (
        "paused rather than skipping every time"
    )
    move_to(stack, start + timedelta(minutes=10))
    assert sum((await _fire(stack)).values()) == 0, "a paused schedule is not claimed"
    assert done["broadcast_ids"] == []
    assert await _broadcast_count(stack) == 0
    assert await stack.publish_pending() == 0
    assert _commands(stack) == []
