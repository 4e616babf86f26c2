"""Fault scenarios end to end: whatever fails, every speaker plays each broadcast once, or the
record says exactly which did not and why.

Each scenario counts, from the speakers' own plays and the gateway's record, the deliveries
lost, duplicated and stale (started after expiry); all must be zero. The gateway killed in the
middle of a fan-out is in test_jinju.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from maeul.broker import MosquittoProcess
from maeul.broker_config import MosquittoConfig
from tests.e2e.conftest import Report
from tests.e2e.harness import (
    GatewayProcess,
    PlayLog,
    broadcast_to,
    fleet_for,
    forget_gateway_session,
    intake_count,
    metrics,
    pick_villages,
    speaker_states,
    wait_online,
    wait_until_final,
)
from tests.e2e.rogue import GARBAGE, Misbehaviour, RogueSpeaker
from tests.e2e.test_jinju import _broadcast
from tests.media import make_recording
from tests.support.databases import seed_database
from tests.support.people import log_in
from tests.support.postgres import PostgresDatabase, fresh_postgres
from wire.contract import SpeakerIdentity

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    with MosquittoProcess(MosquittoConfig(data_dir=tmp_path / "mqtt")) as broker:
        yield broker


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresDatabase]:
    async with fresh_postgres(
        "maeul_faults", needed_for="PostgreSQL fault scenario skipped"
    ) as database:
        yield database


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "phone.m4a", "m4a", seconds=4.0)
    return path.read_bytes()


async def _until(condition: Any, *, within: float = 120.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling the fleet's counters
            await asyncio.sleep(0.05)


# -- 2. The broker restarts in the middle of a broadcast ----------------------------------------


async def test_a_broker_restart_mid_broadcast_loses_and_doubles_nothing(
    report: Report, tmp_path: Path, own_broker: MosquittoProcess
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"),
        mqtt_url=own_broker.url,
        data_dir=tmp_path,
        # The default number of attempts: retries wait while a speaker's presence is in doubt
        # after the restart, and its birth brings the catch-up, however slowly it reconnects.
        extra_env={"GATEWAY_ACK_TIMEOUT_S": "5", "GATEWAY_RETRY_BACKOFF_S": "1"},
    )
    await gateway.start()
    recording = make_recording(tmp_path / "clip.m4a", "m4a", seconds=6.0).read_bytes()
    plays = PlayLog()
    try:
        async with gateway.client() as client:
            fleet = await fleet_for(client, own_broker.url, gateway.url, speed=2.0)
            plays.attach(fleet)
            try:
                total = len(fleet.speakers)
                await wait_online(client, total)
                created = await _broadcast(client, recording)
                await _until(lambda: sum(s.received for s in fleet) > 0, within=60)
                await asyncio.to_thread(own_broker.restart)
                final = await wait_until_final(client, created["id"], limit_s=240)
            finally:
                await fleet.stop()
    finally:
        gateway.stop()
    everyone = set(fleet.speakers)
    tally = plays.tally(final, should_play=everyone, simulated=everyone)
    report("broker restart", tally)
    assert final["speakers"]["played"] == total, final["speakers"]
    assert final["villages"]["played"] == 358
    assert (tally.lost, tally.duplicated, tally.stale) == (0, 0, 0)


# -- 3. The database goes away for a while -------------------------------------------------------


async def _answers_during_outage(
    client: httpx.AsyncClient, broadcast_id: str, clip: bytes, village_ids: list[int]
) -> dict[str, httpx.Response]:
    import uuid

    return {
        "summary": await client.get(f"/api/v1/broadcasts/{broadcast_id}"),
        "history": await client.get("/api/v1/broadcasts"),
        "speakers": await client.get("/api/v1/speakers"),
        "create": await client.post(
            "/api/v1/broadcasts",
            data={"category": "administrative", "village_ids": village_ids},
            files={"file": ("phone.m4a", clip, "audio/mp4")},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ),
        "login": await log_in(client, "nobody", "wrong"),
        "ready": await client.get("/readyz"),
    }


async def test_a_database_outage_answers_503_and_loses_no_ack(
    report: Report, tmp_path: Path, mqtt_url: str, postgres: PostgresDatabase, clip: bytes
) -> None:
    await seed_database(postgres.url)
    gateway = GatewayProcess(
        database_url=postgres.url,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={"GATEWAY_ACK_TIMEOUT_S": "20", "GATEWAY_STATUS_MAX_STALE_S": "0"},
    )
    await gateway.start()
    plays = PlayLog()
    try:
        async with gateway.client() as client:
            villages = await pick_villages(client, 30)
            fleet = await fleet_for(
                client,
                mqtt_url,
                gateway.url,
                only=lambda s: s["village_code"] in villages.values(),
                speed=1.0,
            )
            plays.attach(fleet)
            try:
                total = len(fleet.speakers)
                await wait_online(client, total)
                created = await broadcast_to(client, clip, villages)
                await _until(lambda: sum(s.received for s in fleet) > 0)
                await postgres.take_away()
                try:
                    await asyncio.sleep(1.0)  # past the summary cache's freshness
                    answers = await _answers_during_outage(client, created["id"], clip, [*villages])
                    # Every speaker finishes and acks while the database is still away.
                    await _until(lambda: sum(s.played for s in fleet) == total)
                    await asyncio.sleep(1.0)
                    during = await metrics(client)
                finally:
                    await postgres.give_back()
                final = await wait_until_final(client, created["id"])
                after = await metrics(client)
                assert gateway.process is not None
                assert gateway.process.poll() is None, "recovered without a restart"
            finally:
                await fleet.stop()
    finally:
        gateway.stop()

    for name, response in answers.items():
        assert response.status_code == 503, (name, response.status_code, response.text)
        if name != "ready":
            assert response.json()["error"] == "database_unavailable", (name, response.text)
    assert intake_count(during, "batch_retries") > 0, "acks arrived while the database was away"
    everyone = set(fleet.speakers)
    tally = plays.tally(final, should_play=everyone, simulated=everyone)
    report("database outage", tally)
    assert final["speakers"]["played"] == total
    assert (tally.lost, tally.duplicated, tally.stale) == (0, 0, 0)
    assert intake_count(after, "acks_applied") >= total


# -- 4. A tenth of the speakers away for 30 seconds ------------------------------------------------


async def test_offline_speakers_catch_up_before_expiry_and_never_after(
    report: Report, tmp_path: Path, mqtt_url: str, clip: bytes
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={"GATEWAY_ACK_TIMEOUT_S": "10"},
    )
    await gateway.start()
    plays = PlayLog()
    try:
        async with gateway.client() as client:
            villages = await pick_villages(client, 40)
            fleet = await fleet_for(
                client,
                mqtt_url,
                gateway.url,
                only=lambda s: s["village_code"] in villages.values(),
                speed=4.0,
            )
            plays.attach(fleet)
            try:
                everyone = set(fleet.speakers)
                total = len(everyone)
                away = set(sorted(everyone)[::10][: max(1, total // 10)])
                await wait_online(client, total)
                await asyncio.gather(*(fleet.speaker(i).go_offline() for i in away))
                await wait_online(client, total - len(away), exactly=True)
                gone_at = asyncio.get_running_loop().time()
                # Expires before the speakers return: they must never play it.
                short = await broadcast_to(client, clip, villages, expires_in_s=30)
                long = await broadcast_to(client, clip, villages, expires_in_s=600)
                await _until(lambda: sum(s.played for s in fleet) >= 2 * (total - len(away)))
                short_final = await wait_until_final(client, short["id"], limit_s=90)
                await asyncio.sleep(max(0.0, gone_at + 30 - asyncio.get_running_loop().time()))
                back = await asyncio.gather(*(fleet.speaker(i).go_online() for i in away))
                assert all(back)
                long_final = await wait_until_final(client, long["id"], limit_s=90)
            finally:
                await fleet.stop()
    finally:
        gateway.stop()

    short_tally = plays.tally(short_final, should_play=everyone - away, simulated=everyone)
    long_tally = plays.tally(long_final, should_play=everyone, simulated=everyone)
    report("10% offline, expired before they return", short_tally)
    report("10% offline, caught up on return", long_tally)
    assert (short_tally.lost, short_tally.duplicated, short_tally.stale) == (0, 0, 0)
    assert (long_tally.lost, long_tally.duplicated, long_tally.stale) == (0, 0, 0)
    assert not [p for p in plays.plays if p.broadcast_id == short["id"] and p.speaker in away]
    states = speaker_states(short_final)
    assert {c for c, (state, _) in states.items() if state != "played"} == away
    assert all(states[c] == ("expired", "offline") for c in away), states
    assert short_final["speakers"]["played"] == total - len(away)
    assert short_final["speakers"]["expired"] == len(away)
    assert long_final["speakers"]["played"] == total
    assert all(state == "played" for state, _ in speaker_states(long_final).values())


# -- 5. Speakers that misbehave ---------------------------------------------------------------


async def test_misbehaving_speakers_are_isolated_and_counted(
    report: Report, tmp_path: Path, mqtt_url: str, clip: bytes
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={
            "GATEWAY_ACK_TIMEOUT_S": "3",
            "GATEWAY_RETRY_BACKOFF_S": "0.5",
            "GATEWAY_MAX_SEND_ATTEMPTS": "3",
        },
    )
    await gateway.start()
    plays = PlayLog()
    copies = 1000
    try:
        async with gateway.client() as client:
            villages = await pick_villages(client, 30)
            items = (await client.get("/api/v1/speakers/fleet")).json()["items"]
            mine = sorted(
                (s for s in items if s["village_code"] in villages.values()),
                key=lambda s: s["code"],
            )
            rogue_items = dict(zip(Misbehaviour, mine[1::9], strict=False))
            rogue_codes = {s["code"] for s in rogue_items.values()}
            fleet = await fleet_for(
                client,
                mqtt_url,
                gateway.url,
                only=lambda s: (
                    s["village_code"] in villages.values() and s["code"] not in rogue_codes
                ),
                speed=4.0,
            )
            plays.attach(fleet)
            rogues = {
                kind: RogueSpeaker(
                    mqtt_url,
                    SpeakerIdentity(
                        city="jinju",
                        district=s["district_code"],
                        village=s["village_code"],
                        speaker=s["code"],
                    ),
                    kind,
                    copies=copies,
                )
                for kind, s in rogue_items.items()
            }
            try:
                for rogue in rogues.values():
                    await rogue.__aenter__()
                total = len(fleet.speakers)
                await wait_online(client, total + len(rogues))
                created = await broadcast_to(client, clip, villages)
                final = await wait_until_final(client, created["id"], limit_s=120)
                values = await metrics(client)
                events = (await client.get("/api/v1/security-events")).json()
            finally:
                for rogue in rogues.values():
                    await rogue.__aexit__(None, None, None)
                await fleet.stop()
    finally:
        gateway.stop()

    honest = set(fleet.speakers)
    tally = plays.tally(final, should_play=honest, simulated=honest)
    report("misbehaving speakers (the honest ones)", tally)
    assert (tally.lost, tally.duplicated, tally.stale) == (0, 0, 0)
    states = speaker_states(final)
    assert all(states[c][0] == "played" for c in honest)

    silent = rogues[Misbehaviour.SILENT]
    assert states[silent.id] == ("expired", "no_ack"), states[silent.id]
    assert len(silent.commands) >= 2, "asked again before giving up"

    garbage = rogues[Misbehaviour.GARBAGE]
    assert states[garbage.id] == ("expired", "no_ack"), states[garbage.id]
    assert intake_count(values, "malformed") >= garbage.sent >= len(GARBAGE)
    items = events["items"] if isinstance(events, dict) else events
    assert any(e.get("speaker_code", e.get("speaker")) == garbage.id for e in items), items[:3]

    flood = rogues[Misbehaviour.FLOOD]
    assert states[flood.id][0] == "played"
    assert flood.sent >= 4 * copies
    assert intake_count(values, "duplicate_acks") >= 3 * (copies - 1) - 10
    assert intake_count(values, "flood_dropped") >= copies // 2
    assert final["speakers"]["played"] == total + 1
    assert final["speakers"]["expired"] == 2


# -- 6. Two replicas on one PostgreSQL and one broker ------------------------------------------


async def _publications(database: PostgresDatabase, broadcast_id: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(database.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await _publication_rows(conn, broadcast_id)
    finally:
        await conn.close()


async def _publication_rows(conn: Any, broadcast_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT state, attempts, lease_owner FROM publications WHERE broadcast_id = $1",
        broadcast_id,
    )
    return [dict(r) for r in rows]


async def _kill_while_publishing(
    replica: GatewayProcess,
    owner: str,
    database: PostgresDatabase,
    client: httpx.AsyncClient,
    clip: bytes,
    villages: dict[int, str],
    survivor: httpx.AsyncClient,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Broadcast through `replica` until it is caught holding leases on rows it has not yet
    recorded as published, and SIGKILL it there. Returns every broadcast created (the earlier
    ones, whose fan-out ended before the catch, already final) and the rows it held."""
    import asyncpg

    conn = await asyncpg.connect(database.url.replace("postgresql+asyncpg", "postgresql"))
    created: list[dict[str, Any]] = []
    try:
        for _ in range(5):
            broadcast = await broadcast_to(client, clip, villages)
            created.append(broadcast)
            async with asyncio.timeout(60):
                while True:
                    rows = await _publication_rows(conn, broadcast["id"])
                    if any(r["lease_owner"] == owner for r in rows):
                        break
                    if rows and all(r["state"] != "pending" for r in rows):
                        break
            replica.pause()
            rows = await _publication_rows(conn, broadcast["id"])
            held = [r for r in rows if r["state"] == "pending" and r["lease_owner"] == owner]
            if held:
                replica.kill()
                return created, held
            replica.resume()
            await wait_until_final(survivor, broadcast["id"])
    finally:
        await conn.close()
    raise AssertionError("the replica was never caught in the middle of a fan-out")


async def test_two_replicas_fan_out_once_and_finish_each_others_work(
    report: Report, tmp_path: Path, mqtt_url: str, postgres: PostgresDatabase, clip: bytes
) -> None:
    await seed_database(postgres.url)
    replicas = []
    # The first takes the replica id every other end-to-end test uses, so no session of theirs
    # is left in the shared subscription; the second's is ended with the test.
    for name, env in (
        ("e2e", {}),
        # Polls slowly, so the replica that took the request usually claims its broadcast first.
        ("e2e-b", {"GATEWAY_POLL_INTERVAL_S": "2"}),
    ):
        data_dir = tmp_path / name
        data_dir.mkdir()
        replicas.append(
            GatewayProcess(
                database_url=postgres.url,
                mqtt_url=mqtt_url,
                data_dir=data_dir,
                extra_env={
                    "GATEWAY_REPLICA_ID": name,
                    "GATEWAY_ACK_TIMEOUT_S": "20",
                    "GATEWAY_PUBLISH_LEASE_S": "4",
                    **env,
                },
            )
        )
    first, second = replicas
    plays = PlayLog()
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        async with first.client() as one, second.client() as other:
            villages = await pick_villages(one, 60)
            fleet = await fleet_for(
                one,
                mqtt_url,
                first.url,
                only=lambda s: s["village_code"] in villages.values(),
                speed=2.0,
            )
            plays.attach(fleet)
            try:
                everyone = set(fleet.speakers)
                total = len(everyone)
                await wait_online(one, total)
                # Both replicas up: created on one, fanned out once, acks recorded by both.
                calm = await broadcast_to(one, clip, villages)
                calm_final = await wait_until_final(other, calm["id"])
                commands_once = fleet.stats().duplicates
                calm_rows = await _publications(postgres, calm["id"])
                shares = [intake_count(await metrics(c), "acks_applied") for c in (one, other)]

                # The replica publishing dies in the middle of the fan-out, leases in hand.
                stormy, held = await _kill_while_publishing(
                    first, "e2e", postgres, one, clip, villages, other
                )
                async with asyncio.timeout(60):
                    while True:
                        rows = await _publications(postgres, stormy[-1]["id"])
                        if all(r["state"] != "pending" for r in rows):
                            break
                        await asyncio.sleep(0.2)
                taken_over = (await metrics(other))["maeul_published_total"]
                # Its supervisor starts it again: its share of acks waited in its session.
                await first.start()
                finals = [await wait_until_final(other, b["id"]) for b in stormy]
            finally:
                await fleet.stop()
    finally:
        for replica in replicas:
            replica.stop()
        await forget_gateway_session(second)

    calm_tally = plays.tally(calm_final, should_play=everyone, simulated=everyone)
    report("two replicas", calm_tally)
    assert (calm_tally.lost, calm_tally.duplicated, calm_tally.stale) == (0, 0, 0)
    assert commands_once == 0, "no speaker got the first broadcast twice"
    assert len(calm_rows) == len(villages)
    assert all(r["state"] == "published" and r["attempts"] == 1 for r in calm_rows)
    assert all(share > 0 for share in shares), f"acks recorded by both replicas: {shares}"
    assert calm_final["speakers"]["played"] == total
    for final in finals:
        tally = plays.tally(final, should_play=everyone, simulated=everyone)
        report("two replicas, the publishing one killed", tally)
        assert (tally.lost, tally.duplicated, tally.stale) == (0, 0, 0)
        assert final["speakers"]["played"] == total
    assert held, "killed holding leases on rows it had not recorded"
    assert all(r["state"] == "published" for r in rows)
    assert taken_over >= len(held), "the surviving replica published what was left"
