"""Targeting by area through the API: the preview, the send, the person's own area, bad shapes,
and the places' geography (coordinates, codes, boundaries) it works from."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from gateway.auth import Role
from gateway.places.areas import haversine_m
from maeul.broadcasting import area_option
from maeul.cli import app as cli
from tests.flow.conftest import TOKEN, Stack
from tests.flow.test_broadcast_flow import _create, recording
from tests.support.people import access_token, bearer, create_user

__all__ = ["recording"]  # the module-scoped fixture, shared


async def _villages(stack: Stack) -> dict[str, dict[str, Any]]:
    response = await stack.client.get("/api/v1/villages")
    assert response.status_code == 200, response.text
    return {v["code"]: v for v in response.json()["items"]}


async def _preview(stack: Stack, area: dict[str, Any], **headers: str) -> tuple[int, Any]:
    response = await stack.client.post("/api/v1/areas/preview", json=area, headers=headers)
    return response.status_code, response.json()


async def _covered(stack: Stack, area: dict[str, Any]) -> set[str]:
    status, body = await _preview(stack, area)
    assert status == 200, body
    assert body["total"] == len(body["villages"])
    return {v["code"] for v in body["villages"]}


def _box(villages: list[dict[str, Any]], margin: float = 0.002) -> list[list[float]]:
    lats = [v["lat"] for v in villages]
    lons = [v["lon"] for v in villages]
    south, north = min(lats) - margin, max(lats) + margin
    west, east = min(lons) - margin, max(lons) + margin
    return [[south, west], [south, east], [north, east], [north, west]]  # left open


async def test_an_area_previews_and_sends_to_exactly_the_villages_inside(
    stack: Stack, recording: bytes
) -> None:
    villages = await _villages(stack)
    assert all(
        isinstance(v["lat"], float) and isinstance(v["lon"], float) for v in villages.values()
    )
    districts = {
        d["code"]: d for d in (await stack.client.get("/api/v1/districts")).json()["items"]
    }
    first = villages["d01-v001"]
    nearest = min(
        haversine_m(first["lat"], first["lon"], v["lat"], v["lon"])
        for code, v in villages.items()
        if code != "d01-v001"
    )
    circle = {"lat": first["lat"], "lon": first["lon"], "radius_m": nearest / 2}
    assert await _covered(stack, {"circle": circle}) == {"d01-v001"}
    assert await _covered(stack, {"circle": {**circle, "radius_m": nearest + 1}}) >= {"d01-v001"}
    # A polygon around the first district's villages, given open: the gateway closes it.
    garam = [v for code, v in villages.items() if code.startswith("d01-")]
    status, body = await _preview(stack, {"polygon": _box(garam)})
    assert status == 200, body
    assert {v["code"] for v in body["villages"]} == {"d01-v001", "d01-v002", "d01-v003"}
    assert body["area"]["polygon"][0] == body["area"]["polygon"][-1]
    assert body["outside_scope"] == []
    # Codes: a district's 법정동 and 행정동 codes, a 리's own, the whole city's.
    narae = districts["d02"]
    assert await _covered(stack, {"codes": [narae["legal_code"]]}) == {"d02-v001", "d02-v002"}
    assert await _covered(stack, {"codes": [narae["admin_code"]]}) == {"d02-v001", "d02-v002"}
    ri = villages["d01-v002"]["legal_code"]
    assert await _covered(stack, {"codes": [ri]}) == {"d01-v002"}
    assert await _covered(stack, {"codes": [ri[:5] + "00000"]}) == set(villages)
    # Far out at sea the preview answers "none"; a send there is refused.
    assert await _covered(stack, {"circle": {"lat": 34.0, "lon": 127.0, "radius_m": 500}}) == set()

    status, sent = await _create(stack, recording, area=json.dumps({"circle": circle}))
    assert status == 201, sent
    assert sent["villages"]["total"] == 1
    assert sent["speakers"]["total"] == 2  # d01-v001 has two speakers
    target = sent["target"]
    assert target["area"] == {"circle": circle}
    assert target["village_ids"] == [first["id"]]
    # The same through codes, to a whole district's villages.
    status, sent = await _create(
        stack, recording, area=json.dumps({"codes": [narae["legal_code"]]})
    )
    assert status == 201, sent
    assert sent["target"]["village_ids"] == sorted(
        villages[c]["id"] for c in ("d02-v001", "d02-v002")
    )


async def test_bad_areas_are_refused_with_their_codes(stack: Stack, recording: bytes) -> None:
    square = [[35.19, 128.07], [35.19, 128.12], [35.23, 128.12], [35.23, 128.07]]
    bad: list[tuple[Any, str]] = [
        ({"polygon": square[:2]}, "invalid_polygon"),
        ({"polygon": [square[0], square[2], square[1], square[3]]}, "invalid_polygon"),
        ({"circle": {"lat": 35.2, "lon": 128.1, "radius_m": 0}}, "invalid_radius"),
        ({"circle": {"lat": 35.2, "lon": 128.1, "radius_m": -50}}, "invalid_radius"),
        ({"circle": {"lat": 35.2, "lon": 128.1, "radius_m": 5e6}}, "invalid_radius"),
        ({"circle": {"lat": 95, "lon": 128.1, "radius_m": 50}}, "invalid_coordinates"),
        ({"polygon": [[35.2, 190], *square[1:]]}, "invalid_coordinates"),
        ({"codes": ["48990"]}, "invalid_area_code"),
        ({"codes": ["1100000000"]}, "unknown_area_code"),
        ({"codes": []}, "invalid_area"),
        (
            {"circle": {"lat": 35.2, "lon": 128.1, "radius_m": 50}, "polygon": square},
            "invalid_area",
        ),
        ({}, "invalid_area"),
    ]
    for area, code in bad:
        status, body = await _preview(stack, area)
        assert (status, body["error"]) == (422, code), area
        assert " / " in body["detail"], "Korean / English"
    # Through a send, the same codes, and those only a send has.
    for area, code in [
        *bad[:2],
        ('{"circle": ', "invalid_area"),
        (json.dumps({"circle": {"lat": 34.0, "lon": 127.0, "radius_m": 500}}), "empty_area"),
    ]:
        text = area if isinstance(area, str) else json.dumps(area)
        status, body = await _create(stack, recording, area=text)
        assert (status, body["error"]) == (422, code), area
    codes = json.dumps({"codes": ["4899000000"]})
    status, body = await _create(stack, recording, area=codes, village_ids=["1"])
    assert (status, body["error"]) == (422, "area_and_target")
    # A structurally wrong body is the general invalid_request.
    status, body = await _preview(stack, {"circle": {"lat": "north", "lon": 1, "radius_m": 1}})
    assert (status, body["error"]) == (422, "invalid_request")
    listed = await stack.client.get("/api/v1/broadcasts")
    assert listed.json()["total"] == 0, "nothing was sent"


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_an_area_beyond_the_persons_own_is_refused_as_a_village_list_is(
    stack: Stack, recording: bytes
) -> None:
    villages = await _villages(stack)
    mine = villages["d01-v001"]
    await create_user(stack.client, "head", Role.VILLAGE_HEAD, village_ids=[mine["id"]])
    head = bearer(await access_token(stack.client, "head"))
    everything = {"codes": ["4899000000"]}
    status, body = await _preview(stack, everything, **head)
    assert status == 200, body
    assert body["outside_scope"] == sorted(v["id"] for c, v in villages.items() if c != "d01-v001")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "village_notice", "area": json.dumps(everything)},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=head,
    )
    assert (response.status_code, response.json()["error"]) == (403, "outside_scope")
    own = {"circle": {"lat": mine["lat"], "lon": mine["lon"], "radius_m": 50}}
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "village_notice", "area": json.dumps(own)},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=head,
    )
    assert response.status_code == 201, response.text
    assert response.json()["target"]["village_ids"] == [mine["id"]]
    # A schedule keeps the area beside the villages it made.
    response = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "village_notice",
            "area": json.dumps(own),
            "send_at": "2026-01-02T10:00:00+09:00",
        },
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=head,
    )
    assert response.status_code == 201, response.text
    assert response.json()["target"]["village_ids"] == [mine["id"]]
    assert response.json()["target"]["area"] == own


async def test_places_carry_geography_through_the_api_and_csv(stack: Stack) -> None:
    client = stack.client
    district = (await client.get("/api/v1/districts")).json()["items"][0]
    # A village known by its boundary only: a polygon that touches the boundary reaches it.
    ring = [[128.30, 35.30], [128.31, 35.30], [128.31, 35.31], [128.30, 35.31], [128.30, 35.30]]
    boundary = {"type": "Polygon", "coordinates": [ring]}
    created = await client.post(
        "/api/v1/villages",
        json={
            "code": "far-v1",
            "name": "먼마을",
            "district_id": district["id"],
            "legal_code": "4899031099",
            "boundary": boundary,
        },
    )
    assert created.status_code == 201, created.text
    far = created.json()
    assert (far["lat"], far["lon"], far["boundary"]) == (None, None, boundary)
    touching = [[35.305, 128.305], [35.305, 128.32], [35.32, 128.32], [35.32, 128.305]]
    assert await _covered(stack, {"polygon": touching}) == {"far-v1"}
    assert await _covered(stack, {"codes": ["4899031099"]}) == {"far-v1"}
    # A point set later, and a code cleared; lat without lon, a bad code or boundary is refused.
    patched = await client.patch(
        f"/api/v1/villages/{far['id']}", json={"lat": 35.4, "lon": 128.4, "legal_code": None}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["lat"], patched.json()["legal_code"]) == (35.4, None)
    for body in ({"lat": 35.0}, {"legal_code": "12345"}, {"lat": 91, "lon": 128}):
        refused = await client.patch(f"/api/v1/villages/{far['id']}", json=body)
        assert refused.status_code == 422, body
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    refused = await client.patch(f"/api/v1/villages/{far['id']}", json={"boundary": bowtie})
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_boundary")

    csv = (
        "district_code,district_name,village_code,village_name,lat,lon,legal_code,"
        "district_legal_code\n"
        "d09,구름면,d09-v001,새터리,35.5,128.5,4899039021,4899039000\n"
        "d09,구름면,d09-v002,안골리,,,,4899039000\n"
    )
    imported = await client.post(
        "/api/v1/places/import", files={"file": ("places.csv", csv.encode(), "text/csv")}
    )
    assert imported.status_code == 200, imported.text
    assert await _covered(stack, {"codes": ["4899039000"]}) == {"d09-v001", "d09-v002"}
    assert await _covered(stack, {"circle": {"lat": 35.5, "lon": 128.5, "radius_m": 10}}) == {
        "d09-v001"
    }
    # Every bad row is named: a point out of range, a district given two codes.
    bad = csv.replace(",,,4899039000", ",,,4899039001") + "d09,구름면,d09-v003,윗말,95,128,,\n"
    refused = await client.post(
        "/api/v1/places/import", files={"file": ("places.csv", bad.encode(), "text/csv")}
    )
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_csv")
    assert "line 4: lat" in refused.json()["detail"]
    assert "line 3" in refused.json()["detail"]


def test_the_cli_reads_areas_from_its_options() -> None:
    assert area_option("35.2,128.1", 500, None, None) == {
        "circle": {"lat": 35.2, "lon": 128.1, "radius_m": 500}
    }
    assert area_option(None, None, "35.1,128.0; 35.1,128.1;35.2,128.1;", None) == {
        "polygon": [[35.1, 128.0], [35.1, 128.1], [35.2, 128.1]]
    }
    assert area_option(None, None, None, "4817025000, 4817031000") == {
        "codes": ["4817025000", "4817031000"]
    }
    assert area_option(None, None, None, None) is None
    for near, radius, polygon, codes in (
        ("35.2,128.1", None, None, None),
        (None, 500.0, None, None),
        ("35.2", 500.0, None, None),
        (None, None, "35.1,128.0;north,east", None),
        ("35.2,128.1", 500.0, None, "4817025000"),
    ):
        with pytest.raises(typer.Exit) as caught:
            area_option(near, radius, polygon, codes)
        assert caught.value.exit_code == 2


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_the_cli_sends_to_the_villages_of_an_area(
    stack: Stack, recording: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = (await _villages(stack))["d01-v001"]
    file = tmp_path / "notice.m4a"
    file.write_bytes(recording)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(stack.app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    monkeypatch.setenv("GATEWAY_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GATEWAY_API_TOKEN", TOKEN)
    send = ["broadcast", "--file", str(file), "--category", "administrative", "--json"]
    runner = CliRunner()

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(runner.invoke, cli, [*send, *args])

    try:
        near = await run("--near", f"{first['lat']},{first['lon']}", "--radius-m", "50")
        unknown = await run("--codes", "1100000000")
        mixed = await run("--polygon", "35.1,128.0;35.1,128.1;35.2,128.1", "--all")
    finally:
        server.should_exit = True
        await serving
    assert near.exit_code == 0, near.output
    assert json.loads(near.stdout)["villages"]["total"] == 1
    assert unknown.exit_code == 2
    assert json.loads(unknown.stderr)["error"] == "unknown_area_code"
    assert mixed.exit_code == 2
