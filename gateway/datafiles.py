"""The gateway's data directory is its own: the directory 0700, every file it writes there 0600.

The SQLite database is created 0600 before SQLite opens it (SQLite gives its -wal, -shm and
-journal files the database file's own mode), and files left wider by an older gateway are
narrowed at start. Audio and announcements are written 0600 by their writers; uploads are spilled
to private temporary files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_SQLITE_COMPANIONS: Final = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (made with its parents if missing)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _narrow(path, DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Narrow an existing file to its owner (missing: nothing to do)."""
    with contextlib.suppress(FileNotFoundError):
        _narrow(path, FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except PermissionError:
        # Someone else's (a mount point given to the gateway): said loudly, not fatal.
        log.warning(
            "%s 권한을 %o(으)로 줄이지 못함 / cannot narrow %s to mode %o: not its owner",
            path,
            mode,
            path,
            mode,
        )


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a ``sqlite`` URL (None for another database or an in-memory one)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def secure_database(database_url: str) -> None:
    """Create the SQLite database file 0600 if missing, and narrow it and its companions."""
    path = sqlite_path(database_url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _SQLITE_COMPANIONS)):
        private_file(candidate)


def secure_data_dir(data_dir: Path, database_url: str) -> None:
    """At start: the data directory 0700, the database and its companions 0600."""
    private_dir(data_dir)
    secure_database(database_url)
