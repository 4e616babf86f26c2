"""CAP 1.2 alerts through POST /api/v1/cap: the specification's examples in Korean places reach
exactly the villages inside their areas, under the same send rules as any broadcast; Update and
Cancel stop what has not played; the same alert twice is one broadcast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.auth import Role
from gateway.cap.xsd import NS
from gateway.places.areas import haversine_m
from tests.cap import documents as cap
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import _ack, _commands, _detail, _everyone_online, _speakers
from tests.support.databases import copy_database
from tests.support.people import bearer, create_user
from wire import contract
from wire.contract import AckStatus

__all__ = ["stack"]  # the fixture, shared

CAP_XML = {"Content-Type": "application/cap+xml"}


# SQLite only: what CAP adds over the broadcast flow (parsing, areas, the allow-list) is the
# same on either database, and every alert these tests send is spoken and transcoded.
@pytest.fixture
def migrated_database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    return copy_database(migrated_sqlite, tmp_path / "maeul.db")


async def cap_sender(stack: Stack, sender: str, role: Role, **scope: Any) -> dict[str, str]:
    """An account of ``role`` allowed to post ``sender``'s alerts; its API key's headers."""
    name = sender.split("@")[0].replace(".", "-")
    user_id = await create_user(stack.client, f"cap-{name}-{role.value}", role, **scope)
    key = await stack.client.post(f"/api/v1/users/{user_id}/api-keys", json={"name": sender})
    assert key.status_code == 201, key.text
    allowed = await stack.client.post(
        "/api/v1/cap/senders", json={"sender": sender, "user_id": user_id}
    )
    assert allowed.status_code == 201, allowed.text
    return {**bearer(key.json()["key"]), **CAP_XML}


async def post(stack: Stack, document: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = await stack.client.post("/api/v1/cap", content=document, headers=headers)
    return response.status_code, response.json()


async def villages(stack: Stack) -> dict[str, dict[str, Any]]:
    response = await stack.client.get("/api/v1/villages")
    assert response.status_code == 200, response.text
    return {v["code"]: v for v in response.json()["items"]}


async def districts(stack: Stack) -> dict[str, dict[str, Any]]:
    response = await stack.client.get("/api/v1/districts")
    return {d["code"]: d for d in response.json()["items"]}


def ids(found: dict[str, dict[str, Any]], *codes: str) -> list[int]:
    return sorted(found[c]["id"] for c in codes)


def circle_around(places: dict[str, dict[str, Any]], code: str) -> str:
    """A CAP circle around one village that reaches no other (radius in km)."""
    centre = places[code]
    nearest = min(
        haversine_m(centre["lat"], centre["lon"], v["lat"], v["lon"])
        for other, v in places.items()
        if other != code
    )
    return f"{centre['lat']},{centre['lon']} {nearest / 2 / 1000:.3f}"


async def test_the_specification_examples_reach_exactly_the_villages_inside(
    stack: Stack,
) -> None:
    places, parts = await villages(stack), await districts(stack)
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    police = await cap_sender(
        stack, cap.POLICE, Role.POLICE_OFFICER, district_ids=[d["id"] for d in parts.values()]
    )
    ministry = await cap_sender(stack, cap.MOIS, Role.SAFETY_OFFICER)
    garam = [v for c, v in places.items() if c.startswith("d01-")]

    # The thunderstorm's polygon around the first district: its three villages, no more.
    status, storm = await post(stack, cap.thunderstorm(cap.box(garam)), weather)
    assert status == 201, storm
    assert storm["village_ids"] == ids(places, "d01-v001", "d01-v002", "d01-v003")
    assert (storm["category"], storm["mode"], storm["msg_type"]) == ("disaster", "live", "Alert")
    assert storm["language"] == "ko-KR", "the Korean <info> is the one spoken"
    [broadcast_id] = storm["broadcast_ids"]
    detail = await _detail(stack, broadcast_id)
    assert detail["category"] == "disaster"
    assert detail["target"]["village_ids"] == storm["village_ids"]
    assert detail["target"]["cap"]["identifier"] == "KMA-TS-20260101-0001"
    assert detail["text"].startswith("가람면 뇌우 경보")
    # The same alert again is the same broadcast.
    again = await stack.client.post(
        "/api/v1/cap", content=cap.thunderstorm(cap.box(garam)), headers=weather
    )
    assert again.status_code == 200, again.text
    assert again.json() == storm
    assert again.headers["Idempotent-Replayed"] == "true"

    # The earthquake's circle around one village, as an exercise: that village only.
    epicentre = cap.area("진앙 주변", circles=[circle_around(places, "d01-v002")])
    quake = cap.earthquake(epicentre, "KMA-EQ-1", status="Exercise")
    status, body = await post(stack, quake, weather)
    assert status == 201, body
    assert body["village_ids"] == ids(places, "d01-v002")
    assert body["mode"] == "exercise"
    assert (await _detail(stack, body["broadcast_ids"][0]))["mode"] == "exercise"
    # Said back as the sender drew it: the circle, not the village's point.
    said = etree.fromstring(
        (await stack.client.get(f"/api/v1/broadcasts/{body['broadcast_ids'][0]}/cap")).content
    )
    drawn = circle_around(places, "d01-v002").split()
    [circle] = said.findall(".//cap:area/cap:circle", namespaces=NS)
    lat, lon = (float(x) for x in drawn[0].split(","))
    said_lat, said_lon = (float(x) for x in (circle.text or "").split()[0].split(","))
    assert (round(said_lat, 5), round(said_lon, 5)) == (round(lat, 5), round(lon, 5))
    assert float((circle.text or "").split()[1]) == pytest.approx(float(drawn[1]), abs=1e-3)

    # The AMBER alert by a district's 법정동 code: its villages; the police's category.
    status, body = await post(stack, cap.amber(parts["d02"]["legal_code"]), police)
    assert status == 201, body
    assert body["village_ids"] == ids(places, "d02-v001", "d02-v002")
    assert body["category"] == "crime_prevention"
    said = etree.fromstring(
        (await stack.client.get(f"/api/v1/broadcasts/{body['broadcast_ids'][0]}/cap")).content
    )
    given = parts["d02"]["legal_code"]
    assert given in [v.text for v in said.findall(".//cap:geocode/cap:value", namespaces=NS)]

    # The national advisory to the whole city (its 5-digit LAWD_CD): a disaster alert wider
    # than one district waits for a second person, as any would.
    lawd = parts["d01"]["legal_code"][:5]
    status, body = await post(stack, cap.homeland(lawd), ministry)
    assert status == 201, body
    assert body["broadcast_ids"] == []
    assert body["approval_id"]
    assert body["village_ids"] == sorted(v["id"] for v in places.values())
    approval = await stack.client.get(f"/api/v1/approvals/{body['approval_id']}")
    assert approval.status_code == 200, approval.text
    assert approval.json()["state"] == "pending"
    # The request keeps its CAP alert (the broadcast an approval makes is linked to it).
    assert approval.json()["target"]["cap"]["identifier"] == "MOIS-CRISIS-20260101-01"
    # Called off while it waits: the request is withdrawn, and the answer says so.
    call_off = cap.alert(
        "MOIS-CRISIS-20260101-01-cancel",
        sender=cap.MOIS,
        msg_type="Cancel",
        references=[f"{cap.MOIS},MOIS-CRISIS-20260101-01,{cap.SENT}"],
    )
    status, cancelled = await post(stack, call_off, ministry)
    assert status == 201, cancelled
    assert cancelled["withdrawn_approval_ids"] == [body["approval_id"]]
    assert cancelled["cancelled_broadcast_ids"] == []


async def test_an_update_replaces_what_has_not_played_and_a_cancel_stops_it(
    stack: Stack,
) -> None:
    places = await villages(stack)
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    await _everyone_online(stack)
    garam = [v for c, v in places.items() if c.startswith("d01-")]
    status, first = await post(stack, cap.thunderstorm(cap.box(garam), "TS-1"), weather)
    assert status == 201, first
    [original] = first["broadcast_ids"]
    await stack.publish_pending()
    # Village by village: the first village's first speaker plays it in full.
    topic = contract.command_topic_village(stack.settings.city_code, "d01-v001")
    [play] = [c for t, c in _commands(stack) if c.broadcast_id == original and t == topic]
    speakers = [s["code"] for s in _speakers(await _detail(stack, original))]
    played = "d01-v001-s1"
    rest = [c for c in speakers if c != played]
    _ack(stack, play, played, AckStatus.PLAYED)
    await stack.deliver()

    # The update: the original's unplayed deliveries end cancelled, the played one stays
    # played, and every speaker of the area gets the update, the one that played included.
    update = cap.earthquake(
        cap.area("가람면", polygons=[cap.box(garam)]),
        "TS-1-update",
        msg_type="Update",
        references=[f"{cap.KMA},TS-1,{cap.SENT}"],
        sent="2026-01-01T08:59:00+09:00",
    )
    status, updated = await post(stack, update, weather)
    assert status == 201, updated
    assert updated["cancelled_broadcast_ids"] == [original]
    [replacement] = updated["broadcast_ids"]
    states = {s["code"]: s["state"] for s in _speakers(await _detail(stack, original))}
    assert states[played] == "played"
    assert all(states[c] == "cancelled" for c in rest)
    assert played in {s["code"] for s in _speakers(await _detail(stack, replacement))}
    # Said back: the update goes out as an Update of the original, and the original's delivery
    # report names the sender's own alert and the villages the update stopped.
    document = etree.fromstring(
        (await stack.client.get(f"/api/v1/broadcasts/{replacement}/cap")).content
    )
    assert document.findtext("cap:msgType", namespaces=NS) == "Update"
    references = document.findtext("cap:references", namespaces=NS) or ""
    assert f"urn:maeul:testcity:{original}," in references
    report = await stack.client.get(f"/api/v1/broadcasts/{original}/cap/report?format=json")
    assert f"{cap.KMA},TS-1," in report.json()["references"]
    outcomes = {v["code"]: v["outcome"] for v in report.json()["villages"]}
    assert outcomes.pop("d01-v001") != "cancelled", "one of its speakers played it"
    assert set(outcomes.values()) == {"cancelled"}

    # A cancel of the update stops it; nothing new is made.
    cancel = cap.alert(
        "TS-1-cancel",
        sender=cap.KMA,
        msg_type="Cancel",
        sent="2026-01-01T08:59:30+09:00",
        references=[f"{cap.KMA},TS-1-update,2026-01-01T08:59:00+09:00"],
    )
    status, cancelled = await post(stack, cancel, weather)
    assert status == 201, cancelled
    assert (cancelled["broadcast_ids"], cancelled["cancelled_broadcast_ids"]) == (
        [],
        [replacement],
    )
    assert (await _detail(stack, replacement))["state"] == "cancelled"
    # Cancelled again (another message): nothing more is stopped, and nothing is claimed.
    again = cap.alert(
        "TS-1-cancel-2",
        sender=cap.KMA,
        msg_type="Cancel",
        sent="2026-01-01T08:59:40+09:00",
        references=[f"{cap.KMA},TS-1-update,2026-01-01T08:59:00+09:00"],
    )
    status, repeated = await post(stack, again, weather)
    assert status == 201, repeated
    assert repeated["cancelled_broadcast_ids"] == []


async def test_the_citys_table_decides_the_category_and_quiet_hours_hold_all_but_disasters(
    stack: Stack,
) -> None:
    places, parts = await villages(stack), await districts(stack)
    officer = await cap_sender(
        stack, cap.KMA, Role.DISTRICT_OFFICER, district_ids=[parts["d01"]["id"]]
    )
    stack.clock.advance(13 * 3600)  # 22:00 in Korea: quiet hours
    garam = cap.area("가람면", polygons=[cap.box([places["d01-v001"], places["d01-v002"]])])

    def rain(identifier: str) -> bytes:
        return cap.alert(
            identifier,
            sender=cap.KMA,
            sent="2026-01-01T21:59:00+09:00",
            infos=[
                cap.info(
                    category="Met",
                    event="호우",
                    urgency="Expected",
                    severity="Moderate",
                    certainty="Likely",
                    headline="호우 주의보",
                    description="비가 많이 옵니다.",
                    expires="2026-01-02T06:00:00+09:00",
                    areas=[garam],
                )
            ],
        )

    # The default table: moderate weather is an administrative announcement, held until
    # quiet hours end.
    status, body = await post(stack, rain("RAIN-1"), officer)
    assert status == 201, body
    assert body["category"] == "administrative"
    assert body["broadcast_ids"] == []
    held = body["schedule_id"]
    assert held
    # Called off while it waits for the morning: the held send is cancelled, nothing plays.
    call_off = cap.alert(
        "RAIN-1-cancel",
        sender=cap.KMA,
        msg_type="Cancel",
        sent="2026-01-01T22:00:30+09:00",
        references=[f"{cap.KMA},RAIN-1,2026-01-01T21:59:00+09:00"],
    )
    status, body = await post(stack, call_off, officer)
    assert status == 201, body
    schedule = await stack.client.get(f"/api/v1/schedules/{held}")
    assert schedule.json()["state"] == "cancelled", schedule.text
    # The city's own table makes it a disaster alert: never held.
    stack.settings.cap_mapping = [
        {"categories": ["Met"], "severity": ["Moderate"], "category": "disaster"}
    ]
    status, body = await post(stack, rain("RAIN-2"), officer)
    assert status == 201, body
    assert body["category"] == "disaster"
    assert body["village_ids"] == ids(places, "d01-v001", "d01-v002")
    assert len(body["broadcast_ids"]) == 1
