"""Edge brokers bridged to a core broker, all real Mosquittos: commands flow down to speakers on
the edges, acks and presence flow up to the gateway's shared subscriptions, and an edge that
goes down is seen on the core and gets what it missed when it returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from gateway.devicesec.mosquitto import SpeakerPlace, render_acl
from maeul.broker import MosquittoProcess
from maeul.broker_bridge import (
    Bridge,
    EdgeConfig,
    bridge_topics,
    core_acl,
    core_dynsec_commands,
    render_edge_config,
)
from maeul.broker_config import MosquittoConfig, find_mosquitto, render_password_file
from maeul.cli import app
from wire import contract

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary")

CITY = "gc"
EDGES = ("north", "centre", "south")
# Two speakers per edge, each edge serving one district.
SPEAKERS = {
    edge: [SpeakerPlace(f"spk{edge}{n}", f"d-{edge}", f"v-{edge}{n}") for n in range(2)]
    for edge in EDGES
}
PASSWORDS = {place.code: f"pw-{place.code}" for places in SPEAKERS.values() for place in places}
BRIDGE_PASSWORD = "bridge-secret"


# --- the generated configuration --------------------------------------------------------------


def test_the_bridge_carries_the_contracts_channels_in_their_directions() -> None:
    lines = [topic.line() for topic in bridge_topics(CITY, ("d1",))]
    assert lines == [
        "topic maeul/v1/gc/cmd/all in 1",
        "topic maeul/v1/gc/cmd/district/d1 in 1",
        "topic maeul/v1/gc/cmd/village/+ in 1",
        "topic maeul/v1/gc/cmd/speaker/+ in 1",
        "topic maeul/v1/gc/ack/+ out 1",
        "topic maeul/v1/gc/presence/+ out 1",
        "topic maeul/v1/gc/live/all in 1",
        "topic maeul/v1/gc/live/district/d1 in 1",
        "topic maeul/v1/gc/live/village/+ in 1",
    ]
    every_city = [topic.pattern for topic in bridge_topics()]
    assert every_city[0] == "maeul/v1/+/cmd/all"
    # Every speaker subscription is covered by one pattern that flows in.
    ins = [topic.pattern for topic in bridge_topics(CITY) if topic.direction == "in"]
    wanted = contract.speaker_subscriptions(CITY, "d1", "v1", "s1")
    wanted += contract.live_subscriptions(CITY, "d1", "v1")
    assert all(any(_matches(p, t) for p in ins) for t in wanted)


def _matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    return len(p) == len(t) and all(a in ("+", b) for a, b in zip(p, t, strict=True))


def test_edge_config_names_its_core_accounts_and_tls(tmp_path: Path) -> None:
    bridge = Bridge(
        name="north",
        core_host="core.example",
        core_port=8883,
        city=CITY,
        districts=("d1", "d2"),
        username="edge-north",
        password="secret",
        cafile=Path("/certs/core-ca.pem"),
    )
    conf = render_edge_config(EdgeConfig(bridge=bridge))
    lines = conf.splitlines()
    for expected in (
        "connection edge-north",
        "address core.example:8883",
        "bridge_protocol_version mqttv50",
        "cleansession false",
        "remote_username edge-north",
        "remote_password secret",
        "bridge_cafile /certs/core-ca.pem",
        "allow_anonymous false",
        "password_file /mosquitto/config/passwd",
        "acl_file /mosquitto/config/acl",
        "persistence false",
        "topic maeul/v1/gc/cmd/district/d2 in 1",
        "topic maeul/v1/gc/ack/+ out 1",
    ):
        assert expected in lines
    with pytest.raises(ValueError, match="an edge name"):
        Bridge(name="no/slash", core_host="h", core_port=1)
    broken = EdgeConfig(bridge=Bridge(name="n", core_host="h", core_port=1, password="a\nb"))
    with pytest.raises(ValueError, match="one non-empty line"):
        render_edge_config(broken)


# --- a core and three edges -------------------------------------------------------------------


@dataclass
class City:
    core: MosquittoProcess
    edges: dict[str, MosquittoProcess]


def _core(folder: Path) -> MosquittoProcess:
    accounts = {"gateway": "gw-secret", "monitor": "mon-secret"}
    bridges = [f"edge-{edge}" for edge in EDGES]
    accounts |= dict.fromkeys(bridges, BRIDGE_PASSWORD)
    (folder / "passwd").write_text(render_password_file(accounts))
    (folder / "acl").write_text(
        render_acl(
            CITY,
            gateways=["gateway"],
            monitors=["monitor"],
            speakers=[],
        )
        + "".join(f"\n{core_acl(_bridge(edge, core=None))}" for edge in EDGES)
    )
    cfg = MosquittoConfig(
        data_dir=folder / "core",
        allow_anonymous=False,
        password_file=folder / "passwd",
        acl_file=folder / "acl",
    )
    return MosquittoProcess(cfg)


def _edge(folder: Path, name: str, core: MosquittoProcess) -> MosquittoProcess:
    # Every edge gets the same password file and ACL, as the gateway renders them.
    places = [place for group in SPEAKERS.values() for place in group]
    (folder / "edge-passwd").write_text(render_password_file(PASSWORDS))
    (folder / "edge-acl").write_text(render_acl(CITY, gateways=[], monitors=[], speakers=places))
    cfg = MosquittoConfig(
        data_dir=folder / name,
        allow_anonymous=False,
        password_file=folder / "edge-passwd",
        acl_file=folder / "edge-acl",
        bridge=_bridge(name, core),
    )
    return MosquittoProcess(cfg)


def _bridge(name: str, core: MosquittoProcess | None) -> Bridge:
    return Bridge(
        name=name,
        core_host=core.host if core else "core",
        core_port=core.port if core else 1883,
        city=CITY,
        districts=(f"d-{name}",),
        username=f"edge-{name}",
        password=BRIDGE_PASSWORD,
        restart_timeout=(1, 2),
    )


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    with contextlib.ExitStack() as stack:
        core = stack.enter_context(_core(tmp_path))
        edges = {name: stack.enter_context(_edge(tmp_path, name, core)) for name in EDGES}
        yield City(core, edges)


def _session() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return properties


@contextlib.asynccontextmanager
async def _speaker(broker: MosquittoProcess, place: SpeakerPlace) -> AsyncIterator[aiomqtt.Client]:
    """A speaker as the firmware connects: its own client id and session, its will."""
    will = aiomqtt.Will(
        contract.presence_topic(CITY, place.code), b'{"status":"offline"}', qos=1, retain=True
    )
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=place.code,
        password=PASSWORDS[place.code],
        identifier=contract.speaker_client_id(place.code),
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=_session(),
        will=will,
    ) as client:
        for topic in contract.speaker_subscriptions(
            CITY, place.district, place.village, place.code
        ):
            await client.subscribe(topic, qos=1)
        await client.publish(
            contract.presence_topic(CITY, place.code), b'{"status":"online"}', qos=1, retain=True
        )
        yield client


async def _gateway(city: City, identifier: str) -> aiomqtt.Client:
    client = aiomqtt.Client(
        city.core.host,
        city.core.port,
        username="gateway",
        password="gw-secret",
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    await client.__aenter__()
    await client.subscribe(contract.ack_subscription(), qos=1)
    await client.subscribe(contract.presence_subscription(), qos=1)
    return client


async def _collect(client: aiomqtt.Client, into: list[aiomqtt.Message]) -> None:
    async for message in client.messages:
        into.append(message)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition the brokers make true: messages cross processes, not events."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never became true")


async def test_commands_flow_down_and_acks_spread_over_two_gateways(city: City) -> None:
    gateways = [await _gateway(city, f"maeul-gw-{n}") for n in range(2)]
    seen: list[list[aiomqtt.Message]] = [[], []]
    readers = [asyncio.create_task(_collect(g, s)) for g, s in zip(gateways, seen, strict=True)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            speakers = {
                place.code: await stack.enter_async_context(_speaker(city.edges[edge], place))
                for edge, places in SPEAKERS.items()
                for place in places
            }
            # Every birth crossed its edge's bridge up to one of the gateways.
            births = lambda: {  # noqa: E731
                m.topic.value for s in seen for m in s if "presence" in m.topic.value
            }
            await _until(lambda: len(births()) == len(speakers))

            heard: dict[str, list[str]] = {code: [] for code in speakers}

            async def listen(code: str, client: aiomqtt.Client) -> None:
                async for message in client.messages:
                    heard[code].append(message.topic.value)
                    await client.publish(contract.ack_topic(CITY, code), b"ack", qos=1)

            listeners = [asyncio.create_task(listen(c, s)) for c, s in speakers.items()]
            try:
                await gateways[0].publish(contract.command_topic_all(CITY), b"all", qos=1)
                await gateways[0].publish(
                    contract.command_topic_district(CITY, "d-south"), b"south", qos=1
                )
                acks = lambda: [m for s in seen for m in s if "/ack/" in m.topic.value]  # noqa: E731
                await _until(lambda: len(acks()) == len(speakers) + 2)
            finally:
                for task in listeners:
                    task.cancel()
            assert all(topics[0] == contract.command_topic_all(CITY) for topics in heard.values())
            south = {p.code for p in SPEAKERS["south"]}
            assert {c for c, topics in heard.items() if len(topics) == 2} == south
            per_gateway = [sum("/ack/" in m.topic.value for m in s) for s in seen]
            assert all(count > 0 for count in per_gateway), per_gateway
            assert Counter(m.topic.value for m in acks()) == Counter(
                {contract.ack_topic(CITY, c): 2 if c in south else 1 for c in speakers}
            )
    finally:
        for task in readers:
            task.cancel()
        for gateway in gateways:
            await gateway.__aexit__(None, None, None)


async def test_a_crashed_edge_is_seen_on_the_core(city: City) -> None:
    """Its speakers' wills die with it; the bridge's own will says "0" on the core, and its
    speakers' heartbeats stop (the gateway marks them offline after three missed ones)."""
    monitor = aiomqtt.Client(
        city.core.host,
        city.core.port,
        username="monitor",
        password="mon-secret",
        identifier="monitor",
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    await monitor.__aenter__()
    await monitor.subscribe(Bridge(name="north", core_host="h", core_port=1).state_topic, qos=1)
    states: list[aiomqtt.Message] = []
    reader = asyncio.create_task(_collect(monitor, states))
    last = lambda: [m.payload for m in states][-1:]  # noqa: E731
    try:
        await _until(lambda: last() == [b"1"])
        city.edges["north"].kill()
        await _until(lambda: last() == [b"0"])
        city.edges["north"].start()
        await _until(lambda: last() == [b"1"])
    finally:
        reader.cancel()
        await monitor.__aexit__(None, None, None)


def test_the_bridge_account_on_the_core_reads_down_and_writes_up_only() -> None:
    bridge = _bridge("north", core=None)
    acl = core_acl(bridge).splitlines()
    assert acl[0] == "user edge-north"
    assert "topic read maeul/v1/gc/cmd/district/d-north" in acl
    assert "topic write maeul/v1/gc/ack/+" in acl
    assert "topic write $SYS/broker/connection/edge-north/state" in acl
    assert not any("readwrite" in line for line in acl)
    commands = core_dynsec_commands(bridge)
    assert commands[0] == "mosquitto_ctrl dynsec createClient edge-north -c edge-north"
    assert (
        "mosquitto_ctrl dynsec addRoleACL maeul-bridge-north publishClientSend "
        "maeul/v1/gc/presence/+ allow"
    ) in commands


def test_edge_config_command_writes_the_conf_and_prints_the_core_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "edge" / "mosquitto.conf"
    args = ["broker", "edge-config", "--core", "core.example:8883", "--name", "north"]
    args += ["--district", "d01", "--city", CITY, "--out", str(out)]
    monkeypatch.delenv("MQTT_BRIDGE_PASSWORD", raising=False)
    assert CliRunner().invoke(app, args).exit_code == 2
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "s3cret")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    conf = out.read_text().splitlines()
    assert "remote_password s3cret" in conf
    assert "topic maeul/v1/gc/cmd/district/d01 in 1" in conf
    assert out.stat().st_mode & 0o777 == 0o600
    assert "topic write maeul/v1/gc/ack/+" in result.stdout
    bad = CliRunner().invoke(app, [*args[:3], "core.example", *args[4:]])
    assert bad.exit_code == 2
