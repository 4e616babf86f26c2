"""Shared fixtures: a real MQTT broker and real databases for integration and end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maeul.broker import MosquittoProcess
from maeul.broker_config import MosquittoConfig, find_mosquitto, write_broker_file
from maeul.kannel import KannelConfig, KannelProcess
from tests.support import postgres
from tests.support.databases import copy_database
from tests.support.net import reachable


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Mosquitto on a free port; the machine's own broker when none can be started."""
    if find_mosquitto() is None:
        if reachable("127.0.0.1", 1883):
            yield "mqtt://127.0.0.1:1883"
            return
        pytest.skip("no mosquitto binary and no broker on 127.0.0.1:1883")
    directory = tmp_path_factory.mktemp("mosquitto")
    write_broker_file(directory / "dynamic-security.json", json.dumps(OPEN_BROKER))
    config = MosquittoConfig(data_dir=directory, dynsec_file=directory / "dynamic-security.json")
    with MosquittoProcess(config) as broker:
        yield broker.url


@pytest.fixture(scope="session")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KannelProcess]:
    """A private Kannel (bearerbox, smsbox and the package's fake SMSC) on free ports, once per
    test process; `kannel.smsc` reads what reached the fake SMSC."""
    with KannelProcess(KannelConfig(data_dir=tmp_path_factory.mktemp("kannel"))) as running:
        yield running


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
    _cheap_password_hashes()


def _cheap_password_hashes() -> None:
    """Hash passwords at argon2's smallest cost in this process, as Django's tests do with their
    fastest hasher: production's cost (64 MiB, three passes) is there to slow an attacker and was
    a fifth of the in-process tests' time. What is checked (hashes verify, wrong passwords fail,
    unknown names cost a hash) does not depend on it; gateways the tests start as processes keep
    production's cost."""
    from argon2 import PasswordHasher

    from gateway.users import logins

    logins._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
        return
    with postgres.scratch_database("maeul_test") as name:
        yield postgres.url(name)


# Migrating a new database takes longer than most tests that use one: each worker migrates one
# template of each kind, and a test gets a copy (a file copy for SQLite, CREATE DATABASE ...
# TEMPLATE for PostgreSQL). tests/test_migrations.py migrates empty databases of its own.
@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway.migrations import upgrade

    path = tmp_path_factory.mktemp("template") / "maeul.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    assert not path.with_name("maeul.db-wal").exists(), "the template is whole in one file"
    return path


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[str]:
    from gateway.migrations import upgrade

    with postgres.scratch_database("maeul_template") as name:
        upgrade(postgres.url(name))
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the newest schema, empty of rows: SQLite, and PostgreSQL."""
    if request.param == "sqlite":
        yield copy_database(request.getfixturevalue("migrated_sqlite"), tmp_path / "maeul.db")
        return
    template = request.getfixturevalue("_migrated_postgres")
    with postgres.scratch_database("maeul_test", template=template) as name:
        yield postgres.url(name)


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


# The slowest files, slowest first, alternating end-to-end files (which spend much of their time
# waiting for speakers, expiries and clocks) with in-process ones (which keep a core busy), so
# the two workers rarely wait at the same time. The workers take whole files in collection order
# (make test turns off xdist's reordering by size); starting the long ones first keeps one from
# running alone at the end while the other worker waits: the longest-first rule of scheduling.
SLOW_FIRST = (
    "tests/e2e/test_quiet_hours.py",
    "tests/flow/test_schedules.py",
    "tests/e2e/test_faults.py",
    "tests/sending/test_policy_matrix.py",
    "tests/e2e/test_jinju.py",
    "tests/flow/test_roles.py",
    "tests/e2e/test_contract.py",
    "tests/test_bench_smoke.py",
    "tests/e2e/test_preemption.py",
    "tests/flow/test_approvers.py",
    "tests/e2e/test_live.py",
    "tests/browser/test_console_walk.py",
    "tests/e2e/test_device_agent.py",
    "tests/packaging/test_wheel.py",
    "tests/e2e/test_resend.py",
    "tests/browser/test_pages.py",
    "tests/e2e/test_receiver_heard_e2e.py",
    "tests/browser/test_phone_pages.py",
    "tests/e2e/test_edge_brokers.py",
    "tests/e2e/test_schedules.py",
    "tests/test_api_contract.py",
    "tests/browser/test_board_follows.py",
    "tests/flow/test_broadcast_flow.py",
    "tests/test_run_stop.py",
    "tests/fallback/test_fallback_e2e.py",
    "tests/residents/test_seed_households.py",
    "tests/sms/test_kannel.py",
    "tests/e2e/test_give_up.py",
    "tests/flow/test_hostile_uploads.py",
    "tests/e2e/test_live_suspension.py",
    "tests/flow/test_approvals.py",
    "tests/web/test_stream_replicas.py",
    "tests/live/test_hub.py",
    "tests/e2e/test_stop.py",
    "tests/flow/test_audit.py",
    "tests/e2e/test_security.py",
    "tests/flow/test_send_limits.py",
    "tests/flow/test_logins.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(SLOW_FIRST)}
    root = Path(__file__).resolve().parents[1]

    def key(item: pytest.Item) -> int:
        try:
            relative = Path(str(item.path)).resolve().relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(relative, len(rank))

    items.sort(key=key)  # stable: every file keeps its own order


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """More settings for the in-process gateway of the flow tests' `stack` (a directory's
    conftest or a module overrides it)."""
    return {}
