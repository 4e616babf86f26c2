"""SQLite's page cache is bounded per connection, so the pool's memory has a known ceiling."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from gateway.db import SQLITE_CACHE_KIB, create_engine


async def test_every_sqlite_connection_caches_at_most_its_share(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}")
    try:
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                size = (await connection.execute(text("PRAGMA cache_size"))).scalar_one()
                assert size == -SQLITE_CACHE_KIB  # negative: a size in KiB, not in pages
    finally:
        await engine.dispose()
