"""Migrations run from empty to head on SQLite and PostgreSQL and match the models exactly."""

from __future__ import annotations

import asyncio

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
