"""Topic strings: every topic and subscription of the contract, built from checked segments.

What each topic carries, and who publishes and subscribes how, is described in `channels`.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from wire.contract.base import SHARE_GROUP, TOPIC_ROOT, WireError

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise WireError(f"{what} {value!r} is not a valid topic segment ([A-Za-z0-9_-]{{1,64}})")
    return value


def is_valid_segment(value: str) -> bool:
    return bool(_SEGMENT.fullmatch(value))


def command_topic_all(city: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/all"


def command_topic_district(city: str, district: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/district/{_segment(district, 'district')}"


def command_topic_village(city: str, village: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/village/{_segment(village, 'village')}"


def command_topic_speaker(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/speaker/{_segment(speaker, 'speaker')}"


def ack_topic(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/ack/{_segment(speaker, 'speaker')}"


def presence_topic(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/presence/{_segment(speaker, 'speaker')}"


def ack_subscription(group: str = SHARE_GROUP) -> str:
    """The gateway's shared subscription for every speaker's acks, in every city."""
    return f"$share/{_segment(group, 'share group')}/{TOPIC_ROOT}/+/ack/+"


def presence_subscription(group: str = SHARE_GROUP) -> str:
    return f"$share/{_segment(group, 'share group')}/{TOPIC_ROOT}/+/presence/+"


def speaker_subscriptions(city: str, district: str, village: str, speaker: str) -> list[str]:
    """Every command topic one speaker listens on."""
    return [
        command_topic_all(city),
        command_topic_district(city, district),
        command_topic_village(city, village),
        command_topic_speaker(city, speaker),
    ]


def parse_speaker_topic(topic: str, kind: Literal["ack", "presence"]) -> tuple[str, str]:
    """Return (city, speaker) of an ack or presence topic, or raise WireError."""
    parts = topic.split("/")
    if (
        len(parts) != 5
        or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT
        or parts[3] != kind
        or not is_valid_segment(parts[2])
        or not is_valid_segment(parts[4])
    ):
        raise WireError(f"not a {kind} topic: {topic[:200]!r}")
    return parts[2], parts[4]


SPEAKER_CLIENT_PREFIX: Final = "spk-"


def speaker_client_id(speaker: str) -> str:
    """A speaker's MQTT client id: stable, so the broker keeps its session across reconnects."""
    return f"{SPEAKER_CLIENT_PREFIX}{_segment(speaker, 'speaker')}"


def live_topic_all(city: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/all"


def live_topic_district(city: str, district: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/district/{_segment(district, 'district')}"


def live_topic_village(city: str, village: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/village/{_segment(village, 'village')}"


def live_subscriptions(city: str, district: str, village: str) -> list[str]:
    """Every live topic one speaker listens on."""
    return [
        live_topic_all(city),
        live_topic_district(city, district),
        live_topic_village(city, village),
    ]


def is_live_topic(topic: str) -> bool:
    parts = topic.split("/", 4)
    return len(parts) >= 4 and parts[3] == "live" and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT
