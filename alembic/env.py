"""Alembic environment: runs migrations on the gateway's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import Connection

from alembic import context
from gateway.db import create_engine, import_models

config = context.config
target_metadata = import_models()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from gateway.settings import Settings

    return Settings(environment="development").database_url


# Replicas starting together each run the migrations: on PostgreSQL the first takes this
# transaction-level advisory lock and the others wait for it, then find nothing left to do.
# (SQLite serves one replica, and its write lock already serializes.)
MIGRATION_LOCK = 0x6D_6165_756C  # "maeul"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _online() -> None:
    engine = create_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
