"""End to end: part of a real fleet freezes past the retry budget, the officer resends to the
missed, the frozen speakers wake. Every speaker plays the message exactly once, the original's
failed deliveries stay failed, and the record says what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.fleet_process import FleetProcess
from tests.e2e.harness import (
    TOKEN,
    GatewayProcess,
    PlayLog,
    fleet_for,
    speaker_states,
    wait_online,
    wait_until_final,
)
from tests.e2e.test_jinju import _broadcast
from tests.media import make_recording
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.slow]

CITY = "jinju"


async def test_a_frozen_fleet_woken_after_a_resend_plays_each_message_once(
    tmp_path: Path, mqtt_url: str
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code=CITY
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        city_code=CITY,
        # A small retry budget: asked twice, four seconds each, then given up on.
        extra_env={
            "GATEWAY_ACK_TIMEOUT_S": "4",
            "GATEWAY_RETRY_BACKOFF_S": "0.5",
            "GATEWAY_MAX_SEND_ATTEMPTS": "2",
        },
    )
    await gateway.start()
    recording = make_recording(tmp_path / "alert.m4a", "m4a", seconds=4.0).read_bytes()
    awake_plays = PlayLog()
    frozen: FleetProcess | None = None
    try:
        async with gateway.client() as client:
            items = (await client.get("/api/v1/speakers/fleet")).json()["items"]
            codes = sorted(s["code"] for s in items)
            cold = codes[::2]
            warm = [c for c in codes if c not in cold]
            awake = await fleet_for(
                client, mqtt_url, gateway.url, only=lambda s: s["code"] in warm, speed=4.0
            )
            awake_plays.attach(awake)
            frozen = FleetProcess(gateway.url, mqtt_url, TOKEN, cold, tmp_path / "plays.jsonl")
            try:
                await frozen.start()
                await wait_online(client, len(codes), exactly=True)
                # Heard once already, so every speaker has this audio ready at once: a stale
                # command could start the moment it is read, before what is queued behind it.
                warm_up = await _broadcast(client, recording)
                await wait_until_final(client, warm_up["id"], limit_s=120)

                frozen.freeze()
                created = await _broadcast(client, recording)
                first = await wait_until_final(client, created["id"], limit_s=120)
                response = await client.post(f"/api/v1/broadcasts/{created['id']}/resend")
                assert response.status_code == 201, response.text
                resent = response.json()
                frozen.wake()
                second = await wait_until_final(client, resent["id"], limit_s=120)
                # Each woken speaker answered about the original before the resend, on the
                # same connection: those answers are in the record by now.
                after = (await client.get(f"/api/v1/broadcasts/{created['id']}")).json()
            finally:
                await awake.stop()
    finally:
        if frozen is not None:
            frozen.stop()
        gateway.stop()

    # While frozen: the gateway gave up on exactly the frozen speakers.
    states = speaker_states(first)
    assert {c for c, (state, _) in states.items() if state != "played"} == set(cold)
    assert all(states[c] == ("expired", "no_ack") for c in cold), states

    # Every speaker played the message exactly once: the original or the resend.
    message = {created["id"], resent["id"]}
    heard: dict[str, int] = dict.fromkeys(codes, 0)
    for play in awake_plays.plays:
        if play.broadcast_id in message:
            heard[play.speaker] += 1
    for play in frozen.plays():
        if play["broadcast_id"] in message:
            heard[play["speaker"]] += 1
    assert heard == dict.fromkeys(codes, 1), heard
    assert {p["broadcast_id"] for p in frozen.plays()} == {warm_up["id"], resent["id"]}

    # The record: the original's failed deliveries stayed failed and name the resend, which
    # every frozen speaker played.
    states = speaker_states(after)
    assert all(states[c] == ("expired", "no_ack") for c in cold), states
    assert all(states[c] == ("played", None) for c in warm), states
    assert after["speakers"]["played"] == len(warm)
    assert after["speakers"].get("played_late", 0) == 0
    linked = {s["code"]: s["resent_in"] for v in after["village_deliveries"] for s in v["speakers"]}
    assert all(linked[c] == resent["id"] for c in cold), linked
    assert speaker_states(second) == dict.fromkeys(cold, ("played", None))
    assert resent["target"]["resend_of"] == created["id"]
