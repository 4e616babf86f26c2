"""Catch-up: a speaker comes back to 100 broadcasts it missed; how long until it has acked them
all `received` (from starting it, through its birth, the catch-up and the publishes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from bench.city import CITY, FLEET_HEARTBEAT_S, GATEWAY_ENV, seed_database
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from gateway.settings import MqttTarget
from tests.e2e.harness import GatewayProcess
from wire import contract
from wire.contract import AckStatus, SpeakerIdentity

PENDING = 100


def _pending_publications(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT count(*) FROM publications WHERE state = 'pending'").fetchone()
    return int(row[0])


async def _backlog(client: httpx.AsyncClient, recording: bytes, count: int) -> None:
    for n in range(count):
        response = await client.post(
            "/api/v1/broadcasts",
            data={"category": "administrative", "all_villages": "true", "title": f"밀린 {n}"},
            files={"file": ("phone.m4a", recording, "audio/mp4")},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code != 201:
            raise RuntimeError(f"broadcast refused: {response.status_code} {response.text}")


async def _speaker(client: httpx.AsyncClient) -> tuple[SimSpeaker, dict[str, bytes]]:
    page = (await client.get("/api/v1/speakers/fleet")).json()
    items = page["items"] if isinstance(page, dict) else page
    [item] = items
    keys = {
        k["key_id"]: base64.b64decode(k["public_key"])
        for k in (await client.get("/api/v1/keys")).json()
    }
    identity = SpeakerIdentity(
        city=CITY,
        district=item["district_code"],
        village=item["village_code"],
        speaker=item["code"],
    )
    return SimSpeaker(identity=identity, codecs=tuple(item["codecs"])), keys


async def _all_received(mqtt_url: str, code: str, count: int, ready: asyncio.Event) -> None:
    """Returns once `code` has acked `received` for `count` distinct broadcasts."""
    target = MqttTarget(mqtt_url)
    received: set[str] = set()
    async with aiomqtt.Client(
        target.host,
        target.port,
        identifier=f"bench-catchup-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(contract.ack_topic(CITY, code), qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            ack = contract.decode_ack(message.payload)
            if ack.status is AckStatus.RECEIVED:
                received.add(ack.broadcast_id)
                if len(received) >= count:
                    return


async def run_catchup_bench(folder: Path, mqtt_url: str, recording: bytes) -> dict[str, Any]:
    """One speaker, offline while `PENDING` broadcasts to the city go out; then it returns."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    url = await seed_database(folder, 1)
    gateway = GatewayProcess(
        database_url=url,
        mqtt_url=mqtt_url,
        data_dir=folder,
        city_code=CITY,
        extra_env=GATEWAY_ENV,
    )
    await gateway.start()
    fleet: Fleet | None = None
    try:
        async with gateway.client() as client:
            simulated, keys = await _speaker(client)
            await _backlog(client, recording, PENDING)
            async with asyncio.timeout(120):
                while _pending_publications(folder / "maeul.db"):  # noqa: ASYNC110 - polling a file
                    await asyncio.sleep(0.1)
            ready = asyncio.Event()
            listener = asyncio.create_task(
                _all_received(mqtt_url, simulated.identity.speaker, PENDING, ready)
            )
            try:
                await ready.wait()
                fleet = Fleet(
                    FleetConfig(
                        mqtt_url=mqtt_url,
                        gateway_url=gateway.url,
                        seed=3,
                        speed=50.0,
                        public_keys=keys,
                        heartbeat_s=FLEET_HEARTBEAT_S,
                    )
                )
                started = time.perf_counter()
                await fleet.start([simulated])
                async with asyncio.timeout(180):
                    await asyncio.shield(listener)
                elapsed_ms = (time.perf_counter() - started) * 1000
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
    finally:
        if fleet is not None:
            await fleet.stop()
        gateway.stop()
    return {"pending": PENDING, "speakers": 1, "pending_100_ms": round(elapsed_ms, 1)}
