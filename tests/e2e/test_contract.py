"""End to end, the contract as a vendor reads it: a key rotation does not silence the simulated
fleet, and every message the gateway and the speakers exchange follows openapi/asyncapi.yaml."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices import speaker as speaker_core
from maeul.live import LiveClient, opus_packets
from tests.devices.commands import command, new_keys
from tests.devices.observer import Observer
from tests.e2e.harness import (
    TOKEN,
    GatewayProcess,
    broadcast_to,
    fleet_for,
    speaker_states,
    wait_online,
    wait_until_final,
)
from tests.e2e.wire_check import Document, WireRecorder
from tests.media import make_recording
from tests.support.databases import seed_database
from wire import contract
from wire.contract import AckStatus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CITY = "jinju"


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code=CITY
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        city_code=CITY,
        extra_env={
            "GATEWAY_ACK_TIMEOUT_S": "20",
            "GATEWAY_LIVE_GRACE_S": "1",
            "GATEWAY_LIVE_JITTER_MS": "250",
            "GATEWAY_POLL_INTERVAL_S": "0.2",
        },
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "short": make_recording(folder / "short.m4a", "m4a", seconds=2.0).read_bytes(),
        "long": make_recording(folder / "long.m4a", "m4a", seconds=30.0, seed=7).read_bytes(),
    }


async def _villages(client: httpx.AsyncClient) -> list[int]:
    page = (await client.get("/api/v1/villages", params={"limit": 100})).json()
    return [v["id"] for v in page["items"]]


async def test_a_key_rotation_does_not_silence_the_fleet(
    gateway: GatewayProcess, mqtt_url: str, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client:
        # The fleet trusts the keys the gateway had when it started, as `make run` does.
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=10)
        try:
            await wait_online(client, len(fleet.speakers), exactly=True)
            rotated = await client.post("/api/v1/keys/rotate")
            assert rotated.status_code == 201, rotated.text
            created = await broadcast_to(client, clips["short"], await _villages(client))
            summary = await wait_until_final(client, created["id"], limit_s=120)
        finally:
            await fleet.stop()
    states = speaker_states(summary)
    assert states, "the broadcast reached speakers"
    assert {code: state for code, (state, _) in states.items()} == dict.fromkeys(
        states, "played"
    ), "every speaker played the first broadcast signed with the new key"
    assert all(s.played == 1 for s in fleet if s.id in states)


def _all_played(summary: dict[str, Any]) -> dict[str, str]:
    states = speaker_states(summary)
    assert states, "the broadcast reached speakers"
    return {code: state for code, (state, _) in states.items() if state != "played"}


async def test_a_forged_unknown_key_does_not_make_the_fleet_refuse_a_rotated_key(
    gateway: GatewayProcess, mqtt_url: str, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client, Observer(mqtt_url, CITY) as observer:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=10)
        try:
            await wait_online(client, len(fleet.speakers), exactly=True)
            # Someone holding the gateway's broker password sends one speaker a command under a
            # key id nobody ever issued; the fleet asks the key ring for it and refuses it.
            target = next(iter(fleet.speakers))
            bogus = contract.sign_command(
                command(city=CITY, at_ms=contract.now_ms()),
                key_id="bogus-key",
                private_key=new_keys("bogus-key").private,
            )
            await observer.publish(contract.command_topic_speaker(CITY, target), bogus)
            await observer.until(lambda: bool(observer.of(bogus.id)), 60)
            assert [(a.status, a.reason) for a in observer.of(bogus.id)] == [
                (AckStatus.REJECTED, "unknown_key")
            ]
            # Rotated and broadcast to the whole city at once, within the same minute.
            rotated = await client.post("/api/v1/keys/rotate")
            assert rotated.status_code == 201, rotated.text
            created = await broadcast_to(client, clips["short"], await _villages(client))
            summary = await wait_until_final(client, created["id"], limit_s=120)
        finally:
            await fleet.stop()
    assert _all_played(summary) == {}, "every speaker played the alert under the new key"


async def test_a_flood_of_forged_keys_during_a_rotation_does_not_silence_the_fleet(
    gateway: GatewayProcess, mqtt_url: str, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client, Observer(mqtt_url, CITY) as observer:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=10)
        try:
            await wait_online(client, len(fleet.speakers), exactly=True)
            # Someone with the gateway's broker password floods the whole city with commands,
            # each under a key id nobody issued, while the key is rotated and an alert goes out.
            forged = [
                contract.sign_command(
                    command(city=CITY, at_ms=contract.now_ms()),
                    key_id=f"bogus-{n}",
                    private_key=new_keys(f"bogus-{n}").private,
                )
                for n in range(120)
            ]
            for n, bogus in enumerate(forged):
                await observer.publish(contract.command_topic_all(CITY), bogus)
                if n == 40:
                    rotated = await client.post("/api/v1/keys/rotate")
                    assert rotated.status_code == 201, rotated.text
                    created = await broadcast_to(client, clips["short"], await _villages(client))
            summary = await wait_until_final(client, created["id"], limit_s=240)
        finally:
            await fleet.stop()
    assert _all_played(summary) == {}, "every speaker played the alert under the new key"
    # The flood is not echoed back one refusal per forged command per speaker: each speaker
    # sends its budget (and what refills while the flood lasts), then stays silent.
    refusals = sum(len(observer.of(bogus.id)) for bogus in forged)
    assert speaker_core.REFUSAL_BUDGET <= refusals < len(forged) * len(fleet.speakers) // 2


async def test_rotations_in_quick_succession_do_not_silence_the_fleet(
    gateway: GatewayProcess, mqtt_url: str, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=10)
        try:
            await wait_online(client, len(fleet.speakers), exactly=True)
            villages = await _villages(client)
            summaries = []
            # Two rotations in a row, a broadcast; another rotation, another broadcast at once.
            for rotations in (2, 1):
                for _ in range(rotations):
                    rotated = await client.post("/api/v1/keys/rotate")
                    assert rotated.status_code == 201, rotated.text
                created = await broadcast_to(client, clips["short"], villages)
                summaries.append(await wait_until_final(client, created["id"], limit_s=120))
        finally:
            await fleet.stop()
    assert [_all_played(summary) for summary in summaries] == [{}, {}]


async def test_every_message_on_the_wire_follows_the_asyncapi_document(
    gateway: GatewayProcess,
    mqtt_url: str,
    clips: dict[str, bytes],
    tmp_path: Path,
) -> None:
    document = Document()
    speech = opus_packets(make_recording(tmp_path / "speech.m4a", "m4a", seconds=1.0))
    async with (
        WireRecorder(mqtt_url) as wire,
        Observer(mqtt_url, CITY) as observer,
        gateway.client() as client,
    ):
        # Heartbeats every second, so a short run sees some.
        fleet = await fleet_for(client, mqtt_url, gateway.url, speed=10, heartbeat_s=1.0)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total, exactly=True)
            villages = await _villages(client)
            # A recorded broadcast, played to the end.
            played = await broadcast_to(client, clips["short"], villages[:2])
            await wait_until_final(client, played["id"], limit_s=120)
            # A long one, cancelled while it plays.
            long = await broadcast_to(client, clips["long"], villages[:1])
            await observer.until(
                lambda: any(
                    a.broadcast_id == long["id"] and a.status is AckStatus.PLAYING
                    for a in observer.acks
                ),
                60,
            )
            cancelled = await client.post(f"/api/v1/broadcasts/{long['id']}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            await wait_until_final(client, long["id"], limit_s=60)
            # A live talk to one village.
            talk = LiveClient(gateway.url, TOKEN)
            try:
                await talk.open(
                    {"category": "village_notice", "village_ids": villages[:1], "format": "opus"}
                )
                await talk.wait_for("ready", 30)
                await talk.send_paced(speech)
                ended = await talk.stop()
            finally:
                await talk.close()
            await wait_until_final(client, ended["broadcast_id"], limit_s=60)
            # A speaker that drops off: the broker publishes its will.
            away = sorted(fleet.speakers)[0]
            await fleet.speaker(away).go_offline()
            await wait_online(client, total - 1, exactly=True)
            await asyncio.sleep(1.5)  # one more round of heartbeats
        finally:
            await fleet.stop()
        seen = list(wire.seen)

    kinds = wire.kinds()
    assert {"cmd", "ack", "presence", "live"} <= set(kinds), kinds
    statuses = {a.status.value for a in observer.acks}
    assert {"received", "playing", "played", "failed"} <= statuses, statuses
    presence = [s.payload for s in seen if "/presence/" in s.topic]
    for status in (b'"online"', b'"heartbeat"', b'"offline"'):
        assert any(status in p for p in presence), status
    problems = [p for message in seen for p in document.problems(message)]
    assert not problems, "\n".join(problems[:20])
