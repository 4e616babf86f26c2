"""Who may read and write which broker topics, and with which client id: the rule as data.

One rule for every broker. Mosquitto's acl_file (`gateway.devicesec.mosquitto.render_acl`) is
rendered from it, and a clustered broker asks the gateway per connect, subscribe and publish
(`gateway.devicesec.broker_hooks`), which decides with `permits` on the same grants, so the two
cannot drift apart. Pure functions: no I/O, no database.

Every account reads its own command topic and writes its own ack and presence topics (Mosquitto's
``%u`` patterns: the account's user name in the topic's last segment). Beyond that, a gateway
reads and writes the whole tree, a monitor reads the broker's ``$SYS`` statistics, and a speaker
reads the commands and live streams of its city, its district and its village.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from wire import contract

Access = Literal["read", "write", "readwrite"]
Role = Literal["gateway", "monitor", "speaker"]
Action = Literal["publish", "subscribe"]

# A stand-in the contract accepts as a speaker segment; replaced by the real user name, which
# may hold characters a contract segment may not ('.', '@'), as Mosquitto's %u does.
STAND_IN: Final = "self"
_SHARED: Final = "$share/"


@dataclass(frozen=True)
class Grant:
    access: Access
    topic: str  # a topic filter: '+' and '#' as MQTT means them


@dataclass(frozen=True)
class Place:
    """Where a speaker sits: the groups whose commands and live streams it reads."""

    district: str
    village: str


def _own_topic(topic_for: Callable[[str, str], str], city: str, name: str) -> str:
    head, _, last = topic_for(city, STAND_IN).rpartition("/")
    if last != STAND_IN:
        raise ValueError("the account is not the last segment of this topic")
    return f"{head}/{name}"


def own_grants(city: str, name: str) -> list[Grant]:
    """Every account's: its own commands, its own acks and presence (`name`: its user name, or
    ``%u`` for Mosquitto's patterns)."""
    return [
        Grant("read", _own_topic(contract.command_topic_speaker, city, name)),
        Grant("write", _own_topic(contract.ack_topic, city, name)),
        Grant("write", _own_topic(contract.presence_topic, city, name)),
    ]


def gateway_grants() -> list[Grant]:
    return [Grant("readwrite", f"{contract.TOPIC_ROOT}/#")]


def monitor_grants() -> list[Grant]:
    return [Grant("read", "$SYS/#")]


def speaker_grants(city: str, place: Place) -> list[Grant]:
    """A speaker's beyond its own: the city's, its district's and its village's commands and
    live streams."""
    return [
        Grant("read", contract.command_topic_all(city)),
        Grant("read", contract.command_topic_district(city, place.district)),
        Grant("read", contract.command_topic_village(city, place.village)),
        *(
            Grant("read", topic)
            for topic in contract.live_subscriptions(city, place.district, place.village)
        ),
    ]


def grants_for(city: str, username: str, role: Role, place: Place | None = None) -> list[Grant]:
    """Everything one account may read and write."""
    if role == "gateway":
        extra = gateway_grants()
    elif role == "monitor":
        extra = monitor_grants()
    elif place is None:
        raise ValueError("a speaker's grants need its place")
    else:
        extra = speaker_grants(city, place)
    return own_grants(city, username) + extra


def _covers(granted: str, wanted: str) -> bool:
    """Whether the filter `granted` includes everything `wanted` names: a topic to publish to,
    or a filter to subscribe with (whose '+' and '#' a grant must cover with its own)."""
    have, want = granted.split("/"), wanted.split("/")
    for index, part in enumerate(have):
        if part == "#":
            # MQTT: 'a/#' also matches 'a' itself; '$SYS' is never matched by a leading '#'.
            return not (index == 0 and want[0].startswith("$"))
        if index >= len(want):
            return False
        if part == "+":
            if want[index] == "#" or (index == 0 and want[0].startswith("$")):
                return False
            continue
        if part != want[index]:
            return False
    return len(have) == len(want)


def _well_formed(topic: str, action: Action) -> bool:
    if not topic or "\0" in topic:
        return False
    parts = topic.split("/")
    if action == "publish":
        return not any("+" in part or "#" in part for part in parts)
    for index, part in enumerate(parts):
        if part in ("+", "#"):
            if part == "#" and index != len(parts) - 1:
                return False
        elif "+" in part or "#" in part:
            return False
    return True


def unshared(topic: str) -> str | None:
    """The filter inside a shared subscription (``$share/group/filter``), or the filter itself;
    None for a malformed shared subscription."""
    if not topic.startswith(_SHARED):
        return topic
    _, group, rest = topic.split("/", 2) if topic.count("/") >= 2 else ("", "", "")
    if not group or not rest or "+" in group or "#" in group:
        return None
    return rest


def permits(grants: Sequence[Grant], action: Action, topic: str) -> bool:
    """Whether `grants` allow publishing to `topic`, or subscribing with the filter `topic`
    (a shared subscription is judged by the filter inside it). Anything not granted is denied."""
    wanted = unshared(topic) if action == "subscribe" else topic
    if wanted is None or not _well_formed(wanted, action):
        return False
    needed = "write" if action == "publish" else "read"
    return any(
        grant.access in (needed, "readwrite") and _covers(grant.topic, wanted) for grant in grants
    )


def monitor_client_id(username: str) -> str:
    """The one client id a monitor account connects under: its user name."""
    return username


def client_id_allowed(role: Role, username: str, client_id: str, gateway_prefix: str) -> bool:
    """A speaker connects only as its own client id, a monitor only as its own
    (`monitor_client_id`), and nobody else takes a speaker's id (the broker would hand them its
    session and cut it off); a gateway's ids (random per start) are the gateways'."""
    speaker_prefix = contract.SPEAKER_CLIENT_PREFIX
    if role == "speaker":
        return contract.is_valid_segment(username) and client_id == contract.speaker_client_id(
            username
        )
    if not client_id or client_id.startswith(speaker_prefix):
        return False
    if role == "monitor":
        return client_id == monitor_client_id(username)
    return role == "gateway" or not client_id.startswith(f"{gateway_prefix}-")
