"""End to end, with real Mosquitto: the gateway as a process and simulated indoor receivers. One
household's receiver plays a village notice and its resident presses 들었어요: the board shows
one household confirmed. A receiver that never got the notice sending a heard for it (a forgery)
is dropped and counted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    GatewayProcess,
    broadcast_to,
    fleet_for,
    intake_count,
    metrics,
    wait_online,
)
from tests.media import make_recording
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e]


async def _detail(client: httpx.AsyncClient, broadcast_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _receiver(client: httpx.AsyncClient, village_id: int, code: str) -> None:
    speaker = await client.post(
        "/api/v1/speakers",
        json={"code": code, "village_id": village_id, "kind": "household_receiver"},
    )
    assert speaker.status_code == 201, speaker.text
    household = await client.post(
        f"/api/v1/villages/{village_id}/households",
        json={"address": f"{code} 1", "receiver_id": speaker.json()["id"]},
    )
    assert household.status_code == 201, household.text


async def test_a_receiver_confirms_a_notice_and_a_forged_heard_is_dropped(
    tmp_path: Path, mqtt_url: str
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code="jinju"
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
    )
    await gateway.start()
    clip = make_recording(tmp_path / "notice.m4a", "m4a", seconds=1.0).read_bytes()
    fleet = None
    try:
        async with gateway.client() as client:
            villages = (await client.get("/api/v1/villages", params={"limit": 100})).json()
            home, away = (v["id"] for v in villages["items"][:2])
            await _receiver(client, home, "home-r1")
            await _receiver(client, away, "home-r2")
            fleet = await fleet_for(
                client,
                mqtt_url,
                gateway.url,
                only=lambda s: s["kind"] == "household_receiver",
                receipts=True,
                speed=8.0,
            )
            await wait_online(client, 2, exactly=True)
            created = await broadcast_to(client, clip, [home], text="오늘 오후 2시 주민 회의")
            mine, theirs = fleet.speaker("home-r1"), fleet.speaker("home-r2")
            async with asyncio.timeout(20):
                while True:
                    if mine.press_heard():  # once it has played the notice
                        break
                    await asyncio.sleep(0.1)
                ids = mine.last_played
                assert ids is not None
                # The other household's receiver never got the notice: its heard is forged.
                assert theirs.press_heard(ids)
                while True:
                    detail = await _detail(client, created["id"])
                    [row] = detail["village_deliveries"]
                    values = await metrics(client)
                    refused = intake_count(values, "heard_refused_not_delivered")
                    if row["households_confirmed"] == 1 and refused == 1:
                        break
                    await asyncio.sleep(0.2)
            assert intake_count(values, "heard") == 1
    finally:
        if fleet is not None:
            await fleet.stop()
        gateway.stop()
