"""The places admin API: the city, districts and villages over HTTP, with its error codes."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.conftest import Api


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def _district(api: Api, code: str, name: str = "문산읍") -> dict[str, Any]:
    body: dict[str, Any] = _ok(
        await api.client.post("/api/v1/districts", json={"code": code, "name": name}), 201
    )
    return body


async def _village(api: Api, district_id: int, code: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = _ok(
        await api.client.post(
            "/api/v1/villages", json={"code": code, "name": name, "district_id": district_id}
        ),
        201,
    )
    return body


async def _speaker(api: Api, village_id: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = _ok(
        await api.client.post("/api/v1/speakers", json={"code": code, "village_id": village_id}),
        201,
    )
    return body


async def test_every_route_needs_the_token(api: Api) -> None:
    response = await api.client.get("/api/v1/city", headers={"Authorization": "Bearer wrong"})
    _error(response, 401, "invalid_token")
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as bare:
        _error(await bare.get("/api/v1/districts"), 401, "not_authenticated")


async def test_city_counts(api: Api) -> None:
    district = await _district(api, "d01")
    village = await _village(api, district["id"], "d01-v001", "상촌리")
    await _speaker(api, village["id"], "d01-v001-s1")
    await _speaker(api, village["id"], "d01-v001-s2")
    city = _ok(await api.client.get("/api/v1/city"))
    assert city == {
        "id": api.city_id,
        "code": "testcity",
        "name": "시험시",
        "timezone": "Asia/Seoul",
        "district_count": 1,
        "village_count": 1,
        "speaker_count": 2,
        "online_count": 0,
    }


async def test_district_lifecycle(api: Api) -> None:
    created = await _district(api, "d01", "  문산읍 ")
    assert created["name"] == "문산읍"
    assert created["village_count"] == created["speaker_count"] == created["online_count"] == 0
    assert created["created_at"].startswith("2026-01-01T00:00:00")
    url = f"/api/v1/districts/{created['id']}"
    assert _ok(await api.client.get(url))["code"] == "d01"

    renamed = _ok(await api.client.patch(url, json={"name": "문산면"}))
    assert (renamed["code"], renamed["name"]) == ("d01", "문산면")
    recoded = _ok(await api.client.patch(url, json={"code": "munsan"}))
    assert recoded["code"] == "munsan"

    assert (await api.client.delete(url)).status_code == 204
    _error(await api.client.get(url), 404, "district_not_found")
    _error(await api.client.delete(url), 404, "district_not_found")
    _error(await api.client.patch(url, json={"name": "x"}), 404, "district_not_found")


async def test_district_codes_are_unique_and_well_formed(api: Api) -> None:
    first = await _district(api, "d01")
    second = await _district(api, "d02")
    _error(
        await api.client.post("/api/v1/districts", json={"code": "d01", "name": "x"}),
        409,
        "duplicate_code",
    )
    _error(
        await api.client.patch(f"/api/v1/districts/{second['id']}", json={"code": "d01"}),
        409,
        "duplicate_code",
    )
    # Patching a district to its own code is no conflict.
    _ok(await api.client.patch(f"/api/v1/districts/{first['id']}", json={"code": "d01"}))
    for bad in ("", "has space", "슬래시/", "x" * 65, "a+b"):
        response = await api.client.post("/api/v1/districts", json={"code": bad, "name": "x"})
        assert response.status_code == 422, bad
    response = await api.client.patch(f"/api/v1/districts/{first['id']}", json={"name": None})
    assert response.status_code == 422
    response = await api.client.post("/api/v1/districts", json={"code": "d9", "name": " "})
    assert response.status_code == 422


async def test_districts_list_with_counts(api: Api) -> None:
    a = await _district(api, "d01", "문산읍")
    b = await _district(api, "d02", "내동면")
    v1 = await _village(api, a["id"], "d01-v001", "상촌리")
    await _village(api, a["id"], "d01-v002", "하촌리")
    await _speaker(api, v1["id"], "s1")
    page = _ok(await api.client.get("/api/v1/districts"))
    assert (page["total"], page["limit"], page["offset"]) == (2, 100, 0)
    counts = {d["code"]: (d["village_count"], d["speaker_count"]) for d in page["items"]}
    assert counts == {"d01": (2, 1), "d02": (0, 0)}
    page = _ok(await api.client.get("/api/v1/districts", params={"limit": 1, "offset": 1}))
    assert [d["id"] for d in page["items"]] == [b["id"]]
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert (await api.client.get("/api/v1/districts", params=params)).status_code == 422


async def test_a_district_with_villages_cannot_be_deleted(api: Api) -> None:
    district = await _district(api, "d01")
    await _village(api, district["id"], "d01-v001", "상촌리")
    _error(
        await api.client.delete(f"/api/v1/districts/{district['id']}"), 409, "district_not_empty"
    )


async def test_village_lifecycle(api: Api) -> None:
    district = await _district(api, "d01")
    village = await _village(api, district["id"], "d01-v001", "상촌리")
    assert village["district_code"] == "d01"
    assert village["district_name"] == "문산읍"
    url = f"/api/v1/villages/{village['id']}"
    assert _ok(await api.client.get(url))["name"] == "상촌리"
    assert _ok(await api.client.patch(url, json={"name": "상촌마을"}))["name"] == "상촌마을"
    assert (await api.client.delete(url)).status_code == 204
    _error(await api.client.get(url), 404, "village_not_found")
    _error(await api.client.get("/api/v1/villages/0"), 404, "village_not_found")


async def test_village_errors(api: Api) -> None:
    district = await _district(api, "d01")
    village = await _village(api, district["id"], "d01-v001", "상촌리")
    await _village(api, district["id"], "d01-v002", "하촌리")
    payload = {"code": "d01-v001", "name": "x", "district_id": district["id"]}
    _error(await api.client.post("/api/v1/villages", json=payload), 409, "duplicate_code")
    payload = {"code": "new", "name": "x", "district_id": 9999}
    _error(await api.client.post("/api/v1/villages", json=payload), 404, "district_not_found")
    url = f"/api/v1/villages/{village['id']}"
    _error(await api.client.patch(url, json={"code": "d01-v002"}), 409, "duplicate_code")
    _error(await api.client.patch(url, json={"district_id": 9999}), 404, "district_not_found")
    assert (await api.client.patch(url, json={"code": "bad code"})).status_code == 422
    assert (await api.client.patch(url, json={"unknown": 1})).status_code == 422
    await _speaker(api, village["id"], "s1")
    _error(await api.client.delete(url), 409, "village_not_empty")


async def test_moving_a_village_moves_its_speakers(api: Api) -> None:
    a = await _district(api, "d01", "문산읍")
    b = await _district(api, "d02", "내동면")
    village = await _village(api, a["id"], "d01-v001", "상촌리")
    speaker = await _speaker(api, village["id"], "s1")
    assert speaker["district_id"] == a["id"]
    moved = _ok(
        await api.client.patch(f"/api/v1/villages/{village['id']}", json={"district_id": b["id"]})
    )
    assert (moved["district_id"], moved["district_code"]) == (b["id"], "d02")
    assert moved["speaker_count"] == 1
    speaker = _ok(await api.client.get(f"/api/v1/speakers/{speaker['id']}"))
    assert speaker["district_id"] == b["id"]
    districts = _ok(await api.client.get("/api/v1/districts"))["items"]
    assert {d["code"]: d["speaker_count"] for d in districts} == {"d01": 0, "d02": 1}


async def test_villages_search_filter_and_pages(api: Api) -> None:
    a = await _district(api, "d01", "문산읍")
    b = await _district(api, "d02", "내동면")
    for n, name in enumerate(["상촌리", "하촌리", "송정리"], start=1):
        await _village(api, a["id"], f"d01-v{n:03d}", name)
    await _village(api, b["id"], "d02-v001", "상촌마을")
    await _village(api, b["id"], "d02-v002", "100%_마을")

    async def codes(**params: Any) -> list[str]:
        page = _ok(await api.client.get("/api/v1/villages", params=params))
        return [v["code"] for v in page["items"]]

    assert await codes() == ["d01-v001", "d01-v002", "d01-v003", "d02-v001", "d02-v002"]
    assert await codes(q="상촌") == ["d01-v001", "d02-v001"]
    assert await codes(q="D02-V") == ["d02-v001", "d02-v002"], "codes match in any case"
    assert await codes(q="%") == ["d02-v002"], "wildcards are literal"
    assert await codes(district_id=b["id"]) == ["d02-v001", "d02-v002"]
    assert await codes(district_id=a["id"], q="촌") == ["d01-v001", "d01-v002"]
    assert await codes(limit=2, offset=2) == ["d01-v003", "d02-v001"]
    page = _ok(await api.client.get("/api/v1/villages", params={"q": "촌", "limit": 1}))
    assert page["total"] == 3
    _error(
        await api.client.get("/api/v1/villages", params={"district_id": 9999}),
        404,
        "district_not_found",
    )
