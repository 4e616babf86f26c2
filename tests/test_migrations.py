"""Migrations run from empty to head on SQLite and PostgreSQL and match the models exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from gateway.db import create_engine, import_models
from gateway.migrations import upgrade


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, import_models()))


async def _compare(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_diff)
    finally:
        await engine.dispose()


def test_head_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # idempotent: a second run is a no-op
    assert asyncio.run(_compare(database_url)) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_migrating_together_take_turns(database_url: str) -> None:
    """Four replicas starting at once on a new PostgreSQL database: one migrates, the others
    wait on the advisory lock and find nothing to do (without it, they fail on tables the first
    one created)."""
    # Processes, as replicas are (Alembic's context is one per process).
    replicas = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, gateway.migrations as m; m.upgrade(sys.argv[1])",
                database_url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [replica.communicate(timeout=300)[0] for replica in replicas]
    assert [r.returncode for r in replicas] == [0, 0, 0, 0], outputs
    assert asyncio.run(_compare(database_url)) == []
