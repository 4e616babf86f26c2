"""What each topic carries and who does what on it: the channels and operations of the
generated `openapi/asyncapi.yaml`, kept beside the topics so the document is generated, not
written twice. Nothing here is on the wire; the QoS values are the contract's own constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from wire.contract.base import ACK_QOS, COMMAND_QOS, HEARTBEAT_QOS, PRESENCE_QOS, Qos
from wire.contract.live import LIVE_CONTROL_QOS, LIVE_FRAME_QOS, LIVE_SUBSCRIPTION_QOS
from wire.contract.topics import (
    ack_subscription,
    ack_topic,
    command_topic_all,
    command_topic_district,
    command_topic_speaker,
    command_topic_village,
    live_topic_all,
    live_topic_district,
    live_topic_village,
    presence_subscription,
    presence_topic,
)


@dataclass(frozen=True, slots=True)
class Channel:
    """One topic as the AsyncAPI document describes it; `messages` name its message kinds."""

    id: str
    topic: Callable[..., str]
    title: str
    description: str
    direction: str
    qos: Qos
    retained: str
    messages: tuple[str, ...]


CHANNELS: Final[tuple[Channel, ...]] = (
    Channel(
        "commandsAll",
        command_topic_all,
        "Commands for the whole city",
        "Commands for every speaker of the city. Every speaker of the city subscribes.",
        "gateway → speakers",
        COMMAND_QOS,
        "no",
        ("command",),
    ),
    Channel(
        "commandsDistrict",
        command_topic_district,
        "Commands for a district",
        "Commands for every speaker of one district.",
        "gateway → speakers",
        COMMAND_QOS,
        "no",
        ("command",),
    ),
    Channel(
        "commandsVillage",
        command_topic_village,
        "Commands for a village",
        "Commands for every speaker of one village.",
        "gateway → speakers",
        COMMAND_QOS,
        "no",
        ("command",),
    ),
    Channel(
        "commandsSpeaker",
        command_topic_speaker,
        "Commands for one speaker",
        "Commands for one speaker: scoped broadcasts, resends when no ack came, and catch-up "
        "when a speaker comes back online.",
        "gateway → one speaker",
        COMMAND_QOS,
        "no",
        ("command",),
    ),
    Channel(
        "acks",
        ack_topic,
        "A speaker's acks",
        "A speaker's acknowledgements. Only that speaker may publish here (broker ACL).",
        "speaker → gateway",
        ACK_QOS,
        "no",
        ("ack",),
    ),
    Channel(
        "presence",
        presence_topic,
        "A speaker's presence",
        "Birth, heartbeats and will of one speaker. The retained message (birth or will) is "
        "the speaker's last known state for any non-shared subscriber, such as a field tool. "
        "Retained messages are not sent to a new shared subscription (MQTT 5.0, 4.8.2), so "
        "the gateway follows live births, heartbeats and wills.",
        "speaker → gateway",
        PRESENCE_QOS,
        "birth and will",
        ("presenceBirth", "presenceHeartbeat", "presenceWill"),
    ),
    Channel(
        "liveAll",
        live_topic_all,
        "Live audio for the whole city",
        "The frames of a live broadcast to every speaker of the city. Every speaker subscribes.",
        "gateway → speakers",
        LIVE_FRAME_QOS,
        "no",
        ("liveAudio", "liveControl"),
    ),
    Channel(
        "liveDistrict",
        live_topic_district,
        "Live audio for a district",
        "The frames of a live broadcast to every speaker of one district.",
        "gateway → speakers",
        LIVE_FRAME_QOS,
        "no",
        ("liveAudio", "liveControl"),
    ),
    Channel(
        "liveVillage",
        live_topic_village,
        "Live audio for a village",
        "The frames of a live broadcast to every speaker of one village.",
        "gateway → speakers",
        LIVE_FRAME_QOS,
        "no",
        ("liveAudio", "liveControl"),
    ),
)

# What each topic segment is (the parameters of the channels above).
SEGMENT_DOCS: Final[Mapping[str, str]] = {
    "city": "City code (the gateway's `city_code` setting).",
    "district": "District code.",
    "village": "Village code.",
    "speaker": "Speaker id, also its MQTT username.",
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One thing the gateway or a speaker does on a channel, and how (QoS, retain).

    ``messages`` empty: every message of the channel. ``expires``: published with the MQTT 5
    Message Expiry Interval. ``shared_subscription``: read through this MQTT 5 shared
    subscription.
    """

    id: str
    channel: str
    action: Literal["send", "receive"]
    role: Literal["gateway", "speaker"]
    title: str
    description: str
    qos: Qos
    retain: bool | None = None
    messages: tuple[str, ...] = ()
    expires: bool = False
    shared_subscription: str | None = None


_SCOPES: Final = {
    "All": "every speaker of the city",
    "District": "every speaker of one district",
    "Village": "every speaker of one village",
    "Speaker": "one speaker (resends and catch-up too)",
}
_LIVE_SCOPES: Final = {k: v for k, v in _SCOPES.items() if k != "Speaker"}


def _operations() -> tuple[Operation, ...]:
    ops: list[Operation] = [
        Operation(
            f"publishCommand{suffix}",
            f"commands{suffix}",
            "send",
            "gateway",
            f"Publish a command for {whom}",
            f"QoS {int(COMMAND_QOS)}, not retained, with the Message Expiry Interval set from "
            "`expires_at_ms` and the Content Type `application/json`. The PUBACK only means the "
            "broker has it.",
            COMMAND_QOS,
            retain=False,
            expires=True,
        )
        for suffix, whom in _SCOPES.items()
    ]
    ops += [
        Operation(
            f"receiveCommand{suffix}",
            f"commands{suffix}",
            "receive",
            "speaker",
            f"Receive commands for {whom}",
            f"Subscribed with QoS {int(COMMAND_QOS)} in a persistent session. Check the "
            "command, record its id, then ack.",
            COMMAND_QOS,
        )
        for suffix, whom in _SCOPES.items()
    ]
    for suffix, whom in _LIVE_SCOPES.items():
        ops.append(
            Operation(
                f"publishLiveAudio{suffix}",
                f"live{suffix}",
                "send",
                "gateway",
                f"Stream live audio to {whom}",
                f"QoS {int(LIVE_FRAME_QOS)}, not retained: one frame every 20 ms, once per group "
                "topic, while a live broadcast's play command (sent first) names the stream.",
                LIVE_FRAME_QOS,
                retain=False,
                messages=("liveAudio",),
            )
        )
        ops.append(
            Operation(
                f"publishLiveControl{suffix}",
                f"live{suffix}",
                "send",
                "gateway",
                f"Pause or end a live stream to {whom}",
                f"QoS {int(LIVE_CONTROL_QOS)}, not retained.",
                LIVE_CONTROL_QOS,
                retain=False,
                messages=("liveControl",),
            )
        )
    ops += [
        Operation(
            f"receiveLive{suffix}",
            f"live{suffix}",
            "receive",
            "speaker",
            f"Receive live streams to {whom}",
            f"Subscribed with QoS {int(LIVE_SUBSCRIPTION_QOS)}, so that pauses and ends arrive "
            f"at QoS {int(LIVE_CONTROL_QOS)} while audio stays at QoS {int(LIVE_FRAME_QOS)}. "
            "Frames of a session the speaker has no play command for, or whose tag does not "
            "verify, are dropped.",
            LIVE_SUBSCRIPTION_QOS,
        )
        for suffix, whom in _LIVE_SCOPES.items()
    ]
    return (
        *ops,
        Operation(
            "publishAck",
            "acks",
            "send",
            "speaker",
            "Acknowledge a command",
            f"QoS {int(ACK_QOS)}, not retained, on the speaker's own ack topic.",
            ACK_QOS,
            retain=False,
        ),
        Operation(
            "receiveAcks",
            "acks",
            "receive",
            "gateway",
            "Receive every speaker's acks",
            f"Subscribed as `{ack_subscription()}` (QoS {int(ACK_QOS)}), an MQTT 5 shared "
            "subscription: each ack goes to one replica of the group.",
            ACK_QOS,
            shared_subscription=ack_subscription(),
        ),
        Operation(
            "publishBirth",
            "presence",
            "send",
            "speaker",
            "Announce the speaker after connecting",
            f"QoS {int(PRESENCE_QOS)}, retained.",
            PRESENCE_QOS,
            retain=True,
            messages=("presenceBirth",),
        ),
        Operation(
            "publishHeartbeat",
            "presence",
            "send",
            "speaker",
            "Send a heartbeat",
            f"QoS {int(HEARTBEAT_QOS)}, not retained.",
            HEARTBEAT_QOS,
            retain=False,
            messages=("presenceHeartbeat",),
        ),
        Operation(
            "publishWill",
            "presence",
            "send",
            "speaker",
            "Go offline (the Will)",
            f"Registered as the Will in CONNECT (QoS {int(PRESENCE_QOS)}, retained) and published "
            "by the broker when the connection drops; published by the speaker itself before a "
            "clean shutdown.",
            PRESENCE_QOS,
            retain=True,
            messages=("presenceWill",),
        ),
        Operation(
            "receivePresence",
            "presence",
            "receive",
            "gateway",
            "Receive every speaker's presence",
            f"Subscribed as `{presence_subscription()}` (QoS {int(PRESENCE_QOS)}), an MQTT 5 "
            "shared subscription.",
            PRESENCE_QOS,
            shared_subscription=presence_subscription(),
        ),
    )


OPERATIONS: Final[tuple[Operation, ...]] = _operations()
