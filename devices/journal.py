"""The speaker's durable journal: every command's state, in SQLite on disk.

Each `SqliteJournal.record` is its own transaction, synced to disk (WAL, synchronous=FULL)
before it returns, so a command is journaled before it is acknowledged and neither a crash nor
a power cut makes it play twice or vanish unanswered. The journal also keeps the signing keys
learned from the gateway's key ring and those it revoked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from devices.states import JournalEntry, Proof, merge_entry
from wire import contract

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS commands (
    command_id    TEXT PRIMARY KEY,
    broadcast_id  TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT,
    audio_sha256  TEXT,
    played_ms     INTEGER,
    level_dbfs    REAL,
    expires_at_ms INTEGER,
    payload       BLOB,
    updated_at_ms INTEGER NOT NULL,
    nonce         TEXT
);
CREATE TABLE IF NOT EXISTS learned_keys (
    key_id        TEXT PRIMARY KEY,
    public_key    BLOB NOT NULL,
    learned_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_keys (
    key_id        TEXT PRIMARY KEY,
    revoked_at_ms INTEGER NOT NULL
)
"""
_COLUMNS: Final = (
    "command_id, broadcast_id, state, reason, audio_sha256, played_ms, level_dbfs, "
    "expires_at_ms, payload, nonce"
)
# What a restart must settle: waiting, playing, or pre-empted and waiting to play again.
_UNFINISHED_SQL: Final = "('received', 'playing', 'preempted')"


class SqliteJournal:
    """The speaker's journal on disk. Each `record` is its own transaction, synced to disk (WAL,
    synchronous=FULL) before it returns. Blocking: call it from one worker thread."""

    def __init__(self, path: Path, *, clock: Callable[[], int] = contract.now_ms) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(commands)")}
        if "nonce" not in columns:  # a journal written before replays were told apart
            self._db.execute("ALTER TABLE commands ADD COLUMN nonce TEXT")

    def close(self) -> None:
        self._db.close()

    def state_of(self, command_id: str) -> str | None:
        row = self._db.execute(
            "SELECT state FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return str(row[0]) if row is not None else None

    def lookup(self, command_id: str) -> JournalEntry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return _entry(row) if row is not None else None

    def record(
        self,
        command_id: str,
        broadcast_id: str,
        state: str,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        expires_at_ms: int | None = None,
        payload: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        entry = merge_entry(
            self.lookup(command_id),
            command_id,
            broadcast_id,
            state,
            reason=reason,
            proof=proof,
            expires_at_ms=expires_at_ms,
            payload=payload,
            nonce=nonce,
        )
        p = entry.proof
        # An upsert, not INSERT OR REPLACE: the row keeps its rowid, which orders recovery.
        self._db.execute(
            f"INSERT INTO commands ({_COLUMNS}, updated_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(command_id) DO UPDATE SET state=excluded.state, "
            "reason=excluded.reason, audio_sha256=excluded.audio_sha256, "
            "played_ms=excluded.played_ms, level_dbfs=excluded.level_dbfs, "
            "expires_at_ms=excluded.expires_at_ms, payload=excluded.payload, "
            "updated_at_ms=excluded.updated_at_ms, nonce=excluded.nonce",
            (
                entry.command_id,
                entry.broadcast_id,
                str(entry.state),
                str(entry.reason) if entry.reason is not None else None,
                p.audio_sha256 if p else None,
                p.played_ms if p else None,
                p.level_dbfs if p else None,
                entry.expires_at_ms,
                entry.payload,
                entry.nonce,
                self._clock(),
            ),
        )

    def learned_keys(self) -> dict[str, bytes]:
        """Signing keys learned from the gateway's keyring (see `Agent`), by key id."""
        rows = self._db.execute("SELECT key_id, public_key FROM learned_keys").fetchall()
        return {str(k): bytes(v) for k, v in rows}

    def remember_keys(self, keys: Mapping[str, bytes]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO learned_keys (key_id, public_key, learned_at_ms) VALUES (?,?,?)",
            [(k, v, self._clock()) for k, v in keys.items()],
        )

    def revoked_keys(self) -> set[str]:
        """Signing keys the gateway's key ring revoked: never trusted again, even if configured."""
        return {str(k) for (k,) in self._db.execute("SELECT key_id FROM revoked_keys")}

    def forget_keys(self, revoked: Iterable[str], dropped: Iterable[str]) -> None:
        """Remember `revoked` for good, and stop trusting `dropped` (learned keys)."""
        self._db.executemany(
            "INSERT OR IGNORE INTO revoked_keys (key_id, revoked_at_ms) VALUES (?,?)",
            [(k, self._clock()) for k in revoked],
        )
        self._db.executemany("DELETE FROM learned_keys WHERE key_id = ?", [(k,) for k in dropped])

    def unfinished(self) -> list[JournalEntry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE state IN {_UNFINISHED_SQL} ORDER BY rowid"
        ).fetchall()
        return [_entry(row) for row in rows]

    def prune(self, before_ms: int) -> int:
        """Forget finished commands that expired before `before_ms`."""
        cursor = self._db.execute(
            f"DELETE FROM commands WHERE state NOT IN {_UNFINISHED_SQL} "
            "AND expires_at_ms IS NOT NULL AND expires_at_ms < ?",
            (before_ms,),
        )
        return cursor.rowcount


def _entry(row: Sequence[Any]) -> JournalEntry:
    sha, played_ms, level = row[4], row[5], row[6]
    return JournalEntry(
        command_id=row[0],
        broadcast_id=row[1],
        state=row[2],
        reason=row[3],
        proof=Proof(sha, int(played_ms or 0), level) if sha is not None else None,
        expires_at_ms=row[7],
        payload=bytes(row[8]) if row[8] is not None else None,
        nonce=row[9],
    )
