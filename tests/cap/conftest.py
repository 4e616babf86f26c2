"""CAP tests run the gateway in process (``tests.flow.conftest``) on SQLite only: what they add
over the broadcast flow is parsing and targeting, which the database does not change, and every
alert they send is spoken and transcoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import copy_database


@pytest.fixture
def migrated_database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    return copy_database(migrated_sqlite, tmp_path / "maeul.db")
