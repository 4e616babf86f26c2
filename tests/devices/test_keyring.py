"""Learning a rotated key never refuses a command because the key ring was asked recently: a
command under a key id the speaker does not trust is held until the ring, asked after it arrived,
has answered; only then is it refused as ``unknown_key``."""

from __future__ import annotations

import asyncio

from devices.actions import Ack
from devices.keyring import KeyLearner
from devices.speaker import SpeakerCore
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


class RevokingGateway:
    """The gateway's key ring as gateway/signing.py builds it: trusted keys chained, each
    endorsed by the trusted key before it; revocations signed by the active (newest) key."""

    def __init__(self) -> None:
        self.keys = [new_keys("k-0")]
        self.revoked: set[str] = set()

    @property
    def key(self) -> Keys:
        return self.keys[-1]

    def rotate(self) -> Keys:
        self.keys.append(new_keys(f"k-{len(self.keys)}"))
        return self.key

    def revoke(self, key_id: str) -> Keys:
        self.revoked.add(key_id)
        return self.rotate()  # every revocation starts a new key, as the gateway does

    @property
    def ring(self) -> contract.KeyRing:
        trusted = [k for k in self.keys if k.key_id not in self.revoked]
        entries = [
            contract.endorse_key(
                CITY, key.key_id, key.public, by=(before.key_id, before.private) if before else None
            )
            for before, key in zip([None, *trusted], trusted, strict=False)
        ]
        revoked = tuple(
            contract.revoke_key(CITY, kid, by=(self.key.key_id, self.key.private))
            for kid in sorted(self.revoked)
        )
        return contract.KeyRing(city=CITY, keys=tuple(entries), revoked=revoked)

    async def fetch(self) -> contract.KeyRing:
        return self.ring


async def test_a_revoked_key_is_dropped_at_the_next_fetch_and_its_commands_refused() -> None:
    gateway = RevokingGateway()
    stolen = gateway.rotate()
    verify = contract.SignatureCheck({"k-0": gateway.keys[0].public})
    forgotten: list[tuple[frozenset[str], frozenset[str]]] = []

    async def forget(revoked: frozenset[str], dropped: frozenset[str]) -> None:
        forgotten.append((revoked, dropped))

    learner = KeyLearner(verify, CITY, gateway.fetch, forget=forget)
    speaker = Speaker(learner, verify)
    assert await speaker.answer(_play(stolen)) == ("received", None), "learned, trusted"
    # The thief's own key, vouched for by the stolen one before the revocation: learned too.
    thief = new_keys("k-thief")
    forged_ring = gateway.ring.model_copy(
        update={
            "keys": (
                *gateway.ring.keys,
                contract.endorse_key(
                    CITY, thief.key_id, thief.public, by=(stolen.key_id, stolen.private)
                ),
            )
        }
    )
    assert verify.learn(forged_ring, CITY) == {thief.key_id: thief.public}

    fresh = gateway.revoke(stolen.key_id)
    # The gateway's next command, under the new key, makes the speaker fetch the ring.
    assert await speaker.answer(_play(fresh)) == ("received", None)
    assert verify.is_revoked(stolen.key_id)
    assert not verify.knows(stolen.key_id)
    assert not verify.knows(thief.key_id)
    assert forgotten == [(frozenset({stolen.key_id}), frozenset({stolen.key_id, thief.key_id}))]
    fetched = learner.fetches
    assert await speaker.answer(_play(stolen)) == ("rejected", "revoked_key")
    assert learner.fetches == fetched, "refused at once: a revoked key is not asked about"
    assert await speaker.answer(_play(thief)) == ("rejected", "unknown_key")

    # A ring without the revocation (replayed by the thief) does not bring the key back, and
    # the revoked key vouches for nothing any more.
    assert verify.learn(forged_ring, CITY) == {}
    assert not verify.knows(stolen.key_id)
    assert not verify.knows(thief.key_id)
    assert await speaker.answer(_play(stolen)) == ("rejected", "revoked_key")
    assert await speaker.answer(_play(gateway.keys[0])) == ("received", None)


async def test_a_retired_key_revoked_leaves_the_keys_it_vouched_for_trusted() -> None:
    gateway = RevokingGateway()
    retired = gateway.rotate()
    current = gateway.rotate()  # vouched for by `retired`
    verify = contract.SignatureCheck({"k-0": gateway.keys[0].public})
    speaker = Speaker(KeyLearner(verify, CITY, gateway.fetch), verify)
    assert await speaker.answer(_play(current)) == ("received", None)
    newest = gateway.revoke(retired.key_id)
    assert await speaker.answer(_play(newest)) == ("received", None)
    # `current` was learned through `retired`; the gateway now vouches for it with k-0.
    assert verify.knows(current.key_id)
    assert not verify.knows(retired.key_id)
    assert await speaker.answer(_play(current)) == ("received", None)
    assert await speaker.answer(_play(retired)) == ("rejected", "revoked_key")


def test_a_revocation_counts_only_when_a_trusted_key_other_than_the_revoked_one_signs_it() -> None:
    anchor, other, outsider = new_keys("k-0"), new_keys("k-1"), new_keys("k-x")
    verify = contract.SignatureCheck({"k-0": anchor.public, "k-1": other.public})
    forged = contract.KeyRing(
        city=CITY,
        keys=(),
        revoked=(
            contract.revoke_key(CITY, "k-0", by=(outsider.key_id, outsider.private)),
            contract.revoke_key(CITY, "k-1", by=(other.key_id, other.private)),
            contract.revoke_key(CITY, "k-0", by=(other.key_id, anchor.private)),  # bad sig
        ),
    )
    verify.learn(forged, CITY)
    assert verify.knows("k-0")
    assert verify.knows("k-1")
    assert not verify.revoked
    genuine = contract.KeyRing(
        city=CITY,
        keys=(),
        revoked=(contract.revoke_key(CITY, "k-0", by=(other.key_id, other.private)),),
    )
    verify.learn(genuine, CITY)
    assert verify.revoked == {"k-0"}
    assert not verify.knows("k-0")
    assert verify.knows("k-1")
    # A configured key the speaker has since learned was revoked stays refused after a restart.
    restarted = contract.SignatureCheck(
        {"k-0": anchor.public, "k-1": other.public}, revoked=verify.revoked
    )
    assert not restarted.knows("k-0")
    assert restarted.is_revoked("k-0")
