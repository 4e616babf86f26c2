"""Shared fixtures: a real MQTT broker and real databases for integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from maeul.broker import MosquittoConfig, MosquittoProcess, find_mosquitto, write_broker_file
from tests.support import postgres


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Mosquitto on a free port; the machine's own broker when none can be started."""
    if find_mosquitto() is None:
        if _reachable("127.0.0.1", 1883):
            yield "mqtt://127.0.0.1:1883"
            return
        pytest.skip("no mosquitto binary and no broker on 127.0.0.1:1883")
    directory = tmp_path_factory.mktemp("mosquitto")
    write_broker_file(directory / "dynamic-security.json", json.dumps(OPEN_BROKER))
    config = MosquittoConfig(data_dir=directory, dynsec_file=directory / "dynamic-security.json")
    with MosquittoProcess(config) as broker:
        yield broker.url


# The shared test broker runs the dynamic security plugin as production does, open to anonymous
# clients (the tests' simulated speakers and gateways) through its anonymous group. The tests of
# a locked-down broker start their own (tests/devicesec, tests/e2e/test_security.py).
_EVERYTHING = ("#", "$share/#", "$SYS/#")
OPEN_BROKER = {
    "defaultACLAccess": dict.fromkeys(
        ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe"), False
    ),
    "clients": [],
    "groups": [{"groupname": "anyone", "roles": [{"rolename": "everything"}]}],
    "anonymousGroup": "anyone",
    "roles": [
        {
            "rolename": "everything",
            "acls": [
                {"acltype": kind, "topic": topic, "allow": True}
                for topic in _EVERYTHING
                for kind in (
                    "publishClientSend",
                    "publishClientReceive",
                    "subscribePattern",
                    "unsubscribePattern",
                )
            ],
        }
    ],
}


def pytest_configure(config: pytest.Config) -> None:
    postgres.provide(config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
        return
    postgres.require("PostgreSQL variant")
    name = f"maeul_test_{secrets.token_hex(4)}"
    asyncio.run(postgres.admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres.url(name)
    finally:
        asyncio.run(postgres.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the run: the lost, duplicated and stale deliveries of every fault scenario."""
    from tests.e2e.conftest import FIGURES

    lines = [
        f"{report.nodeid.rsplit('::', 1)[-1]}: {name.removeprefix(FIGURES)}: {value}"
        for outcome in ("passed", "failed")
        for report in terminalreporter.getreports(outcome)
        for name, value in report.user_properties
        if name.startswith(FIGURES)
    ]
    if lines:
        terminalreporter.write_sep("-", "fault scenarios: lost, duplicated and stale deliveries")
        for line in lines:
            terminalreporter.write_line(line)
