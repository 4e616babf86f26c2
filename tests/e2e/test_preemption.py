"""End to end: priority pre-emption and expiry, with the gateway process, a real Mosquitto and
simulated speakers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from devices.link_settings import BrokerAddress
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from tests.devices.observer import Observer
from tests.e2e.harness import GatewayProcess, wait_online, wait_until_final
from tests.media import make_recording
from tests.support.databases import seed_database
from wire import contract
from wire.contract import SpeakerIdentity

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CITY = "jinju"
# Real time: a 12-second notice plays long enough for an alert to be uploaded and sent meanwhile.
SPEED = 1.0


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code=CITY
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        city_code=CITY,
        extra_env={"GATEWAY_ACK_TIMEOUT_S": "20"},
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def observer(mqtt_url: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, CITY) as watching:
        yield watching


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "long": make_recording(folder / "long.m4a", "m4a", seconds=12.0).read_bytes(),
        "alert": make_recording(folder / "alert.m4a", "m4a", seconds=6.0, seed=11).read_bytes(),
        "short": make_recording(folder / "short.m4a", "m4a", seconds=2.0).read_bytes(),
    }


async def _fleet(client: httpx.AsyncClient, mqtt_url: str, gateway_url: str) -> Fleet:
    fleet = (await client.get("/api/v1/speakers/fleet")).json()
    keys = {
        k["key_id"]: base64.b64decode(k["public_key"])
        for k in (await client.get("/api/v1/keys")).json()
    }
    speakers = [
        SimSpeaker(
            identity=SpeakerIdentity(
                city=fleet["city_code"],
                district=s["district_code"],
                village=s["village_code"],
                speaker=s["code"],
            ),
            codecs=tuple(s["codecs"]),
        )
        for s in fleet["items"]
    ]
    config = FleetConfig(
        mqtt_url=mqtt_url, gateway_url=gateway_url, seed=5, public_keys=keys, speed=SPEED
    )
    simulated = Fleet(config)
    await simulated.start(speakers)
    return simulated


async def _village_with_two_speakers(client: httpx.AsyncClient) -> tuple[int, list[str]]:
    villages = (await client.get("/api/v1/villages", params={"limit": 100})).json()["items"]
    for village in villages:
        found = await client.get("/api/v1/speakers", params={"village_id": village["id"]})
        codes = sorted(s["code"] for s in found.json()["items"])
        if len(codes) == 2:
            return village["id"], codes
    raise AssertionError("the tiny preset has a village with two speakers")


async def _broadcast(
    client: httpx.AsyncClient, clip: bytes, category: str, village_id: int, **form: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": category, "village_ids": [village_id], **form},
        files={"file": ("clip.m4a", clip, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _until(check: Callable[[], Awaitable[bool]], *, limit_s: float = 60.0) -> None:
    """Poll a condition on the gateway until it holds (a bound so a broken run ends)."""
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110 - polling the gateway over HTTP
            await asyncio.sleep(0.2)


def _statuses(observer: Observer, broadcast_id: str, speaker: str) -> list[str]:
    """The speaker's acks for a broadcast in the order it sent them, repeats folded."""
    statuses: list[str] = []
    for ack in observer.acks:
        mine = ack.broadcast_id == broadcast_id and ack.speaker == speaker
        if mine and (not statuses or statuses[-1] != ack.status.value):
            statuses.append(ack.status.value)
    return statuses


def _speaker_acks(observer: Observer, speaker: str) -> list[tuple[str, str]]:
    return [(a.broadcast_id, a.status.value) for a in observer.acks if a.speaker == speaker]


async def test_a_disaster_preempts_a_playing_broadcast_which_plays_again_after(
    gateway: GatewayProcess, mqtt_url: str, observer: Observer, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client:
        fleet = await _fleet(client, mqtt_url, gateway.url)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total, exactly=True)
            village_id, codes = await _village_with_two_speakers(client)
            admin = await _broadcast(client, clips["long"], "administrative", village_id)
            await observer.until(
                lambda: all("playing" in _statuses(observer, admin["id"], code) for code in codes),
                within=60,
            )
            disaster = await _broadcast(client, clips["alert"], "disaster", village_id)
            assert disaster["priority"] > admin["priority"]

            async def admin_preempted() -> bool:
                summary = (
                    await client.get(f"/api/v1/broadcasts/{admin['id']}", params={"detail": False})
                ).json()
                return bool(summary["speakers"]["preempted"] == len(codes))

            # The gateway shows the interrupted deliveries as preempted while the alert plays.
            await _until(admin_preempted)
            first = await wait_until_final(client, disaster["id"], limit_s=120)
            second = await wait_until_final(client, admin["id"], limit_s=120)
        finally:
            await fleet.stop()

    for final in (first, second):
        assert final["state"] == "completed"
        assert final["speakers"]["played"] == final["speakers"]["total"] == len(codes)
        assert final["speakers"]["preempted"] == 0
        assert final["villages"]["played"] == 1
    admin_id, disaster_id = admin["id"], disaster["id"]
    for code in codes:
        assert _statuses(observer, admin_id, code) == [
            "received",
            "playing",
            "preempted",
            "playing",
            "played",
        ]
        assert _statuses(observer, disaster_id, code) == ["received", "playing", "played"]
        # On the speaker: interrupted, then the alert played to the end, then the notice.
        seen = _speaker_acks(observer, code)
        replayed = max(i for i, ack in enumerate(seen) if ack == (admin_id, "playing"))
        assert (
            seen.index((admin_id, "preempted"))
            < seen.index((disaster_id, "playing"))
            < seen.index((disaster_id, "played"))
            < replayed
            < seen.index((admin_id, "played"))
        )
        (played,) = [
            a
            for a in observer.acks
            if a.speaker == code and a.broadcast_id == admin_id and a.status == "played"
        ]
        # The proof is for the whole clip, played again from the start.
        assert played.played_ms is not None
        assert abs(played.played_ms - second["duration_ms"]) < 500
        simulated = fleet.speaker(code)
        assert (simulated.preempted, simulated.played) == (1, 2)
    assert all(s.played == 0 for s in fleet if s.id not in codes)


@contextlib.asynccontextmanager
async def _command_capture(mqtt_url: str) -> AsyncIterator[list[bytes]]:
    """Every command published in the city, as the broker hands it out."""
    broker = BrokerAddress.parse(mqtt_url)
    captured: list[bytes] = []
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"capture-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(f"{contract.TOPIC_ROOT}/{CITY}/cmd/#", qos=1)

        async def read() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                captured.append(message.payload)

        reader = asyncio.create_task(read(), name="command-capture")
        try:
            yield captured
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_a_speaker_back_after_expiry_never_plays_the_broadcast(
    gateway: GatewayProcess, mqtt_url: str, observer: Observer, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client, _command_capture(mqtt_url) as captured:
        fleet = await _fleet(client, mqtt_url, gateway.url)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total, exactly=True)
            village_id, (present, away) = await _village_with_two_speakers(client)
            await fleet.speaker(away).go_offline()
            await wait_online(client, total - 1, exactly=True)

            created = await _broadcast(
                client, clips["short"], "village_notice", village_id, expires_in_s=30
            )
            final = await wait_until_final(client, created["id"], limit_s=120)
            states = {s["code"]: s for v in final["village_deliveries"] for s in v["speakers"]}
            assert states[present]["state"] == "played"
            assert (states[away]["state"], states[away]["reason"]) == ("expired", "offline")

            # Back after the expiry: whatever the broker kept, and even the very command sent
            # to it again, is refused as expired, never played.
            assert await fleet.speaker(away).go_online()
            payload = next(
                p for p in captured if contract.decode_command(p).broadcast_id == created["id"]
            )
            command_id = contract.decode_command(payload).id
            await observer.publish(contract.command_topic_speaker(CITY, away), payload)
            await observer.until(
                lambda: (away, "rejected") in observer.counts(command_id), within=60
            )
            await wait_online(client, total, exactly=True)
            after = (await client.get(f"/api/v1/broadcasts/{created['id']}")).json()
        finally:
            await fleet.stop()

    refused = [a for a in observer.of(command_id) if a.speaker == away]
    assert {(a.status.value, a.reason) for a in refused} == {("rejected", "expired")}
    assert fleet.speaker(away).played == 0
    assert fleet.speaker(present).played == 1
    states = {s["code"]: s for v in after["village_deliveries"] for s in v["speakers"]}
    assert states[away]["state"] == "expired"
    assert after["speakers"]["expired"] == 1
    assert after["villages"]["partial"] == 1
