"""Runs Alembic migrations from code: `maeul db upgrade`, the container's prestart and tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config

from alembic import command
from gateway.datafiles import secure_database

_HERE = Path(__file__).resolve().parent
# An installed package carries its migrations (the build copies them there, see setup.py); a
# source checkout reads them where developers edit them.
_PACKAGED = _HERE / "_migrations"
_SOURCE = _HERE.parent / "alembic"


def script_location() -> Path:
    """Where the migration scripts are: in the package when installed, else the checkout's.

    Beside an installed package ``alembic/`` is the Alembic library itself, so a directory
    counts only when it has the project's ``env.py`` and ``versions/``.
    """
    for place in (_PACKAGED, _SOURCE):
        if (place / "env.py").is_file() and (place / "versions").is_dir():
            return place
    raise RuntimeError(
        f"no migrations found in {_PACKAGED} or {_SOURCE}: reinstall the maeul package"
    )


def alembic_config(database_url: str) -> Config:
    # No alembic.ini is read: an installed package has none, and env.py configures no logging.
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    secure_database(database_url)  # SQLite: created 0600 before SQLite opens it
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade, database_url, revision)
