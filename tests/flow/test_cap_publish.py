"""CAP 1.2 out through the API: each broadcast's document, the public Atom feed of live alerts,
the delivery report, who may read them; and the all clear ("해제") from the alert to the
residents' page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from lxml import etree

from gateway.auth import Role
from gateway.cap.xsd import NS, parse
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _ack, _commands, _create, _everyone_online, recording
from tests.support.people import sign_up
from wire.contract import AckStatus

__all__ = ["recording"]  # the module-scoped fixture, shared
ATOM = {"a": "http://www.w3.org/2005/Atom"}


def _public(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=stack.client._transport, base_url="http://gateway")


async def _villages(stack: Stack) -> dict[str, dict[str, Any]]:
    found = await stack.client.get("/api/v1/villages", params={"limit": 100})
    return {v["code"]: v for v in found.json()["items"]}


async def _sent(stack: Stack, recording: bytes, **form: Any) -> dict[str, Any]:
    status, body = await _create(stack, recording, **form)
    assert status == 201, body
    return body


async def _cap(stack: Stack, broadcast_id: str) -> etree._Element:
    response = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}/cap")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/cap+xml")
    return parse(response.content)  # valid against the OASIS CAP 1.2 schema


def _texts(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path, NS)]


async def _speakers_of(stack: Stack, village_id: int) -> list[str]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    return [s["code"] for s in fleet if s["village_id"] == village_id]


async def _play_all(stack: Stack, broadcast_id: str, speakers: list[str]) -> None:
    await stack.publish_pending()
    command = next(c for _, c in _commands(stack) if c.broadcast_id == broadcast_id)
    for code in speakers:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()


# One database is enough here: the all clear's test below reads the same documents and feed on
# both.
@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_documents_feed_report_and_who_may_read_them(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    villages = await _villages(stack)
    first, second = villages["d01-v001"], villages["d02-v001"]
    officer = await sign_up(
        stack.client, "kim-officer", Role.DISTRICT_OFFICER, district_ids=[first["district_id"]]
    )
    live = await _sent(
        stack, recording, category="disaster", title="산불 경보", village_ids=[first["id"]]
    )
    circle = {"circle": {"lat": first["lat"], "lon": first["lon"], "radius_m": 300}}
    exercise = await _sent(
        stack, recording, mode="exercise", text="훈련 방송입니다", area=json.dumps(circle)
    )
    box = [[34.0, 127.0], [34.0, 129.5], [36.5, 129.5], [36.5, 127.0]]
    test = await _sent(stack, recording, mode="test", area=json.dumps({"polygon": box}))
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "area": json.dumps({"codes": [first["legal_code"]]})},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=officer.headers,
    )
    assert response.status_code == 201, response.text
    by_codes = response.json()

    expected = {live["id"]: "Actual", exercise["id"]: "Exercise", test["id"]: "Test"}
    for broadcast_id, status in {**expected, by_codes["id"]: "Actual"}.items():
        root = await _cap(stack, broadcast_id)
        assert _texts(root, "cap:status") == [status]
        assert _texts(root, "cap:msgType") == ["Alert"]
        assert first["legal_code"] in _texts(root, "cap:info/cap:area/cap:geocode/cap:value")
    [circled] = _texts(await _cap(stack, exercise["id"]), "cap:info/cap:area/cap:circle")
    assert circled.endswith(" 0.3")
    assert _texts(await _cap(stack, live["id"]), "cap:info/cap:description") == ["(음성 방송)"]

    async with _public(stack) as public:
        feed = await public.get("/api/v1/cap/feed")
        assert feed.status_code == 200, feed.text
        assert feed.headers["content-type"].startswith("application/atom+xml")
        root = etree.fromstring(feed.content)
        ids = [e.text for e in root.iterfind("a:entry/a:id", ATOM)]
        assert sorted(ids) == sorted(f"urn:maeul:testcity:{b['id']}" for b in (live, by_codes))
        for secret in (b"kim-officer", b"token", b"speaker", b"d01-v001-s"):
            assert secret not in feed.content
        etag = feed.headers["etag"]
        again = await public.get("/api/v1/cap/feed", headers={"If-None-Match": etag})
        assert again.status_code == 304
        since = await public.get(
            "/api/v1/cap/feed", headers={"If-Modified-Since": feed.headers["last-modified"]}
        )
        assert since.status_code == 304
        link = root.find("a:entry/a:link", ATOM)
        assert link is not None
        assert link.get("type") == "application/cap+xml"
        href = str(link.get("href")).removeprefix(stack.settings.public_url)
        document = await public.get(href)
        assert document.status_code == 200, document.text
        assert b"kim-officer" not in document.content
        parse(document.content)
        hidden = await public.get(f"/api/v1/cap/alerts/urn:maeul:testcity:{test['id']}.xml")
        assert (hidden.status_code, hidden.json()["error"]) == (404, "cap_alert_not_found")
        assert (await public.get(f"/api/v1/broadcasts/{live['id']}/cap")).status_code == 401

    # Who may read the broadcast may read its CAP and its report; another district may not.
    other = await sign_up(
        stack.client, "lee-officer", Role.DISTRICT_OFFICER, district_ids=[second["district_id"]]
    )
    for path in ("cap", "cap/report"):
        refused = await stack.client.get(
            f"/api/v1/broadcasts/{live['id']}/{path}", headers=other.headers
        )
        assert (refused.status_code, refused.json()["error"]) == (403, "outside_scope")
        allowed = await stack.client.get(
            f"/api/v1/broadcasts/{live['id']}/{path}", headers=officer.headers
        )
        assert allowed.status_code == 200

    speakers = await _speakers_of(stack, first["id"])
    await _play_all(stack, live["id"], speakers)
    found = await stack.client.get(f"/api/v1/broadcasts/{live['id']}/cap/report?format=json")
    assert found.status_code == 200, found.text
    [village] = found.json()["villages"]
    assert (village["outcome"], village["played"]) == ("played", len(speakers))
    ack = await stack.client.get(f"/api/v1/broadcasts/{live['id']}/cap/report")
    root = parse(ack.content)
    assert _texts(root, "cap:msgType") == ["Ack"]
    assert f"urn:maeul:testcity:{live['id']}" in _texts(root, "cap:references")[0]
    assert _texts(root, "cap:note")[0].startswith(f"{first['legal_code']} played")


async def test_all_clear_from_the_alert_to_the_residents_page(
    stack: Stack, recording: bytes
) -> None:
    await _everyone_online(stack)
    village = (await _villages(stack))["d01-v001"]
    speakers = await _speakers_of(stack, village["id"])
    alert = await _sent(
        stack, recording, category="disaster", title="산불 경보", village_ids=[village["id"]]
    )
    await _play_all(stack, alert["id"], speakers)

    key = {"Idempotency-Key": "clear-1"}
    cleared = await stack.client.post(
        f"/api/v1/broadcasts/{alert['id']}/all-clear", json={}, headers=key
    )
    assert cleared.status_code == 201, cleared.text
    clear = cleared.json()
    assert clear["all_clear_of"] == alert["id"]
    assert (clear["mode"], clear["category"], clear["text"], clear["title"]) == (
        "live",
        "disaster",
        "산불 경보를 해제합니다.",
        "[해제] 산불 경보",
    )
    assert clear["villages"]["total"] == 1
    replay = await stack.client.post(
        f"/api/v1/broadcasts/{alert['id']}/all-clear", json={}, headers=key
    )
    assert (replay.status_code, replay.json()["id"]) == (200, clear["id"])
    twice = await stack.client.post(f"/api/v1/broadcasts/{alert['id']}/all-clear", json={})
    assert (twice.status_code, twice.json()["error"]) == (409, "already_all_clear")
    of_clear = await stack.client.post(f"/api/v1/broadcasts/{clear['id']}/all-clear")
    assert (of_clear.status_code, of_clear.json()["error"]) == (409, "not_clearable")
    exercise = await _sent(stack, recording, mode="exercise", village_ids=[village["id"]])
    refused = await stack.client.post(f"/api/v1/broadcasts/{exercise['id']}/all-clear")
    assert (refused.status_code, refused.json()["error"]) == (409, "not_clearable")

    original = (await stack.client.get(f"/api/v1/broadcasts/{alert['id']}")).json()
    assert original["all_cleared_in"] == clear["id"]
    assert original["all_cleared_at"] == clear["created_at"]
    listed = (await stack.client.get("/api/v1/broadcasts", params={"mode": "live"})).json()
    assert {b["id"]: b["all_cleared_in"] for b in listed["items"]}[alert["id"]] == clear["id"]

    root = await _cap(stack, clear["id"])
    assert _texts(root, "cap:msgType") == ["Update"]
    assert _texts(root, "cap:info/cap:responseType") == ["AllClear"]
    [references] = _texts(root, "cap:references")
    assert f"urn:maeul:testcity:{alert['id']}" in references

    await _play_all(stack, clear["id"], speakers)
    async with _public(stack) as public:
        notices = (await public.get(f"/api/v1/notices/villages/{village['id']}")).json()
        by_id = {n["id"]: n for n in notices["items"]}
        assert by_id[clear["id"]]["all_clear_of"] == alert["id"]
        assert by_id[alert["id"]]["all_cleared_at"] is not None
        feed = await public.get("/api/v1/cap/feed")
        assert "[해제] 산불 경보".encode() in feed.content
        assert "[해제] [해제]".encode() not in feed.content


async def test_two_all_clears_at_once_make_one(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    village = (await _villages(stack))["d01-v001"]
    alert = await _sent(
        stack, recording, category="disaster", title="산불 경보", village_ids=[village["id"]]
    )
    url = f"/api/v1/broadcasts/{alert['id']}/all-clear"
    answers = await asyncio.gather(
        stack.client.post(url, json={}, headers={"Idempotency-Key": "officer-a"}),
        stack.client.post(url, json={}, headers={"Idempotency-Key": "officer-b"}),
    )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code == 409]
    assert refused.json()["error"] == "already_all_clear"
