"""Test databases: copies of the migrated SQLite template, and databases seeded with a city."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root conftest imports this module: the gateway loads when a test needs it
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from gateway.seed import Preset


def copy_database(template: Path, path: Path) -> str:
    """A copy of a migrated SQLite template at `path`, private to its owner; returns its URL."""
    shutil.copyfile(template, path)
    path.chmod(0o600)
    return f"sqlite+aiosqlite:///{path}"


async def seed_city(
    sessions: async_sessionmaker[AsyncSession], *, preset: Preset, city_code: str
) -> None:
    """Fill a migrated database with a preset city, in a transaction of its own."""
    from gateway.seed import seed

    async with sessions() as session:
        await seed(session, preset=preset, city_code=city_code)
        await session.commit()


async def seed_database(url: str, *, preset: Preset = "jinju", city_code: str = "jinju") -> str:
    """Migrate `url` and fill it with a preset city; returns `url`."""
    from gateway.db import create_engine, create_sessions
    from gateway.migrations import upgrade_async

    await upgrade_async(url)
    engine = create_engine(url)
    try:
        await seed_city(create_sessions(engine), preset=preset, city_code=city_code)
    finally:
        await engine.dispose()
    return url
