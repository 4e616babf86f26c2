"""The tests' PostgreSQL: the machine's own when one answers, else a temporary cluster.

Tests that need PostgreSQL never skip quietly in CI. When nothing answers on the configured
address (``MAEUL_TEST_PG_HOST``/``MAEUL_TEST_PG_PORT``, default 127.0.0.1:5432), the test run
starts a throwaway cluster of its own with the machine's ``initdb`` (``make test`` installs the
``postgresql`` package when it is missing) on a free port, with trust authentication, and points
every worker at it through those variables; it is removed when the run ends.

Test databases on it are made and dropped here: one per test or module (`create_database`,
`drop_database`), or one a test can take away and give back (`fresh_postgres`).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import net

ADMIN_DATABASE = "test"


def host() -> str:
    return os.environ.get("MAEUL_TEST_PG_HOST", "127.0.0.1")


def port() -> int:
    return int(os.environ.get("MAEUL_TEST_PG_PORT", "5432"))


def url(database: str) -> str:
    return f"postgresql+asyncpg://postgres@{host()}:{port()}/{database}"


def reachable() -> bool:
    return net.reachable(host(), port())


def require(needed_for: str) -> None:
    """Skip (fail in CI, where a skipped database test is a test that did not run) when no
    PostgreSQL answers."""
    if reachable():
        return
    message = f"PostgreSQL not reachable on {host()}:{port()}; {needed_for}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def admin(sql: str) -> None:
    """Run one statement as the superuser, outside any test database."""
    import asyncpg

    conn = await asyncpg.connect(host=host(), port=port(), user="postgres", database=ADMIN_DATABASE)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def unique_name(prefix: str) -> str:
    """A database name no other test or worker is using: `prefix` and random hex."""
    return f"{prefix}_{secrets.token_hex(4)}"


async def create_database(name: str, *, template: str | None = None) -> None:
    """An empty database, or a copy of `template` (which nobody may be connected to)."""
    copy = f' TEMPLATE "{template}"' if template else ""
    await admin(f'CREATE DATABASE "{name}"{copy}')


async def drop_database(name: str) -> None:
    await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(prefix: str, *, template: str | None = None) -> Iterator[str]:
    """For synchronous fixtures: a new database (empty, or a copy of `template`), dropped
    afterwards; yields its name. Fails or skips, as `require` does, with no PostgreSQL."""
    require("PostgreSQL variant")
    name = unique_name(prefix)
    asyncio.run(create_database(name, template=template))
    try:
        yield name
    finally:
        asyncio.run(drop_database(name))


@dataclass
class PostgresDatabase:
    """A database of its own on the tests' PostgreSQL, which a test can take away and give back."""

    name: str

    @property
    def url(self) -> str:
        return url(self.name)

    @staticmethod
    def reachable() -> bool:
        return reachable()

    async def admin(self, sql: str) -> None:
        await admin(sql)

    async def create(self) -> None:
        await create_database(self.name)

    async def drop(self) -> None:
        await self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        await drop_database(self.name)

    async def take_away(self) -> None:
        """Refuse new connections and end every open one, as a crashed database server would."""
        await self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )

    async def give_back(self) -> None:
        await self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@contextlib.asynccontextmanager
async def fresh_postgres(prefix: str, *, needed_for: str) -> AsyncIterator[PostgresDatabase]:
    """A new database on the tests' PostgreSQL, dropped afterwards; the test is skipped (failed
    in CI), saying what it `needed_for`, when no PostgreSQL is reachable."""
    require(needed_for)
    database = PostgresDatabase(unique_name(prefix))
    await database.create()
    try:
        yield database
    finally:
        await database.drop()


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    return versions[-1] if versions else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class TemporaryCluster:
    """A PostgreSQL server of the test run's own, in a temporary directory."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.directory = Path(tempfile.mkdtemp(prefix="maeul-pg-"))
        self.data = self.directory / "data"
        self.port = net.free_port()
        # PostgreSQL refuses to run as root: CI runs as root, so the server runs as `postgres`.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @classmethod
    def find(cls) -> TemporaryCluster | None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            return None
        return cls(initdb, pg_ctl)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=120, cwd=self.directory
        )

    def start(self) -> None:
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=off"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"),
            "-w", "start",
        )  # fmt: skip
        self._run(
            _binary("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", ADMIN_DATABASE,
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def provide(config: pytest.Config) -> None:
    """At the start of a run (not in xdist workers, which inherit the environment): start a
    temporary cluster when no PostgreSQL answers and one can be made."""
    if hasattr(config, "workerinput") or reachable():
        return
    cluster = TemporaryCluster.find()
    if cluster is None:
        return
    cluster.start()
    os.environ["MAEUL_TEST_PG_HOST"] = "127.0.0.1"
    os.environ["MAEUL_TEST_PG_PORT"] = str(cluster.port)
    config.add_cleanup(cluster.stop)
