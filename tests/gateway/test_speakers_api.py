"""The speakers admin API: speakers over HTTP, their CSV import and the fleet's identities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from gateway.speakers import presence
from tests.gateway.conftest import Api


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def _places(api: Api) -> dict[str, int]:
    """Districts d01 (villages d01-v001, d01-v002) and d02 (village d02-v001)."""
    ids: dict[str, int] = {}
    for code in ("d01", "d02"):
        body = _ok(
            await api.client.post("/api/v1/districts", json={"code": code, "name": f"{code}면"}),
            201,
        )
        ids[code] = body["id"]
    for code in ("d01-v001", "d01-v002", "d02-v001"):
        body = _ok(
            await api.client.post(
                "/api/v1/villages",
                json={"code": code, "name": f"{code}리", "district_id": ids[code[:3]]},
            ),
            201,
        )
        ids[code] = body["id"]
    return ids


def _csv(text: str) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("speakers.csv", text.encode(), "text/csv")}


async def test_speaker_lifecycle(api: Api) -> None:
    ids = await _places(api)
    created = _ok(
        await api.client.post(
            "/api/v1/speakers",
            json={
                "code": "d01-v001-s1",
                "village_id": ids["d01-v001"],
                "codecs": ["mp3", "opus", "mp3"],
                "firmware": "1.4.2",
            },
        ),
        201,
    )
    assert created["kind"] == "loudspeaker"
    assert created["codecs"] == ["opus", "mp3"]
    assert created["district_id"] == ids["d01"]
    assert (created["online"], created["last_seen_at"]) == (False, None)
    url = f"/api/v1/speakers/{created['id']}"
    assert _ok(await api.client.get(url))["firmware"] == "1.4.2"

    moved = _ok(
        await api.client.patch(
            url,
            json={
                "village_id": ids["d02-v001"],
                "kind": "household_receiver",
                "codecs": ["mp3"],
                "firmware": None,
            },
        )
    )
    assert (moved["village_id"], moved["district_id"]) == (ids["d02-v001"], ids["d02"])
    assert (moved["kind"], moved["codecs"], moved["firmware"]) == (
        "household_receiver",
        ["mp3"],
        None,
    )
    assert _ok(await api.client.patch(url, json={}))["code"] == "d01-v001-s1"

    assert (await api.client.delete(url)).status_code == 204
    _error(await api.client.get(url), 404, "speaker_not_found")
    _error(await api.client.delete(url), 404, "speaker_not_found")


async def test_speaker_errors(api: Api) -> None:
    ids = await _places(api)
    first = {"code": "s1", "village_id": ids["d01-v001"]}
    _ok(await api.client.post("/api/v1/speakers", json=first), 201)
    second = _ok(await api.client.post("/api/v1/speakers", json={**first, "code": "s2"}), 201)
    _error(await api.client.post("/api/v1/speakers", json=first), 409, "duplicate_code")
    _error(
        await api.client.post("/api/v1/speakers", json={"code": "s3", "village_id": 9999}),
        404,
        "village_not_found",
    )
    url = f"/api/v1/speakers/{second['id']}"
    _error(await api.client.patch(url, json={"code": "s1"}), 409, "duplicate_code")
    _error(await api.client.patch(url, json={"village_id": 9999}), 404, "village_not_found")
    for bad in (
        {**first, "code": "s 4"},
        {**first, "code": "s4", "codecs": []},
        {**first, "code": "s4", "codecs": ["aac"]},
        {**first, "code": "s4", "kind": "siren"},
        {**first, "code": "s4", "firmware": "x" * 65},
    ):
        assert (await api.client.post("/api/v1/speakers", json=bad)).status_code == 422, bad
    assert (await api.client.patch(url, json={"codecs": None})).status_code == 422


async def test_listing_filters(api: Api) -> None:
    ids = await _places(api)
    for code, village, kind in (
        ("a", "d01-v001", "loudspeaker"),
        ("b", "d01-v002", "household_receiver"),
        ("c", "d02-v001", "loudspeaker"),
    ):
        _ok(
            await api.client.post(
                "/api/v1/speakers", json={"code": code, "village_id": ids[village], "kind": kind}
            ),
            201,
        )
    async with api.sessions() as session:
        await presence.apply_presence(
            session,
            api.city_id,
            [presence.PresenceUpdate("c", "online", datetime.now(UTC), None, None)],
        )
        await session.commit()

    async def codes(**params: Any) -> list[str]:
        page = _ok(await api.client.get("/api/v1/speakers", params=params))
        return [s["code"] for s in page["items"]]

    assert await codes() == ["a", "b", "c"]
    assert await codes(village_id=ids["d01-v002"]) == ["b"]
    assert await codes(district_id=ids["d01"]) == ["a", "b"]
    assert await codes(online=True) == ["c"]
    assert await codes(online=False, kind="loudspeaker") == ["a"]
    assert await codes(limit=1, offset=1) == ["b"]
    page = _ok(await api.client.get("/api/v1/speakers", params={"limit": 1}))
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 0)
    _error(
        await api.client.get("/api/v1/speakers", params={"village_id": 9999}),
        404,
        "village_not_found",
    )
    _error(
        await api.client.get("/api/v1/speakers", params={"district_id": 9999}),
        404,
        "district_not_found",
    )
    assert (await api.client.get("/api/v1/speakers", params={"limit": 1001})).status_code == 422
    assert (await api.client.get("/api/v1/speakers", params={"kind": "x"})).status_code == 422


async def test_import_creates_and_updates_by_code(api: Api) -> None:
    ids = await _places(api)
    text = (
        "\ufeffspeaker_code,village_code,kind,codecs\n"
        "d01-v001-s1,d01-v001,loudspeaker,opus;mp3\n"
        "\n"
        "d01-v001-s2,d01-v001,,\n"
        "d02-v001-s1,d02-v001,household_receiver,mp3\n"
    )
    report = _ok(await api.client.post("/api/v1/speakers/import", files=_csv(text)))
    assert report == {"rows": 3, "created": 3, "updated": 0}
    page = _ok(await api.client.get("/api/v1/speakers"))
    by_code = {s["code"]: s for s in page["items"]}
    assert by_code["d01-v001-s2"]["kind"] == "loudspeaker"
    assert by_code["d01-v001-s2"]["codecs"] == ["opus", "mp3"]
    assert by_code["d02-v001-s1"]["district_id"] == ids["d02"]

    again = (
        "speaker_code,village_code,kind,codecs\n"
        "d01-v001-s1,d01-v001,loudspeaker,opus;mp3\n"
        "d01-v001-s2,d01-v002,loudspeaker,mp3\n"
    )
    report = _ok(await api.client.post("/api/v1/speakers/import", files=_csv(again)))
    assert report == {"rows": 2, "created": 0, "updated": 1}
    moved = _ok(await api.client.get("/api/v1/speakers", params={"village_id": ids["d01-v002"]}))
    assert [(s["code"], s["codecs"]) for s in moved["items"]] == [("d01-v001-s2", ["mp3"])]


async def test_import_refuses_every_row_when_one_is_bad(api: Api) -> None:
    await _places(api)
    text = (
        "speaker_code,village_code,kind,codecs\n"
        "ok-1,d01-v001,loudspeaker,opus\n"
        "bad code,d01-v001,loudspeaker,opus\n"
        "ok-2,d01-v001,siren,opus\n"
        "ok-3,d01-v001,loudspeaker,aac;opus\n"
        "ok-1,d01-v002,loudspeaker,opus\n"
    )
    response = await api.client.post("/api/v1/speakers/import", files=_csv(text))
    _error(response, 422, "invalid_csv")
    detail = response.json()["detail"]
    for line in ("line 3:", "line 4:", "line 5:", "line 6:"):
        assert line in detail
    assert "line 2:" not in detail
    unknown_village = "speaker_code,village_code,kind,codecs\nok-1,d01-v001,,\nok-2,d09-v001,,\n"
    response = await api.client.post("/api/v1/speakers/import", files=_csv(unknown_village))
    _error(response, 422, "invalid_csv")
    assert "line 3: there is no village with code d09-v001" in response.json()["detail"]
    assert _ok(await api.client.get("/api/v1/speakers"))["total"] == 0


async def test_fleet_gives_every_wire_identity(api: Api) -> None:
    await _places(api)
    text = "speaker_code,village_code,kind,codecs\n" + "".join(
        f"s{n:03d},{village},loudspeaker,{'mp3' if n % 5 == 0 else 'opus;mp3'}\n"
        for n, village in enumerate(["d01-v001", "d01-v002", "d02-v001"] * 40)
    )
    _ok(await api.client.post("/api/v1/speakers/import", files=_csv(text)))
    fleet = _ok(await api.client.get("/api/v1/speakers/fleet"))
    assert (fleet["city_code"], fleet["total"], fleet["limit"]) == ("testcity", 120, None)
    assert len(fleet["items"]) == 120
    assert fleet["items"][0] == {
        "code": "s000",
        "village_code": "d01-v001",
        "district_code": "d01",
        "codecs": ["mp3"],
        "kind": "loudspeaker",
    }
    assert fleet["items"][2]["district_code"] == "d02"
    page = _ok(await api.client.get("/api/v1/speakers/fleet", params={"limit": 10, "offset": 115}))
    assert [s["code"] for s in page["items"]] == [f"s{n}" for n in range(115, 120)]
