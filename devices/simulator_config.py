"""What a simulated fleet is made of: its speakers, its configuration and their faults.

Faults are chosen per speaker from `FleetConfig.seed`, so a run is repeatable: speakers that
stay offline, that reject everything, that ack late, or that lose their connection mid-play.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from devices.keyring import FetchRing
from devices.link_settings import BrokerAddress
from wire import contract
from wire.contract import Codec, SpeakerIdentity

# The reason a speaker chosen to reject everything (`Faults.reject`) gives.
SIMULATED_REJECT_REASON: Final = "simulated_fault"
# How many simulated devices one simulator process runs when the count is left to us: one event
# loop keeps up with about this many verifying and acking a city-wide command.
DEVICES_PER_PROCESS: Final = 5_000
# Presence messages a second a whole fleet may send with its heartbeats: Gimcheon's 19,856
# devices every 30 s would be 660 a second, more than a 2-core gateway's intake keeps up with.
HEARTBEATS_PER_S: Final = 100


@dataclass(frozen=True)
class SimSpeaker:
    """One speaker to simulate: where it sits and what it can play."""

    identity: SpeakerIdentity
    codecs: tuple[str, ...] = (Codec.OPUS.value, Codec.MP3.value)
    kind: str = "loudspeaker"
    # How far its clock is ahead of the true time (an unsynchronised clock), in milliseconds.
    clock_offset_ms: int = 0
    # Its own Ed25519 receipt key (raw private half): its ``played`` acks carry signed receipts.
    receipt_key: bytes | None = field(default=None, repr=False)
    # An indoor receiver's household settings, as its provisioning document gives them.
    receiver: contract.ReceiverSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "codecs", tuple(Codec(c) for c in self.codecs))


def sim_speaker(city: str, item: Mapping[str, Any]) -> SimSpeaker:
    """The device an item of the gateway's fleet (``GET /api/v1/speakers/fleet``) describes."""
    return SimSpeaker(
        identity=SpeakerIdentity(
            city=city,
            district=item["district_code"],
            village=item["village_code"],
            speaker=item["code"],
        ),
        codecs=tuple(item["codecs"]),
        kind=item.get("kind", "loudspeaker"),
    )


def processes_for(devices: int) -> int:
    """How many simulator processes to split `devices` over (at least one)."""
    return max(1, math.ceil(devices / DEVICES_PER_PROCESS))


def heartbeat_for(devices: int) -> float:
    """Seconds between a device's heartbeats in a fleet of `devices`: 30 up to 3,000 devices,
    then longer, so the fleet sends at most `HEARTBEATS_PER_S` of them a second."""
    return max(30.0, round(devices / HEARTBEATS_PER_S))


def share_of(speakers: Sequence[SimSpeaker], part: int, parts: int) -> list[SimSpeaker]:
    """The speakers that simulator process `part` (0-based) of `parts` runs: every `parts`-th
    in the order of their codes, so each speaker is in exactly one share and the shares differ
    by at most one, whatever order the fleet was listed in."""
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part must be in 0..{parts - 1} (of {parts})")
    ordered = sorted(speakers, key=lambda s: s.identity.speaker)
    return ordered[part::parts]


def with_receipt_keys(speakers: Sequence[SimSpeaker]) -> list[SimSpeaker]:
    """The speakers, each with a fresh receipt key of its own (as a real one makes at its
    installation); enroll the public halves (`receipt_public_keys`) with the gateway."""
    return [dataclasses.replace(s, receipt_key=contract.new_receipt_key()[0]) for s in speakers]


def receipt_public_keys(speakers: Sequence[SimSpeaker]) -> dict[str, dict[str, str]]:
    """Speaker code -> its enrollment (base64 receipt public key and proof of possession), the
    ``keys`` of ``PUT /api/v1/speakers/receipt-keys``."""
    return {
        s.identity.speaker: contract.receipt_key_enrollment(
            s.receipt_key, s.identity.city, s.identity.speaker
        )
        for s in speakers
        if s.receipt_key is not None
    }


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    mqtt_url: str  # mqtt:// or mqtts://, optionally with user:password@
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Per-speaker MQTT credentials (a broker with one user per speaker); overrides the above.
    credentials: Callable[[SpeakerIdentity], tuple[str, str | None]] | None = None
    ca_file: str | None = None
    speed: float = 1.0  # 10: a 30 s message "plays" in 3 s
    offline_ratio: float = 0.0  # never connect (until go_online)
    reject_ratio: float = 0.0  # answer every command "rejected"
    slow_ack_ratio: float = 0.0  # send every ack slow_ack_s late
    slow_ack_s: float = 5.0
    drop_mid_play_ratio: float = 0.0  # lose the connection halfway through each play
    heartbeat_s: float = 30.0
    keepalive_s: int = 60
    session_expiry_s: int = 600
    seed: int = 0
    connect_concurrency: int = 128
    connect_timeout_s: float = 15.0
    backoff_max_s: float = 60.0  # the longest wait between reconnection attempts
    public_keys: Mapping[str, bytes] | None = None  # require signed commands
    # Where rotated keys are learned from (the trust anchor stays `public_keys`): by default the
    # key ring of `gateway_url`, fetched once for the whole fleet.
    keyring: FetchRing | None = None
    gateway_url: str | None = None  # the only origin audio is fetched from (with audio_token)
    audio_token: str | None = field(default=None, repr=False)
    firmware: str = "maeul-sim/1"

    def __post_init__(self) -> None:
        BrokerAddress.parse(self.mqtt_url)
        if not self.speed > 0:
            raise ValueError("speed must be positive")
        for name in ("offline_ratio", "reject_ratio", "slow_ack_ratio", "drop_mid_play_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.connect_concurrency < 1:
            raise ValueError("connect_concurrency must be at least 1")


@dataclass(frozen=True)
class Faults:
    offline: bool = False
    reject: bool = False
    slow_ack: bool = False
    drop_mid_play: bool = False


def choose_faults(ids: Sequence[str], config: FleetConfig) -> dict[str, Faults]:
    """Which speakers misbehave, and how: the same ids for the same seed and speaker set."""
    ordered = sorted(ids)

    def pick(ratio: float, salt: str) -> frozenset[str]:
        count = round(ratio * len(ordered))
        return frozenset(random.Random(f"{config.seed}:{salt}").sample(ordered, count))

    offline = pick(config.offline_ratio, "offline")
    reject = pick(config.reject_ratio, "reject")
    slow = pick(config.slow_ack_ratio, "slow_ack")
    drop = pick(config.drop_mid_play_ratio, "drop_mid_play")
    return {
        i: Faults(
            offline=i in offline, reject=i in reject, slow_ack=i in slow, drop_mid_play=i in drop
        )
        for i in ordered
    }
