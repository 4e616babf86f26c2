"""End to end: the gateway process, a real Mosquitto and a simulated Jinju (358 villages)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from devices.simulator import Fleet
from gateway.settings import MqttTarget
from tests.e2e.conftest import Report
from tests.e2e.harness import GatewayProcess, PlayLog, fleet_for, wait_online, wait_until_final
from tests.media import make_recording
from tests.support.databases import seed_database
from wire import contract

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={"GATEWAY_ACK_TIMEOUT_S": "20"},
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "phone.m4a", "m4a", seconds=2.0)
    return path.read_bytes()


async def _publish_forgery(mqtt_url: str, total: int, fleet: Fleet) -> None:
    """An unsigned disaster alert published straight to the broker: every speaker refuses it."""
    target = MqttTarget(mqtt_url)
    now = contract.now_ms()
    forged = contract.Command(
        type="play",
        id=contract.new_id(),
        broadcast_id=contract.new_id(),
        city="jinju",
        scope=contract.Scope(kind="all"),
        category=contract.Category.DISASTER,
        priority=40,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
        nonce=contract.new_nonce(),
        audio=(
            contract.inline_audio(
                codec=contract.Codec.OPUS, mime_type="audio/ogg", data=b"OggS", duration_ms=1000
            ),
        ),
    )
    async with aiomqtt.Client(
        target.host, target.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as attacker:
        await attacker.publish(
            contract.command_topic_all("jinju"), contract.encode_command(forged), qos=1
        )
    async with asyncio.timeout(60):
        while fleet.stats().rejected < total:  # noqa: ASYNC110 - polling counters
            await asyncio.sleep(0.05)


async def _broadcast(client: httpx.AsyncClient, recording: bytes, **form: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", **form},
        files={"file": ("phone.m4a", recording, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_city_wide_broadcast_is_played_by_every_speaker(
    gateway: GatewayProcess, mqtt_url: str, recording: bytes
) -> None:
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=8.0)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total)
            created = await _broadcast(client, recording)
            assert created["villages"]["total"] == 358
            final = await wait_until_final(client, created["id"])
            await _publish_forgery(mqtt_url, total, fleet)
        finally:
            await fleet.stop()
    assert final["state"] == "completed"
    assert final["speakers"]["played"] == final["speakers"]["total"] == total
    assert final["villages"]["played"] == 358
    assert all(s.played == 1 for s in fleet), "every speaker played exactly once, forgery never"


async def test_offline_speakers_are_named_exactly(
    gateway: GatewayProcess, mqtt_url: str, recording: bytes
) -> None:
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=8.0, offline_ratio=0.1)
        try:
            away = set(fleet.offline_ids)
            total = len(fleet.speakers)
            assert 0 < len(away) < total
            await wait_online(client, total - len(away))
            created = await _broadcast(client, recording, expires_in_s=30)
            final = await wait_until_final(client, created["id"], limit_s=180)
        finally:
            await fleet.stop()
    speakers = [s for v in final["village_deliveries"] for s in v["speakers"]]
    missed = {s["code"] for s in speakers if s["state"] != "played"}
    assert missed == away
    assert all(s["reason"] == "offline" for s in speakers if s["code"] in away)
    counts = final["speakers"]
    assert counts["played"] == total - len(away)
    assert counts["expired"] == len(away)
    expected = {"played": 0, "partial": 0, "missed": 0}
    for village in final["village_deliveries"]:
        codes = {s["code"] for s in village["speakers"]}
        gone = len(codes & away)
        key = "played" if gone == 0 else "missed" if gone == len(codes) else "partial"
        expected[key] += 1
        assert village["outcome"] == key
    assert {k: final["villages"][k] for k in expected} == expected


@pytest.mark.faults
async def test_killing_the_gateway_mid_fan_out_loses_and_doubles_nothing(
    gateway: GatewayProcess, mqtt_url: str, recording: bytes, report: Report
) -> None:
    plays = PlayLog()
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=1.0)
        plays.attach(fleet)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total)
            created = await _broadcast(client, recording)
            async with asyncio.timeout(60):
                while sum(s.received for s in fleet) == 0:  # noqa: ASYNC110 - polling counters
                    await asyncio.sleep(0.02)
            gateway.kill()
            assert sum(s.played for s in fleet) < total, "killed before the fan-out finished"
            await gateway.start()
            final = await wait_until_final(client, created["id"])
        finally:
            await fleet.stop()
    everyone = set(fleet.speakers)
    tally = plays.tally(final, should_play=everyone, simulated=everyone)
    report("gateway killed mid fan-out", tally)
    assert final["speakers"]["played"] == total
    assert final["villages"]["played"] == 358
    assert all(s.played == 1 for s in fleet), "nothing played twice"
    assert (tally.lost, tally.duplicated, tally.stale) == (0, 0, 0)


async def test_cancel_stops_speakers_that_are_playing(
    gateway: GatewayProcess, mqtt_url: str, tmp_path: Path
) -> None:
    # A minute long: however slow a loaded machine is between the first play and the cancel,
    # nobody reaches the end of it.
    long_clip = make_recording(tmp_path / "long.m4a", "m4a", seconds=60.0).read_bytes()
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=1.0)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total)
            created = await _broadcast(client, long_clip)
            async with asyncio.timeout(60):
                while sum(1 for s in fleet if s.received) < total:  # noqa: ASYNC110 - counters
                    await asyncio.sleep(0.05)
            response = await client.post(f"/api/v1/broadcasts/{created['id']}/cancel")
            assert response.status_code == 200, response.text
            final = await wait_until_final(client, created["id"])
            async with asyncio.timeout(60):
                while fleet.stats().failed < total:  # noqa: ASYNC110 - every speaker stopped
                    await asyncio.sleep(0.05)
        finally:
            await fleet.stop()
    assert final["state"] == "cancelled"
    assert final["speakers"]["cancelled"] == total, final["speakers"]
    assert sum(s.played for s in fleet) == 0, "nobody plays a cancelled message to the end"
