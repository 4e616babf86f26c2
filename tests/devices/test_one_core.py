"""The device agent and the simulated fleet decide alike: same commands in, same acks out,
key rotation included (both learn a rotated key from the gateway's key ring)."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from devices.keyring import KeyLearner, key_id_named, static_keyring
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from tests.devices.commands import Keys, audio, command, new_keys, opus_clip, resend
from tests.devices.observer import Observer
from tests.devices.test_agent import FakePlayer, agent_config, running
from wire import contract


@pytest.fixture
def city() -> str:
    return f"o{secrets.token_hex(3)}"


@pytest.fixture
async def observer(mqtt_url: str, city: str) -> AsyncIterator[Observer]:
    async with Observer(mqtt_url, city) as watching:
        yield watching


def _ring(city: str, old: Keys, new: Keys, rogue: Keys, stranger: Keys) -> contract.KeyRing:
    return contract.KeyRing(
        city=city,
        keys=(
            contract.endorse_key(city, old.key_id, old.public, by=None),
            contract.endorse_key(city, new.key_id, new.public, by=(old.key_id, old.private)),
            # Vouched for by a key neither speaker trusts: never learned.
            contract.endorse_key(
                city, rogue.key_id, rogue.public, by=(stranger.key_id, stranger.private)
            ),
        ),
    )


async def test_the_agent_and_the_simulator_answer_every_copy_alike(
    mqtt_url: str, city: str, observer: Observer, tmp_path: Path
) -> None:
    old, new = new_keys("k-old"), new_keys("k-new")
    rogue, stranger = new_keys("k-rogue"), new_keys("k-stranger")
    ring = _ring(city, old, new, rogue, stranger)
    asked: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, content=ring.model_dump_json().encode())

    clip = opus_clip(0.3)
    village = contract.command_topic_village(city, "v1")
    agent_id, sim_id = f"{city}-agent", f"{city}-sim"
    config = agent_config(
        mqtt_url,
        city,
        agent_id,
        tmp_path / "journal.sqlite",
        url="https://gw.example",
        public_keys={old.key_id: base64.b64encode(old.public).decode()},
    )
    fleet = Fleet(
        FleetConfig(
            mqtt_url=mqtt_url,
            speed=20,
            public_keys={old.key_id: old.public},
            keyring=static_keyring(ring),
        )
    )
    identity = contract.SpeakerIdentity(city=city, district="d1", village="v1", speaker=sim_id)

    def play(keys: Keys | None, **fields: object) -> contract.Command:
        cmd = command(
            city=city,
            at_ms=contract.now_ms(),
            refs=(audio(clip),),
            scope=contract.Scope(kind="village", ids=("v1",)),
            **fields,  # type: ignore[arg-type]
        )
        return keys.sign(cmd) if keys is not None else cmd

    def answered(command_id: str, count: int) -> Callable[[], bool]:
        return lambda: all(
            len([a for a in observer.of(command_id) if a.speaker == s]) >= count
            for s in (agent_id, sim_id)
        )

    def acked(count: int) -> Callable[[], bool]:
        return lambda: all(
            len([a for a in observer.acks if a.speaker == s]) >= count for s in (agent_id, sim_id)
        )

    rotated = play(new)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
        running(config, FakePlayer(), http) as agent,
    ):
        await fleet.start([SimSpeaker(identity)])
        try:
            await observer.until(lambda: agent.link.online and fleet.speaker(sim_id).online)
            # Signed with a key both learn from the ring: played by both.
            await observer.publish(village, rotated)
            await observer.until(answered(rotated.id, 3))
            copies: list[tuple[str, bytes]] = [
                ("rogue", contract.encode_command(play(rogue))),  # not vouched for by a trusted key
                (
                    "tampered",
                    contract.encode_command(play(new).model_copy(update={"priority": 999})),
                ),
                (
                    "unsigned copy",
                    contract.encode_command(rotated.model_copy(update={"sig": None})),
                ),
                ("forged copy", contract.encode_command(stranger.sign(rotated))),
                ("replay", contract.encode_command(rotated)),
                (
                    "retry",
                    contract.encode_command(new.sign(resend(rotated, at_ms=contract.now_ms()))),
                ),
                ("garbled copy", contract.encode_command(rotated).replace(b'"v":1', b'"v":7')),
                ("unsigned", contract.encode_command(play(None))),
            ]
            # One at a time: a command under a key not trusted yet is held while the ring is
            # asked, and must not trade places with the next one in this comparison.
            for n, (_, payload) in enumerate(copies, start=4):
                await observer.publish(village, payload)
                await observer.until(acked(n))
        finally:
            await fleet.stop()

    agent_acks = [
        (a.command_id, a.status.value, a.reason) for a in observer.acks if a.speaker == agent_id
    ]
    sim_acks = [
        (a.command_id, a.status.value, a.reason) for a in observer.acks if a.speaker == sim_id
    ]
    assert agent_acks == sim_acks
    answers = [(status, reason) for _, status, reason in agent_acks]
    assert answers == [
        ("received", None),
        ("playing", None),
        ("played", None),
        ("rejected", "unknown_key"),  # rogue
        ("rejected", "bad_signature"),  # tampered
        ("rejected", "unsigned"),  # unsigned copy of the played id
        ("rejected", "unknown_key"),  # a copy signed by a key nobody vouched for
        ("rejected", "replayed"),  # the played bytes again
        ("played", None),  # the gateway's retry: its last ack, repeated
        ("rejected", "malformed"),
        ("rejected", "unsigned"),
    ]
    # Each looked at the ring once per key id it did not trust: the rotated key, the rogue one
    # and the stranger's.
    assert asked == ["/api/v1/keys/ring"] * 3
    learner = fleet.keys_for(city)
    assert learner is not None
    assert learner.fetches == 3


async def test_a_fleet_asks_for_the_ring_once_for_every_speaker() -> None:
    old, new = new_keys("k-old"), new_keys("k-new")
    city = "jinju"
    ring = _ring(city, old, new, new_keys("r"), new_keys("s"))
    fetched = 0

    async def fetch() -> contract.KeyRing:
        nonlocal fetched
        fetched += 1
        return ring

    now = [1_000_000]
    learner = KeyLearner(
        contract.SignatureCheck({old.key_id: old.public}), city, fetch, clock=lambda: now[0]
    )
    payload = contract.encode_command(new.sign(command(city=city, at_ms=now[0])))
    assert key_id_named(payload) == new.key_id
    assert learner.unknown(payload)
    await asyncio.gather(*(learner.settle(payload, f"s{n}") for n in range(50)))
    assert fetched == 1
    assert learner.verify.knows(new.key_id)
    assert not learner.unknown(payload), "trusted now"
    unknown = contract.encode_command(new_keys("k-x").sign(command(city=city, at_ms=now[0])))
    assert learner.unknown(unknown)
    await asyncio.gather(*(learner.settle(unknown, f"s{n}") for n in range(50)))
    assert fetched == 2, "a key id not asked for yet is asked for at once, once for everyone"
    assert learner.unknown(unknown), "not vouched for: the core refuses it"
