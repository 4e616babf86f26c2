"""Learning a rotated key never refuses a command because the key ring was asked recently: a
command under a key id the speaker does not trust is held until the ring, asked after it arrived,
has answered; only then is it refused as ``unknown_key``."""

from __future__ import annotations

import asyncio

from devices.keyring import KeyLearner
from devices.speaker import Ack, SpeakerCore
from tests.devices.commands import Keys, command, new_keys
from wire import contract

CITY = "testcity"
IDENTITY = contract.SpeakerIdentity(city=CITY, district="d1", village="v1", speaker="s1")


class Gateway:
    """A key ring that rotates: each `rotate` adds a key vouched for by the one before it."""

    def __init__(self) -> None:
        self.keys = [new_keys("k-0")]
        self.ring = contract.KeyRing(
            city=CITY, keys=(contract.endorse_key(CITY, "k-0", self.keys[0].public, by=None),)
        )
        self.fetched = 0

    @property
    def key(self) -> Keys:
        return self.keys[-1]

    def rotate(self) -> None:
        old, new = self.key, new_keys(f"k-{len(self.keys)}")
        endorsed = contract.endorse_key(CITY, new.key_id, new.public, by=(old.key_id, old.private))
        self.keys.append(new)
        self.ring = contract.KeyRing(city=CITY, keys=(*self.ring.keys, endorsed))

    async def fetch(self) -> contract.KeyRing:
        self.fetched += 1
        await asyncio.sleep(0)
        return self.ring


class Speaker:
    """One speaker core behind the shared key learner, as the fleet and the agent run it."""

    def __init__(self, learner: KeyLearner, verify: contract.SignatureCheck) -> None:
        self.learner = learner
        self.core = SpeakerCore(IDENTITY, codecs=("opus",), verify=verify)

    async def answer(self, cmd: contract.Command) -> tuple[str, str | None]:
        payload = contract.encode_command(cmd)
        if self.learner.unknown(payload):
            await self.learner.settle(payload, IDENTITY.speaker)
        acks = [a.message for a in self.core.on_command(payload) if isinstance(a, Ack)]
        return acks[0].status.value, acks[0].reason


def _play(keys: Keys) -> contract.Command:
    return keys.sign(command(city=CITY, at_ms=contract.now_ms()))


def _fleet(gateway: Gateway, **limits: int) -> Speaker:
    verify = contract.SignatureCheck({"k-0": gateway.keys[0].public})
    return Speaker(KeyLearner(verify, CITY, gateway.fetch, **limits), verify)


async def test_a_bogus_key_does_not_use_up_the_fetch_a_rotated_key_needs() -> None:
    gateway = Gateway()
    speaker = _fleet(gateway, burst=4)
    bogus = new_keys("bogus-key")
    assert await speaker.answer(_play(bogus)) == ("rejected", "unknown_key")
    # Rotated moments later, well within the minute: the genuine key is asked for and plays.
    gateway.rotate()
    assert await speaker.answer(_play(gateway.key)) == ("received", None)
    assert gateway.fetched == 2
    # Rotated twice more within that minute: still learned.
    gateway.rotate()
    gateway.rotate()
    assert await speaker.answer(_play(gateway.key)) == ("received", None)
    # The bogus key again within its minute: no new fetch for it, and refused.
    fetched = gateway.fetched
    again = asyncio.ensure_future(speaker.answer(_play(bogus)))
    await asyncio.sleep(0.05)
    assert not again.done(), "held until the ring is asked since it arrived, not refused at once"
    gateway.rotate()
    assert await speaker.answer(_play(gateway.key)) == ("received", None)
    assert await again == ("rejected", "unknown_key"), "the fetch for the new key settled it"
    assert gateway.fetched == fetched + 1, "one fetch served both"


async def test_a_command_waits_for_the_global_cap_rather_than_being_refused() -> None:
    gateway = Gateway()
    speaker = _fleet(gateway, burst=1, window_ms=300)
    assert await speaker.answer(_play(new_keys("bogus-1"))) == ("rejected", "unknown_key")
    gateway.rotate()
    # The one fetch of the window is spent: held for the next, then played.
    assert await speaker.answer(_play(gateway.key)) == ("received", None)
    assert gateway.fetched == 2


async def test_a_speaker_holds_a_bounded_number_of_commands() -> None:
    gateway = Gateway()
    speaker = _fleet(gateway, max_held=2, window_ms=60_000, burst=1)
    assert await speaker.answer(_play(new_keys("bogus-1"))) == ("rejected", "unknown_key")
    held = [asyncio.ensure_future(speaker.answer(_play(new_keys(f"b-{n}")))) for n in range(2)]
    await asyncio.sleep(0.05)
    assert speaker.learner.held(IDENTITY.speaker) == 2
    # A third while two wait: handed on at once (the gateway asks again later).
    assert await speaker.answer(_play(new_keys("b-3"))) == ("rejected", "unknown_key")
    assert not any(h.done() for h in held)
    for h in held:
        h.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert speaker.learner.held(IDENTITY.speaker) == 0


async def test_a_held_command_is_handed_on_at_its_expiry() -> None:
    gateway = Gateway()
    speaker = _fleet(gateway, window_ms=60_000, burst=1)
    assert await speaker.answer(_play(new_keys("bogus-1"))) == ("rejected", "unknown_key")
    short = new_keys("b-2").sign(command(city=CITY, at_ms=contract.now_ms(), ttl_ms=200))
    status, _ = await speaker.answer(short)
    assert status == "rejected"
    assert gateway.fetched == 1
