"""Two replicas on one PostgreSQL: a board following a broadcast through one replica sees every
speaker's progress, whichever replica recorded the acks (nothing lives in one replica's memory)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    GatewayProcess,
    broadcast_to,
    fleet_for,
    forget_gateway_session,
    intake_count,
    metrics,
    wait_online,
)
from tests.media import make_recording
from tests.support.databases import seed_database
from tests.support.postgres import PostgresDatabase, fresh_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SPEED = 2.0  # the recording's 12 s play for 6 s


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresDatabase]:
    async with fresh_postgres("maeul_board", needed_for="the replicas test needs it") as database:
        yield database


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "long.m4a", "m4a", seconds=12.0)
    return path.read_bytes()


async def _follow(client: Any, broadcast_id: str) -> list[dict[str, Any]]:
    """Every detail the stream pushes, until it ends."""
    pushed = []
    url = f"/api/v1/broadcasts/{broadcast_id}/events"
    async with client.stream("GET", url, params={"detail": "true"}, timeout=None) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                pushed.append(json.loads(line[len("data: ") :]))
    return pushed


async def test_a_board_on_one_replica_follows_acks_the_other_recorded(
    tmp_path: Path, mqtt_url: str, postgres: PostgresDatabase, clip: bytes
) -> None:
    await seed_database(postgres.url, preset="tiny")
    replicas = []
    for name in ("e2e", "e2e-board"):
        (tmp_path / name).mkdir()
        replicas.append(
            GatewayProcess(
                database_url=postgres.url,
                mqtt_url=mqtt_url,
                data_dir=tmp_path / name,
                extra_env={"GATEWAY_REPLICA_ID": name},
            )
        )
    sender, watcher = replicas
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        async with sender.client() as one, watcher.client() as other:
            fleet = await fleet_for(one, mqtt_url, sender.url, speed=SPEED)
            try:
                await wait_online(one, len(fleet.speakers))
                villages = [v["id"] for v in (await one.get("/api/v1/villages")).json()["items"]]
                sent = await broadcast_to(one, clip, villages)
                pushed = await asyncio.wait_for(_follow(other, sent["id"]), 180)
                recorded = [
                    intake_count(await metrics(client), "acks_applied") for client in (one, other)
                ]
            finally:
                await fleet.stop()
    finally:
        for replica in replicas:
            replica.stop()
        await forget_gateway_session(watcher)

    assert all(recorded), f"each replica recorded some of the acks: {recorded}"
    final = pushed[-1]
    assert final["state"] == "completed"
    speakers = {s["code"] for v in final["village_deliveries"] for s in v["speakers"]}
    assert {s["state"] for v in final["village_deliveries"] for s in v["speakers"]} == {"played"}
    # Every speaker was seen playing before it was seen played: no step was skipped.
    for code in speakers:
        states = [
            s["state"]
            for detail in pushed
            for v in detail["village_deliveries"]
            for s in v["speakers"]
            if s["code"] == code
        ]
        assert "playing" in states, (code, states)
        assert states.index("playing") < states.index("played"), (code, states)
