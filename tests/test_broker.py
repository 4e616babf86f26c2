"""The local Mosquitto supervisor: its configuration, readiness probe, start, stop and restarts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from maeul import broker_config
from maeul.broker import LocalMosquitto, MosquittoProcess, backoff_delay
from maeul.broker_config import (
    BrokerError,
    MosquittoConfig,
    find_dynsec_plugin,
    find_free_port,
    find_mosquitto,
    hash_password,
    raise_nofile_limit,
    render_config,
    render_password_file,
)
from maeul.mqtt_probe import build_connect, connack_reason, probe, probe_async

BINARY = find_mosquitto()
needs_mosquitto = pytest.mark.skipif(
    BINARY is None,
    reason="no mosquitto binary (install the mosquitto package); broker tests skipped",
)


def _directives(conf: str) -> list[str]:
    return [line for line in conf.splitlines() if line and not line.startswith("#")]


async def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never became true")


# --- configuration ----------------------------------------------------------------------------


def test_anonymous_config_listens_where_asked(tmp_path: Path) -> None:
    conf = render_config(MosquittoConfig(data_dir=tmp_path, port=18999))
    lines = _directives(conf)

    assert lines[0] == "per_listener_settings false"
    assert "allow_anonymous true" in lines
    assert not any(line.startswith(("password_file", "acl_file")) for line in lines)
    listener = lines.index("listener 18999 127.0.0.1")
    assert lines[listener + 1] == "max_connections -1"
    assert "set_tcp_nodelay true" in lines
    assert "persistence false" in lines
    assert f"log_dest file {tmp_path.resolve() / 'mosquitto.log'}" in lines


def test_credentials_config_names_password_and_acl_files(tmp_path: Path) -> None:
    cfg = MosquittoConfig(
        data_dir=tmp_path,
        port=18999,
        allow_anonymous=False,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    )
    lines = _directives(render_config(cfg))

    assert "allow_anonymous false" in lines
    assert f"password_file {tmp_path.resolve() / 'passwd'}" in lines
    assert f"acl_file {tmp_path.resolve() / 'acl'}" in lines
    # Global settings come before the listener, so they apply to it.
    assert lines.index("allow_anonymous false") < lines.index("listener 18999 127.0.0.1")


@pytest.mark.skipif(find_dynsec_plugin() is None, reason="no dynamic security plugin")
def test_dynamic_security_config_loads_the_plugin_with_its_file(tmp_path: Path) -> None:
    cfg = MosquittoConfig(
        data_dir=tmp_path, port=18999, allow_anonymous=False, dynsec_file=tmp_path / "ds.json"
    )
    lines = _directives(render_config(cfg))

    plugin = next(line for line in lines if line.startswith("plugin "))
    assert plugin.endswith("/mosquitto_dynamic_security.so")
    assert f"plugin_opt_config_file {tmp_path.resolve() / 'ds.json'}" in lines
    assert lines.index(plugin) < lines.index("listener 18999 127.0.0.1")


def test_persistence_stays_in_the_data_dir(tmp_path: Path) -> None:
    lines = _directives(render_config(MosquittoConfig(data_dir=tmp_path, port=1, persistence=True)))

    assert "persistence true" in lines
    assert f"persistence_location {tmp_path.resolve()}/" in lines


def test_config_needs_a_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        render_config(MosquittoConfig(data_dir=tmp_path))


def test_config_refuses_line_breaks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line break"):
        render_config(MosquittoConfig(data_dir=tmp_path, port=1, host="127.0.0.1\nuser root"))


def test_password_hash_is_mosquittos_pbkdf2_format() -> None:
    salt = b"0123456789ab"
    hashed = hash_password("s3cret", salt=salt)

    _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
    assert (kind, iterations) == ("7", "101")
    assert base64.b64decode(salt_b64) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
    assert base64.b64decode(digest_b64) == expected
    assert hash_password("s3cret") != hash_password("s3cret")  # a fresh salt each time


def test_password_file_refuses_bad_user_names() -> None:
    assert render_password_file({"gateway": "pw"}).startswith("gateway:$7$")
    for name in ("", "a:b", "a\nb"):
        with pytest.raises(ValueError, match="user name"):
            render_password_file({name: "pw"})


# --- packets and back-off ---------------------------------------------------------------------


def test_connect_packet_is_mqtt5_with_credentials() -> None:
    packet = build_connect("probe", username="u", password="p")

    assert packet[0] == 0x10
    assert packet[2:8] == b"\x00\x04MQTT"
    assert packet[8] == 5  # protocol level
    assert packet[9] == 0x02 | 0x80 | 0x40  # clean start, user name, password
    assert packet[1] == len(packet) - 2
    assert packet.endswith(b"\x00\x05probe\x00\x01u\x00\x01p")


def test_connack_reason_waits_for_the_whole_header() -> None:
    assert connack_reason(b"") is None
    assert connack_reason(b"\x20") is None
    assert connack_reason(b"\x20\x03\x00") is None
    assert connack_reason(b"\x20\x03\x00\x00\x00") == 0
    assert connack_reason(b"\x20\x03\x00\x87\x00") == 0x87
    with pytest.raises(BrokerError, match="CONNACK"):
        connack_reason(b"\x30\x00")


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    for failures, ceiling in ((0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (500, 30.0)):
        for _ in range(20):
            assert ceiling / 2 <= backoff_delay(failures) <= ceiling


def test_free_port_can_be_bound() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_binary_is_a_broker_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_config, "FALLBACK_BINARY", tmp_path / "no-mosquitto")

    assert find_mosquitto() is None
    with pytest.raises(BrokerError, match="mosquitto"):
        MosquittoProcess(MosquittoConfig(data_dir=tmp_path))


# --- the synchronous twin ---------------------------------------------------------------------


@needs_mosquitto
def test_process_answers_mqtt_and_stops(tmp_path: Path) -> None:
    with MosquittoProcess(MosquittoConfig(data_dir=tmp_path)) as mosquitto:
        assert mosquitto.running
        assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
        assert probe(mosquitto.host, mosquitto.port) == 0
        port = mosquitto.port
    assert not mosquitto.running
    assert mosquitto.pid is None
    with pytest.raises(ConnectionRefusedError):
        probe("127.0.0.1", port)
    mosquitto.stop()  # stopping twice is fine


@needs_mosquitto
def test_process_comes_back_on_the_same_port_after_a_kill(tmp_path: Path) -> None:
    with MosquittoProcess(MosquittoConfig(data_dir=tmp_path)) as mosquitto:
        port, first = mosquitto.port, mosquitto.pid
        mosquitto.kill()
        assert not mosquitto.running

        mosquitto.start()
        assert mosquitto.port == port
        assert mosquitto.pid != first
        assert probe(mosquitto.host, port) == 0

        mosquitto.restart()
        assert probe(mosquitto.host, port) == 0


@needs_mosquitto
def test_child_may_open_as_many_files_as_the_hard_limit(tmp_path: Path) -> None:
    limits = Path("/proc/self/limits")
    if not limits.exists():
        pytest.skip("no /proc: cannot read a process's limits here")
    with MosquittoProcess(MosquittoConfig(data_dir=tmp_path)) as mosquitto:
        line = next(
            row
            for row in Path(f"/proc/{mosquitto.pid}/limits").read_text().splitlines()
            if row.startswith("Max open files")
        )
    soft, hard = line.split()[3:5]
    assert soft == hard


@needs_mosquitto
def test_credentials_and_acl_are_enforced(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(render_password_file({"gateway": "gw-secret"}))
    (tmp_path / "acl").write_text("user gateway\ntopic readwrite maeul/#\n")
    cfg = MosquittoConfig(
        data_dir=tmp_path / "broker",
        allow_anonymous=False,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    )
    with MosquittoProcess(cfg) as mosquitto:
        host, port = mosquitto.host, mosquitto.port
        assert probe(host, port, username="gateway", password="gw-secret") == 0
        assert probe(host, port, username="gateway", password="wrong") != 0
        assert probe(host, port) != 0  # anonymous


@needs_mosquitto
def test_a_broker_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    cfg = MosquittoConfig(data_dir=tmp_path, acl_file=tmp_path / "missing-acl")
    mosquitto = MosquittoProcess(cfg)

    with pytest.raises(BrokerError, match="missing-acl"):
        mosquitto.start()
    assert not mosquitto.running


def _silent_binary(tmp_path: Path) -> str:
    """A stand-in broker that runs but never answers MQTT."""
    fake = tmp_path / "silent-broker"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    return str(fake)


def test_a_broker_that_never_answers_is_killed(tmp_path: Path) -> None:
    mosquitto = MosquittoProcess(
        MosquittoConfig(data_dir=tmp_path), binary=_silent_binary(tmp_path), ready_timeout=0.5
    )
    with pytest.raises(BrokerError, match="did not answer an MQTT CONNECT"):
        mosquitto.start()
    assert not mosquitto.running
    assert mosquitto.pid is None


async def test_a_local_broker_that_never_answers_is_killed(tmp_path: Path) -> None:
    mosquitto = LocalMosquitto(
        MosquittoConfig(data_dir=tmp_path), binary=_silent_binary(tmp_path), ready_timeout=0.5
    )
    with pytest.raises(BrokerError, match="did not answer an MQTT CONNECT"):
        await mosquitto.start()
    assert not mosquitto.running
    assert mosquitto.pid is None


@needs_mosquitto
def test_a_taken_fixed_port_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mosquitto = MosquittoProcess(MosquittoConfig(data_dir=tmp_path, port=port))
        with pytest.raises(BrokerError, match="Address already in use"):
            mosquitto.start()


@needs_mosquitto
def test_a_lost_race_for_a_free_port_picks_another(tmp_path: Path) -> None:
    mosquitto = MosquittoProcess(MosquittoConfig(data_dir=tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", mosquitto.port))
        taken.listen()
        with mosquitto:
            assert mosquitto.port != taken.getsockname()[1]
            assert probe(mosquitto.host, mosquitto.port) == 0


# --- the asyncio front end and its supervisor -------------------------------------------------


@needs_mosquitto
async def test_local_broker_carries_mqtt5_messages(tmp_path: Path) -> None:
    async with LocalMosquitto(MosquittoConfig(data_dir=tmp_path)) as mosquitto:
        assert await probe_async(mosquitto.host, mosquitto.port) == 0
        topic = f"maeul/test/{uuid.uuid4().hex}"
        async with aiomqtt.Client(
            mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(topic, qos=1)
            await client.publish(topic, b"hello", qos=1)
            async with asyncio.timeout(30):
                message = await anext(aiter(client.messages))
        assert message.payload == b"hello"
    assert not mosquitto.running


@needs_mosquitto
async def test_supervisor_restarts_a_killed_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="maeul.broker")
    mosquitto = LocalMosquitto(MosquittoConfig(data_dir=tmp_path))
    await mosquitto.start()
    stop = asyncio.Event()
    supervisor = asyncio.create_task(mosquitto.supervise(stop))
    try:
        first = mosquitto.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)

        # A new process exists before it answers; the supervisor logs when it answers.
        await _eventually(lambda: "다시 시작했습니다" in caplog.text)
        assert mosquitto.running
        assert mosquitto.pid != first
        assert await probe_async(mosquitto.host, mosquitto.port) == 0
        assert "다시 시작합니다" in caplog.text

        second = mosquitto.pid
        await mosquitto.kill()  # a second crash is handled the same way
        await _eventually(lambda: mosquitto.running and mosquitto.pid != second)
    finally:
        stop.set()
        await supervisor
        await mosquitto.stop()
    assert not mosquitto.running


@needs_mosquitto
async def test_supervisor_leaves_a_deliberate_stop_alone(tmp_path: Path) -> None:
    mosquitto = LocalMosquitto(MosquittoConfig(data_dir=tmp_path))
    stop = asyncio.Event()
    supervisor = asyncio.create_task(mosquitto.supervise(stop))
    try:
        await mosquitto.start()
        first = mosquitto.pid
        await mosquitto.restart()
        assert mosquitto.running
        assert mosquitto.pid != first

        await mosquitto.stop()
        # Twice the longest first back-off: a supervisor that took the stop for a crash would
        # have brought the broker back by then.
        await asyncio.sleep(1.0)
        assert not mosquitto.running
        assert not supervisor.done()
    finally:
        stop.set()
        await supervisor
    await mosquitto.stop()  # idempotent


@needs_mosquitto
async def test_supervisor_returns_on_stop_and_leaves_the_broker_up(tmp_path: Path) -> None:
    async with LocalMosquitto(MosquittoConfig(data_dir=tmp_path)) as mosquitto:
        stop = asyncio.Event()
        supervisor = asyncio.create_task(mosquitto.supervise(stop))
        await asyncio.sleep(0)
        stop.set()
        await supervisor
        assert mosquitto.running
        assert await probe_async(mosquitto.host, mosquitto.port) == 0


@needs_mosquitto
async def test_local_broker_start_failure_is_a_broker_error(tmp_path: Path) -> None:
    mosquitto = LocalMosquitto(MosquittoConfig(data_dir=tmp_path, acl_file=tmp_path / "nope"))
    with pytest.raises(BrokerError, match="nope"):
        await mosquitto.start()
    assert not mosquitto.running
    await mosquitto.stop()


def test_raising_the_file_limit_of_a_process_that_exited_is_not_an_error() -> None:
    # A broker that fails on its configuration can exit before its limit is raised.
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert raise_nofile_limit(proc.pid) == 0
