"""CAP Update and Cancel through the API: they act only on alerts of their own mode and of
senders the poster may use; an all clear is linked to its alert; an update held itself stops
what it replaces at once; a held alert never plays after its <expires>, nor before its
<effective>; the same alert posted at once several times is one."""

from __future__ import annotations

import asyncio
from datetime import datetime

from gateway.auth import Role
from tests.cap import documents as cap
from tests.cap.test_ingest import cap_sender, ids, migrated_database_url, post, villages
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import _detail
from tests.support.people import make_person

__all__ = ["migrated_database_url", "stack"]  # the fixtures, shared

OTHER_AGENCY = "kma8@weather.go.kr"


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _weather(
    identifier: str,
    where: str,
    *,
    sender: str = cap.KMA,
    msg_type: str = "Alert",
    status: str = "Actual",
    sent: str = cap.SENT,
    references: tuple[str, ...] = (),
    **fields: str,
) -> bytes:
    return cap.alert(
        identifier,
        sender=sender,
        msg_type=msg_type,
        status=status,
        sent=sent,
        references=references,
        infos=[
            cap.info(
                **{
                    "category": "Met",
                    "event": "호우",
                    "urgency": "Immediate",
                    "severity": "Severe",
                    "certainty": "Observed",
                    "headline": "호우 경보",
                    "description": "비",
                    "areas": [where],
                    **fields,
                }
            )
        ],
    )


async def _audited_reasons(stack: Stack) -> list[str]:
    rows = (await stack.client.get("/api/v1/audit-events", params={"action": "ingest_cap"})).json()[
        "items"
    ]
    return sorted(r["reason"].split(" at ")[0] for r in rows if r["reason"])


async def test_references_act_only_on_the_same_mode_and_allowed_senders(stack: Stack) -> None:
    places = await villages(stack)
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    other = await cap_sender(stack, OTHER_AGENCY, Role.SAFETY_OFFICER)
    approver = await make_person(stack.client, Role.SAFETY_OFFICER)
    where = cap.area("가람면", polygons=[cap.box([places["d01-v001"]])])
    status, live = await post(stack, _weather("LIVE-1", where), weather)
    assert status == 201, live
    [alert_id] = live["broadcast_ids"]
    ref = (f"{cap.KMA},LIVE-1,{cap.SENT}",)
    # The same alert (sender, identifier, sent) saying something else is not a replay.
    answer, body = await post(stack, _weather("LIVE-1", where, status="Test"), weather)
    assert (answer, body["error"]) == (409, "cap_alert_changed"), body

    # A test Cancel, an exercise Update, another agency's Cancel: refused, nothing stopped.
    refused = [
        (
            cap.alert("T-1", sender=cap.KMA, msg_type="Cancel", status="Test", references=ref),
            weather,
            409,
            "cap_reference_mode_mismatch",
        ),
        (
            _weather("X-1", where, msg_type="Update", status="Exercise", references=ref),
            weather,
            409,
            "cap_reference_mode_mismatch",
        ),
        (
            cap.alert("K8-1", sender=OTHER_AGENCY, msg_type="Cancel", references=ref),
            other,
            403,
            "cap_reference_sender_not_allowed",
        ),
    ]
    for document, headers, code, error in refused:
        answer, body = await post(stack, document, headers)
        assert (answer, body["error"]) == (code, error), body
        assert " / " in body["detail"]
    assert (await _detail(stack, alert_id))["state"] != "cancelled"
    assert (await stack.client.get("/api/v1/broadcasts")).json()["total"] == 1
    assert await _audited_reasons(stack) == sorted(["cap_alert_changed", *(e for *_, e in refused)])

    # An Update whose responseType is AllClear is the alert's all clear: in the alert's
    # category (a Minor all clear of a disaster is not administrative), linked, not a cancel.
    all_clear = _weather(
        "LIVE-1-clear",
        where,
        msg_type="Update",
        references=ref,
        sent="2026-01-01T08:59:00+09:00",
        response_type="AllClear",
        urgency="Past",
        severity="Minor",
        headline="호우 경보 해제",
    )
    status, body = await post(stack, all_clear, weather)
    assert status == 201, body
    assert (body["category"], body["cancelled_broadcast_ids"]) == ("disaster", [])
    cleared = await _detail(stack, body["broadcast_ids"][0])
    assert cleared["all_clear_of"] == alert_id
    assert cleared["target"]["cap"]["identifier"] == "LIVE-1-clear"
    assert (await _detail(stack, alert_id))["state"] != "cancelled"

    # Effective in six hours: held until then, through a schedule.
    status, later = await post(
        stack,
        _weather("LATER-1", where, effective="2026-01-01T15:00:00+09:00"),
        weather,
    )
    assert status == 201, later
    assert later["broadcast_ids"] == []
    schedule = (await stack.client.get(f"/api/v1/schedules/{later['schedule_id']}")).json()
    assert _when(schedule["next_fire_at"]) == _when("2026-01-01T15:00:00+09:00")

    # City-wide, it waits for a second person; approved after its <expires>, it is not sent.
    everywhere = cap.area("시 전역", polygons=[cap.box(list(places.values()))])
    brief = _weather("WIDE-1", everywhere, expires="2026-01-01T09:10:00+09:00")
    status, waiting = await post(stack, brief, weather)
    assert status == 201, waiting
    stack.clock.advance(11 * 60)
    approve = await stack.client.post(
        f"/api/v1/approvals/{waiting['approval_id']}/approve", headers=approver.headers
    )
    assert (approve.status_code, approve.json()["error"]) == (409, "approval_alert_expired")


async def test_a_held_update_stops_what_it_replaces_and_nothing_plays_expired(
    stack: Stack,
) -> None:
    places = await villages(stack)
    parts = (await stack.client.get("/api/v1/districts")).json()["items"]
    d01 = next(d for d in parts if d["code"] == "d01")
    officer = await cap_sender(stack, cap.KMA, Role.DISTRICT_OFFICER, district_ids=[d01["id"]])
    stack.clock.advance(13 * 3600)  # 22:00 in Korea: quiet hours until 07:00
    where = cap.area("가람면", polygons=[cap.box([places["d01-v001"]])])
    night = "2026-01-01T21:59:00+09:00"

    def rain(identifier: str, expires: str, **fields: object) -> bytes:
        return _weather(
            identifier,
            where,
            sent=night,
            urgency="Expected",
            severity="Moderate",
            expires=expires,
            **fields,  # type: ignore[arg-type]
        )

    status, first = await post(stack, rain("RAIN-1", "2026-01-02T12:00:00+09:00"), officer)
    assert status == 201, first
    held = first["schedule_id"]
    # The update is held too: the schedule it replaces is cancelled now, not left to play.
    update = rain(
        "RAIN-1-update",
        "2026-01-02T08:00:00+09:00",
        msg_type="Update",
        references=(f"{cap.KMA},RAIN-1,{night}",),
    )
    status, updated = await post(stack, update, officer)
    assert status == 201, updated
    assert updated["schedule_id"] not in (None, held)
    assert updated["cancelled_schedule_ids"] == [held]
    assert (await stack.client.get(f"/api/v1/schedules/{held}")).json()["state"] == "cancelled"
    # An alert that expires before quiet hours end.
    status, brief = await post(stack, rain("RAIN-2", "2026-01-01T23:00:00+09:00"), officer)
    assert status == 201, brief
    # A live alert now (a disaster is never held), then its update, held till morning: when the
    # update goes out, what has not played of the alert stops.
    late = "2026-01-02T12:00:00+09:00"
    status, fire = await post(stack, _weather("FIRE-1", where, sent=night, expires=late), officer)
    assert status == 201, fire
    [alert_id] = fire["broadcast_ids"]
    fire_update = rain(
        "FIRE-1-update", late, msg_type="Update", references=(f"{cap.KMA},FIRE-1,{night}",)
    )
    status, held_update = await post(stack, fire_update, officer)
    assert status == 201, held_update
    assert held_update["schedule_id"]
    assert (await _detail(stack, alert_id))["state"] != "cancelled", "not until it goes out"

    stack.clock.advance(9 * 3600 + 60)  # 07:01
    outcomes = await stack.app.state.scheduler.fire_due()
    assert (outcomes["fired"], outcomes["skipped"]) == (2, 1), outcomes
    assert (await _detail(stack, alert_id))["state"] == "cancelled"
    went_out = (await stack.client.get(f"/api/v1/schedules/{held_update['schedule_id']}")).json()
    said = (
        await stack.client.get(f"/api/v1/broadcasts/{went_out['broadcast_ids'][0]}/cap")
    ).content
    assert b"<msgType>Update</msgType>" in said
    assert f"urn:maeul:testcity:{alert_id},".encode() in said
    skipped = (await stack.client.get(f"/api/v1/schedules/{brief['schedule_id']}")).json()
    assert [o["reason"] for o in skipped["occurrences"]] == ["expired"]
    fired = (await stack.client.get(f"/api/v1/schedules/{updated['schedule_id']}")).json()
    [occurrence] = fired["occurrences"]
    broadcast = await _detail(stack, occurrence["broadcast_id"])
    # The broadcast ends with the alert, and keeps its CAP link.
    assert _when(broadcast["expires_at"]) == _when("2026-01-02T08:00:00+09:00")
    assert broadcast["target"]["cap"]["identifier"] == "RAIN-1-update"
    assert broadcast["target"]["village_ids"] == ids(places, "d01-v001")


async def test_the_same_alert_posted_at_once_is_one_broadcast_and_replays(stack: Stack) -> None:
    places = await villages(stack)
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    where = cap.area("가람면", polygons=[cap.box([places["d01-v001"]])])
    document = _weather("TWICE-1", where)
    answers = await asyncio.gather(*(post(stack, document, weather) for _ in range(4)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, 201], answers
    assert len({tuple(body["broadcast_ids"]) for _, body in answers}) == 1
    assert (await stack.client.get("/api/v1/broadcasts")).json()["total"] == 1
