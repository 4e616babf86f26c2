"""Edge brokers bridged to the core broker: the `connection` block of an edge's mosquitto.conf,
and the whole mosquitto.conf of an edge as `maeul broker edge-config` writes it.

Speakers connect to the edge broker of their district or network region; the edge holds one
MQTT 5 connection to the core broker, where the gateway replicas are. What crosses that bridge
is generated from the wire contract's channels (`wire.contract.channels`), so it cannot drift
from the topics the gateway and the speakers use: every channel the gateway sends on (commands,
which also carry the key ring, and live frames) flows in, down to the edge; every channel a
speaker sends on (acks, which carry the receipts, and presence: births, heartbeats, wills) flows
out, up to the core, where the gateway's shared subscriptions spread them over its replicas.

The bridge asks for a persistent session (cleansession false), but Mosquitto 2.0's MQTT 5 bridge
sends no Session Expiry Interval, so the core keeps nothing for an edge that is away: what was
sent meanwhile waits in the gateway's database, which sends it again when the edge's speakers
come back. For the same reason the edge keeps no sessions across its own restart: a speaker
that finds its session gone is caught up at once, where one that found it kept would be given
a grace to receive from the broker what never reached the edge. The bridge announces itself on
the core's `$SYS/broker/connection/<remote client id>/state` ("1" up, "0" down, retained, "0"
being its will), which a monitor account reads.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from wire.contract import channels
from wire.contract.topics import is_valid_segment

# Stand-ins the contract's topic functions accept, replaced by the wildcards of a bridge pattern.
_STAND_IN: Final = "X0bridge0X"
# The client id the bridge uses on the core: not a speaker's nor a gateway's.
BRIDGE_CLIENT_PREFIX: Final = "edge-"


@dataclass(frozen=True, slots=True)
class BridgeTopic:
    """One `topic` line: a pattern, its direction from the edge's side, and the QoS ceiling."""

    pattern: str
    direction: Literal["in", "out"]
    qos: int

    def line(self) -> str:
        return f"topic {self.pattern} {self.direction} {self.qos}"


def _direction(channel: channels.Channel) -> Literal["in", "out"]:
    if channel.direction.startswith("gateway"):
        return "in"
    if channel.direction.startswith("speaker"):
        return "out"
    raise ValueError(f"channel {channel.id}: no direction in {channel.direction!r}")


def _qos(channel: channels.Channel) -> int:
    """The highest QoS any operation uses on the channel: a bridge subscription caps the QoS of
    what crosses it, so live controls (QoS 1) must not be cut to the frames' QoS 0."""
    used = [op.qos for op in channels.OPERATIONS if op.channel == channel.id]
    return int(max([channel.qos, *used]))


def _pattern(channel: channels.Channel, city: str | None, district: str | None) -> str:
    """The channel's topic with '+' for every segment but the city and the district, if given."""
    names = list(inspect.signature(channel.topic).parameters)
    fixed = {"city": city, "district": district}
    args = [fixed.get(name) or f"{_STAND_IN}{index}" for index, name in enumerate(names)]
    return re.sub(rf"{_STAND_IN}\d+", "+", channel.topic(*args))


def bridge_topics(city: str | None = None, districts: Sequence[str] = ()) -> list[BridgeTopic]:
    """What crosses an edge's bridge, from the contract: every channel of one city (None: every
    city); district-wide commands and live streams only of `districts` when given (an edge that
    serves some districts needs no others'). Deduplicated, in the contract's order."""
    for segment in (city or "x", *districts):
        if not is_valid_segment(segment):
            raise ValueError(f"not a valid city or district code: {segment!r}")
    found: list[BridgeTopic] = []
    for channel in channels.CHANNELS:
        takes_district = "district" in inspect.signature(channel.topic).parameters
        scopes: list[str | None] = list(districts) if districts and takes_district else [None]
        for district in scopes:
            topic = BridgeTopic(
                _pattern(channel, city, district), _direction(channel), _qos(channel)
            )
            if topic not in found:
                found.append(topic)
    return found


@dataclass(frozen=True, kw_only=True)
class Bridge:
    """An edge's MQTT 5 bridge to the core broker (one Mosquitto `connection` block)."""

    name: str  # the edge's name; the bridge is `edge-<name>` on the core
    core_host: str
    core_port: int
    city: str | None = None  # None: bridge every city's topics
    districts: tuple[str, ...] = ()  # () : every district's commands
    username: str | None = None  # the bridge's own account on the core
    password: str | None = None
    # TLS to the core (bridge_cafile ...): the core's CA, and a client certificate if the core
    # requires one. Without cafile the bridge speaks plain MQTT (a private network only).
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    # Seconds between reconnection attempts: jittered back-off from the first to the second.
    restart_timeout: tuple[int, int] = (2, 30)
    keepalive_s: int = 30
    topics: tuple[BridgeTopic, ...] = field(default=())

    def __post_init__(self) -> None:
        if not is_valid_segment(self.name):
            raise ValueError(f"an edge name is a topic segment ([A-Za-z0-9_-]): {self.name!r}")
        if not self.topics:
            object.__setattr__(self, "topics", tuple(bridge_topics(self.city, self.districts)))

    @property
    def client_id(self) -> str:
        return f"{BRIDGE_CLIENT_PREFIX}{self.name}"

    @property
    def state_topic(self) -> str:
        """Where the bridge says "1" (connected) or "0" (down), on the core and on the edge."""
        return f"$SYS/broker/connection/{self.client_id}/state"


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in "\r\n"):
        raise ValueError(f"a mosquitto.conf value is one non-empty line: {text!r}")
    return text


def render_bridge(bridge: Bridge) -> list[str]:
    """The `connection` block: MQTT 5, cleansession false, the contract's topics."""
    host = f"[{bridge.core_host}]" if ":" in bridge.core_host else bridge.core_host
    lines = [
        f"connection {_value(bridge.client_id)}",
        f"address {_value(host)}:{int(bridge.core_port)}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {_value(bridge.client_id)}",
        f"local_clientid {_value(bridge.client_id)}-local",
        # Asks the core to keep the bridge's subscriptions; what was missed comes from the
        # gateway's database either way (module docstring).
        "cleansession false",
        "notifications true",
        "bridge_outgoing_retain true",
        "try_private true",
        "start_type automatic",
        f"restart_timeout {int(bridge.restart_timeout[0])} {int(bridge.restart_timeout[1])}",
        f"keepalive_interval {int(bridge.keepalive_s)}",
    ]
    if bridge.username is not None:
        lines.append(f"remote_username {_value(bridge.username)}")
    if bridge.password is not None:
        lines.append(f"remote_password {_value(bridge.password)}")
    if bridge.cafile is not None:
        lines += [f"bridge_cafile {_value(bridge.cafile)}", "bridge_tls_version tlsv1.2"]
    if bridge.certfile is not None:
        lines.append(f"bridge_certfile {_value(bridge.certfile)}")
    if bridge.keyfile is not None:
        lines.append(f"bridge_keyfile {_value(bridge.keyfile)}")
    lines += [topic.line() for topic in bridge.topics]
    return lines


def core_acl(bridge: Bridge) -> str:
    """The bridge's account in the core's acl_file: read what flows in, write what flows out
    and its own state, nothing else (least privilege, from the same topic list)."""
    lines = [f"user {_value(bridge.username or bridge.client_id)}"]
    lines += [
        f"topic {'read' if t.direction == 'in' else 'write'} {t.pattern}" for t in bridge.topics
    ]
    lines.append(f"topic write {bridge.state_topic}")
    return "\n".join(lines) + "\n"


def core_dynsec_commands(bridge: Bridge) -> list[str]:
    """The same account on a core that keeps its users in the dynamic security plugin, as
    `mosquitto_ctrl dynsec` commands (run with the admin account's -u/-P)."""
    user = _value(bridge.username or bridge.client_id)
    role = f"maeul-bridge-{bridge.name}"
    commands = [
        f"createClient {user} -c {bridge.client_id}",
        f"createRole {role}",
        f"addClientRole {user} {role}",
    ]
    for topic in bridge.topics:
        receive = ("subscribePattern", "publishClientReceive")
        kinds = receive if topic.direction == "in" else ("publishClientSend",)
        commands += [f"addRoleACL {role} {kind} {topic.pattern} allow" for kind in kinds]
    commands.append(f"addRoleACL {role} publishClientSend {bridge.state_topic} allow")
    return [f"mosquitto_ctrl dynsec {command}" for command in commands]


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """An edge broker as deployed: its listener, its speakers' accounts, its bridge."""

    bridge: Bridge
    port: int = 1883
    # The speakers' accounts on the edge: the password file and ACL the gateway renders
    # (`maeul broker files`), copied to every edge, which reloads them on SIGHUP.
    password_file: Path = Path("/mosquitto/config/passwd")
    acl_file: Path = Path("/mosquitto/config/acl")
    # TLS for the speakers (like deploy/mosquitto/conf.d/tls.conf.example); None: plain MQTT.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None


def render_edge_config(edge: EdgeConfig) -> str:
    """A whole mosquitto.conf for an edge broker."""
    bridge = edge.bridge
    lines = [
        f"# Edge broker {bridge.name}, bridged to the core broker {bridge.core_host}:"
        f"{bridge.core_port}.",
        "# Generated by `maeul broker edge-config` from the wire contract; edits are overwritten.",
        "per_listener_settings false",
        "allow_anonymous false",
        "# The speakers' accounts as the gateway renders them (`maeul broker files`): copy them",
        "# here whenever the fleet changes and send the broker SIGHUP; nobody is disconnected.",
        f"password_file {_value(edge.password_file)}",
        f"acl_file {_value(edge.acl_file)}",
        "max_inflight_messages 1000",
        "max_queued_messages 100000",
        "max_queued_bytes 268435456",
        "set_tcp_nodelay true",
        "# No sessions across a restart of the edge: its speakers then come back without one",
        "# and the gateway sends them at once what they missed (module maeul.broker_bridge).",
        "persistence false",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
        "",
        f"listener {int(edge.port)}",
        "max_connections -1",
    ]
    if edge.tls_certfile is not None and edge.tls_keyfile is not None:
        lines += [
            f"certfile {_value(edge.tls_certfile)}",
            f"keyfile {_value(edge.tls_keyfile)}",
            "tls_version tlsv1.2",
        ]
    lines += [
        "",
        "# The bridge: commands and live audio in (down to the speakers), acks and presence out",
        "# (up to the gateway). TLS to the core: bridge_cafile (and bridge_certfile/keyfile when",
        "# the core asks for a client certificate), from `--core-cafile` and friends.",
        *render_bridge(bridge),
    ]
    return "\n".join(lines) + "\n"
