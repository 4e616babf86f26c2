"""Scale-out benchmark (BENCH_FULL=1): gateway replicas on one PostgreSQL and one broker.

The same 10,000-speaker fleet and database are measured with one replica, then with two: a
broadcast to every village is created on one replica (alternating), and the clock runs until
the record shows every speaker `received`, `played`, and the broadcast completed. Acks reach
the replicas through the shared subscription; each replica's share is reported.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.city import CITY, FLEET_HEARTBEAT_S, GATEWAY_ENV, _seed_uniform, rss_mb
from bench.stats import summary
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from gateway.db import create_engine, create_sessions
from gateway.migrations import upgrade_async
from tests.e2e.harness import (
    GatewayProcess,
    intake_count,
    metrics,
)
from tests.support import postgres
from tests.support.postgres import PostgresDatabase
from wire.contract import SpeakerIdentity


async def _seeded_postgres(database: PostgresDatabase, speakers: int) -> str:
    await database.create()
    url = database.url
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            await _seed_uniform(session, speakers)
            await session.commit()
    finally:
        await engine.dispose()
    return url


async def _fleet(client: httpx.AsyncClient, mqtt_url: str, gateway_url: str) -> Fleet:
    page = (await client.get("/api/v1/speakers/fleet")).json()
    items = page["items"] if isinstance(page, dict) else page
    keys = {
        k["key_id"]: base64.b64decode(k["public_key"])
        for k in (await client.get("/api/v1/keys")).json()
    }
    fleet = Fleet(
        FleetConfig(
            mqtt_url=mqtt_url,
            gateway_url=gateway_url,
            seed=3,
            speed=50.0,
            public_keys=keys,
            heartbeat_s=FLEET_HEARTBEAT_S,
        )
    )
    await fleet.start(
        [
            SimSpeaker(
                identity=SpeakerIdentity(
                    city=CITY,
                    district=s["district_code"],
                    village=s["village_code"],
                    speaker=s["code"],
                ),
                codecs=tuple(s["codecs"]),
            )
            for s in items
        ]
    )
    return fleet


async def _wait_online(client: httpx.AsyncClient, count: int) -> None:
    async with asyncio.timeout(600):
        while True:
            response = await client.get("/api/v1/speakers", params={"online": "true", "limit": 1})
            if response.status_code == 200 and response.json()["total"] >= count:
                return
            await asyncio.sleep(0.5)


async def _round(client: httpx.AsyncClient, recording: bytes) -> tuple[float, float, float]:
    """One broadcast to every village, timed from its 201 by the record (what the replicas
    wrote, acks from both included): ms until every speaker was recorded as having received
    it, as having played it, and until the broadcast completed."""
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("phone.m4a", recording, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    started = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"broadcast refused: {response.status_code} {response.text}")
    broadcast_id = str(response.json()["id"])
    received: float | None = None
    played: float | None = None
    async with asyncio.timeout(300):
        while True:
            status = await client.get(
                f"/api/v1/broadcasts/{broadcast_id}", params={"detail": "false"}
            )
            if status.status_code == 200:
                body = status.json()
                counts = body["speakers"]
                now = (time.perf_counter() - started) * 1000
                if received is None and counts["queued"] + counts["sent"] == 0:
                    received = now
                if played is None and counts["played"] == counts["total"]:
                    played = now
                if body["state"] == "completed":
                    return received or now, played or now, now
            await asyncio.sleep(0.1)


async def _measure(
    clients: list[httpx.AsyncClient], recording: bytes, rounds: int, warmup: int
) -> dict[str, Any]:
    received: list[float] = []
    played: list[float] = []
    completed: list[float] = []
    before = [intake_count(await metrics(c), "acks_applied") for c in clients]
    for index in range(warmup + rounds):
        r, p, c = await _round(clients[index % len(clients)], recording)
        if index >= warmup:
            received.append(r)
            played.append(p)
            completed.append(c)
        await asyncio.sleep(0.5)
    after = [intake_count(await metrics(c), "acks_applied") for c in clients]
    return {
        "replicas": len(clients),
        "received_ms": summary(received),
        "played_ms": summary(played),
        "completed_ms": summary(completed),
        "acks_per_replica": [int(a - b) for a, b in zip(after, before, strict=True)],
    }


async def run_replicas_bench(
    folder: Path, mqtt_url: str, recording: bytes, *, speakers: int, rounds: int, warmup: int
) -> dict[str, Any]:
    """One replica, then two, on the same PostgreSQL database, broker and fleet."""
    database = PostgresDatabase(postgres.unique_name("maeul_bench"))
    url = await _seeded_postgres(database, speakers)
    replicas = [
        GatewayProcess(
            database_url=url,
            mqtt_url=mqtt_url,
            data_dir=folder / f"replica-{tag}",
            city_code=CITY,
            extra_env={**GATEWAY_ENV, "GATEWAY_REPLICA_ID": f"bench-{tag}"},
        )
        for tag in ("a", "b")
    ]
    result: dict[str, Any] = {"speakers": speakers, "database": "postgresql"}
    try:
        async with contextlib.AsyncExitStack() as stack:
            for replica in replicas:
                replica.data_dir.mkdir(parents=True, exist_ok=True)
                stack.callback(replica.stop)
            first, second = replicas
            await first.start()
            one = await stack.enter_async_context(first.client())
            fleet = await _fleet(one, mqtt_url, first.url)
            stack.push_async_callback(fleet.stop)
            await _wait_online(one, speakers)
            result["one"] = await _measure([one], recording, rounds, warmup)
            # The second replica joins: the shared subscription now splits the acks.
            await second.start()
            other = await stack.enter_async_context(second.client())
            result["two"] = await _measure([one, other], recording, rounds, warmup)
            assert first.process is not None
            assert second.process is not None
            result["rss_mb"] = [rss_mb(first.process.pid), rss_mb(second.process.pid)]
    except BaseException:
        for replica in replicas:
            sys.stderr.write(f"--- {replica.data_dir.name} log ---\n{replica.log_tail()}\n")
        raise
    finally:
        await database.drop()
    return result


def main() -> int:
    """Only this scenario: `python -m bench.replicas` (BENCH_ROUNDS=n, default 3)."""
    import json
    import os
    import tempfile

    from maeul.broker import LocalMosquitto
    from maeul.broker_config import MosquittoConfig, raise_nofile_limit
    from tests.media import make_recording

    if not PostgresDatabase.reachable():
        where = f"{postgres.host()}:{postgres.port()}"
        sys.stderr.write(f"PostgreSQL not reachable on {where}; nothing measured\n")
        return 1
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    raise_nofile_limit()

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="maeul-bench-") as scratch:
            folder = Path(scratch)
            clip = make_recording(folder / "phone.m4a", "m4a", seconds=10.0).read_bytes()
            async with LocalMosquitto(MosquittoConfig(data_dir=folder / "mosquitto")) as broker:
                return await run_replicas_bench(
                    folder, broker.url, clip, speakers=10_000, rounds=rounds, warmup=1
                )

    sys.stdout.write(json.dumps(asyncio.run(run()), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
