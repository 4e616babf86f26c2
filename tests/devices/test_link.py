"""The speaker's MQTT link on brokers of its own: TLS with a client certificate, and coming back
by itself after the broker restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.hub import Hub
from devices.link import Incoming, Link
from devices.link_settings import BrokerAddress, LinkSettings, tls_context
from gateway.devicesec.mosquitto import SpeakerPlace, render_acl
from maeul.broker_config import render_password_file
from tests.devices.brokers import mosquitto, needs_mosquitto
from tests.devices.observer import Observer
from tests.support.net import free_port
from wire import contract

IDENTITY = contract.SpeakerIdentity(city="linkcity", district="d1", village="v1", speaker="s1")


def test_broker_urls_are_parsed() -> None:
    plain = BrokerAddress.parse("mqtt://127.0.0.1")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1883, False, None)
    secure = BrokerAddress.parse("mqtts://spk%2F1:p%40ss@broker.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "spk/1",
        "p@ss",
    )
    assert "p@ss" not in repr(secure)
    assert secure.redacted() == "mqtts://spk/1:***@broker.example:8883"
    for bad in ("http://h", "mqtt://"):
        with pytest.raises(ValueError, match="MQTT URL"):
            BrokerAddress.parse(bad)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ip: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def _until(check: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


@needs_mosquitto
async def test_a_link_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("maeul test ca", ca_key)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    _write(tmp_path / "ca", ca, ca_key)
    _write(
        tmp_path / "server",
        _cert("broker", server_key, (ca.subject, ca_key), ip="127.0.0.1"),
        server_key,
    )
    _write(tmp_path / "speaker", _cert("s1", client_key, (ca.subject, ca_key)), client_key)
    port = free_port()
    tls = (
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n"
    )
    received: list[Incoming] = []
    with mosquitto(tmp_path, port, tls):
        hub = Hub()
        settings = LinkSettings(
            broker=BrokerAddress.parse(f"mqtts://127.0.0.1:{port}"),
            tls=tls_context(
                ca_file=str(tmp_path / "ca.pem"),
                cert_file=str(tmp_path / "speaker.pem"),
                key_file=str(tmp_path / "speaker.key"),
            ),
        )
        link = Link(hub, settings, IDENTITY, on_message=received.append)
        try:
            assert await link.connect()
            # The link hears its own command topic over TLS: publish there through a second
            # link (same certificate) and read it back.
            other = contract.SpeakerIdentity(
                city="linkcity", district="d1", village="v1", speaker="s2"
            )
            sender = Link(hub, settings, other, on_message=lambda _: None)
            assert await sender.connect()
            sender._client.publish(
                contract.command_topic_speaker("linkcity", "s1"), b"hello", qos=1
            )
            await _until(lambda: bool(received))
            assert received[0].payload == b"hello"
            assert received[0].topic == contract.command_topic_speaker("linkcity", "s1")
            await sender.close()
        finally:
            await link.close()
            await hub.close()

        untrusted = LinkSettings(broker=settings.broker, tls=tls_context(), connect_timeout_s=3)
        hub = Hub()
        stranger = Link(hub, untrusted, IDENTITY, on_message=received.append)
        try:
            assert not await stranger.connect()  # the broker's CA is not in the system store
            assert stranger.last_error
        finally:
            await stranger.close()
            await hub.close()


@needs_mosquitto
async def test_a_link_comes_back_by_itself_after_the_broker_restarts(tmp_path: Path) -> None:
    port = free_port()
    hub = Hub()
    settings = LinkSettings(
        broker=BrokerAddress.parse(f"mqtt://127.0.0.1:{port}"),
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
        connect_timeout_s=2,
    )
    link = Link(hub, settings, IDENTITY, on_message=lambda _: None)
    try:
        with mosquitto(tmp_path, port):
            assert await link.connect()
        await _until(lambda: not link.online)
        with mosquitto(tmp_path, port):
            await _until(lambda: link.online)
            assert link.connects == 2
            assert link.generation == 2
    finally:
        await link.close()
        await hub.close()


@needs_mosquitto
async def test_per_speaker_credentials_under_the_production_acl(tmp_path: Path) -> None:
    # The ACL a broker without the dynamic security plugin is given (GET /api/v1/broker/acl).
    acl = tmp_path / "acl"
    acl.write_text(
        render_acl(
            IDENTITY.city,
            gateways=["gateway"],
            monitors=[],
            speakers=[SpeakerPlace(IDENTITY.speaker, IDENTITY.district, IDENTITY.village)],
        )
    )
    passwd = tmp_path / "passwd"
    passwd.write_text(render_password_file({"s1": "right", "gateway": "gw-secret"}))
    port = free_port()
    extra = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
    received: list[Incoming] = []
    hub = Hub()
    with mosquitto(tmp_path, port, extra):
        wrong = Link(
            hub,
            LinkSettings(
                broker=BrokerAddress.parse(f"mqtt://s1:wrong@127.0.0.1:{port}"),
                connect_timeout_s=3,
            ),
            IDENTITY,
            on_message=received.append,
        )
        assert not await wrong.connect()
        assert "refused" in (wrong.last_error or "")
        await wrong.close()

        link = Link(
            hub,
            LinkSettings(broker=BrokerAddress.parse(f"mqtt://s1:right@127.0.0.1:{port}")),
            IDENTITY,
            on_message=received.append,
        )
        try:
            async with Observer(f"mqtt://gateway:gw-secret@127.0.0.1:{port}", "linkcity") as gw:
                assert await link.connect()
                await gw.publish(contract.command_topic_village("linkcity", "v1"), b"for v1")
                await _until(lambda: bool(received))
                link.publish_ack(
                    contract.Ack(
                        command_id=contract.new_id(),
                        broadcast_id=contract.new_id(),
                        speaker="s1",
                        status=contract.AckStatus.RECEIVED,
                        at_ms=contract.now_ms(),
                    )
                )
                await gw.until(lambda: bool(gw.acks), within=10)
                assert gw.acks[0].speaker == "s1"
        finally:
            await link.close()
            await hub.close()


async def _birth(mqtt_url: str, identity: contract.SpeakerIdentity) -> contract.Presence:
    """The retained birth a link left on the broker."""
    address = BrokerAddress.parse(mqtt_url)
    async with aiomqtt.Client(
        address.host, address.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(contract.presence_topic(identity.city, identity.speaker), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return contract.decode_presence(message.payload)
    raise AssertionError("no birth")


async def test_the_birth_says_whether_the_broker_kept_the_session(mqtt_url: str) -> None:
    identity = contract.SpeakerIdentity(
        city=f"kept{secrets.token_hex(3)}", district="d1", village="v1", speaker="s1"
    )
    settings = LinkSettings(broker=BrokerAddress.parse(mqtt_url), connect_timeout_s=5)
    seen = []
    for _ in range(2):
        hub = Hub()
        link = Link(hub, settings, identity, on_message=lambda _: None)
        try:
            assert await link.connect()
            birth = await _birth(mqtt_url, identity)
            assert birth.status == "online"
            seen.append(birth.session_present)
        finally:
            await link.close()
            await hub.close()
    assert seen == [False, True], "a new session first, then the one the broker kept"
