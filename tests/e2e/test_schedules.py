"""End to end: two gateway processes on one PostgreSQL database, a real Mosquitto and simulated
speakers. Schedules due in a few seconds fire exactly once per occurrence, whichever process
claims them, and every speaker plays each broadcast once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    GatewayProcess,
    fleet_for,
    forget_gateway_session,
    wait_online,
    wait_until_final,
)
from tests.media import make_recording
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

CITY = "schedcity"


@pytest.fixture
async def gateways(
    database_url: str, mqtt_url: str, tmp_path: Path
) -> AsyncIterator[list[GatewayProcess]]:
    await seed_database(database_url, preset="tiny", city_code=CITY)
    processes = []
    for name in ("a", "b"):
        data_dir = tmp_path / name
        data_dir.mkdir()
        processes.append(
            GatewayProcess(
                database_url=database_url,
                mqtt_url=mqtt_url,
                data_dir=data_dir,
                city_code=CITY,
                extra_env={
                    "GATEWAY_REPLICA_ID": f"e2e-{name}",
                    "GATEWAY_QUIET_HOURS": "off",  # the test runs at any hour
                    "GATEWAY_SCHEDULE_POLL_S": "0.2",
                    "GATEWAY_ACK_TIMEOUT_S": "20",
                },
            )
        )
    try:
        await asyncio.gather(*(p.start() for p in processes))
        yield processes
    finally:
        for process in processes:
            process.stop()
        # Their broker sessions would keep a share of the next tests' acks and presence.
        for process in processes:
            await forget_gateway_session(process)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "phone.m4a", "m4a", seconds=2.0)
    return path.read_bytes()


async def _schedule(
    client: httpx.AsyncClient, recording: bytes, send_at: datetime, **form: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/schedules",
        data={
            "category": "administrative",
            "all_villages": "true",
            "send_at": send_at.isoformat(),
            **form,
        },
        files={"file": ("phone.m4a", recording, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _until_completed(
    client: httpx.AsyncClient, schedule_id: str, *, limit_s: float = 180
) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            body: dict[str, Any] = (await client.get(f"/api/v1/schedules/{schedule_id}")).json()
            if body["state"] == "completed":
                return body
            await asyncio.sleep(0.3)


# Two gateway processes share one database only on PostgreSQL.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_gateways_fire_each_occurrence_once(
    gateways: list[GatewayProcess], mqtt_url: str, recording: bytes
) -> None:
    first, second = gateways
    async with first.client() as one, second.client() as other:
        fleet = await fleet_for(one, mqtt_url, first.url, speed=8.0)
        try:
            total = len(fleet.speakers)
            await wait_online(one, total)
            # Far enough ahead that all four are made before it comes, on a busy machine too.
            soon = datetime.now(UTC) + timedelta(seconds=15)
            # Made on both gateways; either may fire any of them. Repeating schedules raced by two
            # schedulers are in tests/flow/test_schedules.py, on a clock the test moves.
            made = [
                await _schedule(client, recording, soon, title=f"예약 {n}")
                for n, client in enumerate((one, one, other, other))
            ]
            done = [await _until_completed(other, m["id"]) for m in made]
            broadcast_ids = [b for d in done for b in d["broadcast_ids"]]
            finals = [await wait_until_final(one, b) for b in broadcast_ids]
            history = (await other.get("/api/v1/broadcasts", params={"limit": 200})).json()
        finally:
            await fleet.stop()

    assert [len(d["occurrences"]) for d in done] == [1, 1, 1, 1]
    assert all(o["state"] == "fired" for d in done for o in d["occurrences"])
    assert len(broadcast_ids) == len(set(broadcast_ids)) == 4
    assert history["total"] == 4, "one broadcast per occurrence across both gateways"
    for final in finals:
        assert final["state"] == "completed"
        assert final["speakers"]["played"] == final["speakers"]["total"] == total
    assert all(s.played == 4 for s in fleet), "every speaker played each broadcast once"
