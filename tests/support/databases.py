"""Test databases made from a migrated template instead of migrated one by one."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_database(template: Path, path: Path) -> str:
    """A copy of a migrated SQLite template at `path`, private to its owner; returns its URL."""
    shutil.copyfile(template, path)
    path.chmod(0o600)
    return f"sqlite+aiosqlite:///{path}"
