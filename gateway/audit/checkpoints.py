"""Signed checkpoints of the audit chain, kept outside the database.

The hash chain alone proves nothing to someone who can write the database: they can alter a row
(or drop the last ones) and compute every hash again. So every replica that runs the background
workers signs, at start, every ``GATEWAY_AUDIT_CHECKPOINT_S`` while the log grows, and when it
stops, the chain's end as it stands: the last row's ``seq`` and ``hash``, the number of rows, and
the time. Each checkpoint is one JSON line appended to ``GATEWAY_AUDIT_CHECKPOINT_PATH`` (mode
0600; one ``write`` per line, so replicas sharing a file never interleave within a line) and
logged (``audit checkpoint {...}``), so a log shipper carries a copy off the machine too.

Replicas do not take turns: each writes its own checkpoints with the same key (a secret every
replica shares, `gateway.keyfiles`), and a verifier may be given any of their files, or lines
grepped from the logs. A claim kept in the database would be in the hands of whoever can write
the database, which is the attacker this guards against.

``maeul audit verify --checkpoints FILE`` then finds a re-sealed chain: a row whose hash differs
from a checkpoint's (something at or before it was rewritten), or a chain shorter than a
checkpoint's (its last rows were removed). Rows written after the last checkpoint are covered by
the next one only.

The Ed25519 key is derived from the secret ``audit_checkpoint_key``; its public half is printed by
``maeul audit checkpoint-key`` and served by ``GET /api/v1/audit-events/checkpoint-key``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.models import AuditEvent, AuditHead
from gateway.clock import Clock
from gateway.keyfiles import load_secret
from gateway.settings import Settings

log = logging.getLogger(__name__)

KIND: Final = "maeul-audit-checkpoint"
SECRET: Final = "audit_checkpoint_key"
_DERIVATION: Final = b"maeul-audit-checkpoint-v1\n"


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    seed = hashlib.sha256(_DERIVATION + load_secret(settings, SECRET)).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as `public_key_text` writes it; ValueError for anything else."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key in base64: {exc}") from None


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    count: int
    at: datetime
    replica: str

    def body(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "v": 1,
            "seq": self.seq,
            "hash": self.hash,
            "count": self.count,
            "at": self.at.astimezone(UTC).isoformat(timespec="seconds"),
            "replica": self.replica,
        }


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_line(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    body = checkpoint.body()
    signature = key.sign(_canonical(body))
    return json.dumps(
        {
            **body,
            "key": public_key_text(key.public_key()),
            "sig": base64.b64encode(signature).decode(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Checkpoints:
    """What a set of lines held: the checkpoints the key signed, in chain order, and how many
    lines claimed to be checkpoints but were signed by another key or not at all."""

    valid: tuple[Checkpoint, ...]
    other_key: int = 0
    forged: int = 0


def _found(line: str) -> dict[str, Any] | None:
    """The checkpoint a line carries: the line itself, after a plain log line's prefix, or in
    the ``message`` of a JSON log line."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    message = data.get("message")
    if data.get("kind") != KIND and isinstance(message, str) and "{" in message:
        return _found(message)
    return data if data.get("kind") == KIND else None


def read_lines(lines: Iterable[str], public_key: Ed25519PublicKey) -> Checkpoints:
    """Checkpoints in ``lines``: a file of them, or the gateway's log lines (plain or JSON)."""
    ours = public_key_text(public_key)
    valid: list[Checkpoint] = []
    other = forged = 0
    for line in lines:
        data = _found(line)
        if data is None:
            continue
        if data.get("key") != ours:
            other += 1
            continue
        try:
            body = {
                name: data[name] for name in ("kind", "v", "seq", "hash", "count", "at", "replica")
            }
            public_key.verify(base64.b64decode(str(data["sig"]), validate=True), _canonical(body))
            checkpoint = Checkpoint(
                seq=int(body["seq"]),
                hash=str(body["hash"]),
                count=int(body["count"]),
                at=datetime.fromisoformat(str(body["at"])),
                replica=str(body["replica"]),
            )
        except (KeyError, ValueError, TypeError, binascii.Error, InvalidSignature):
            forged += 1
            continue
        valid.append(checkpoint)
    valid.sort(key=lambda c: (c.seq, c.at))
    return Checkpoints(tuple(valid), other, forged)


def read_file(path: Path, public_key: Ed25519PublicKey) -> Checkpoints:
    with path.open(encoding="utf-8", errors="replace") as lines:
        return read_lines(lines, public_key)


async def take(session: AsyncSession, *, now: datetime, replica: str) -> Checkpoint | None:
    """The chain's end as committed now (None while the log is empty), read in one statement
    so the count and the head agree."""
    counted = (
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.seq <= AuditHead.seq)
        .scalar_subquery()
    )
    row = (await session.execute(select(AuditHead.seq, AuditHead.hash, counted).limit(1))).first()
    if row is None:
        return None
    return Checkpoint(seq=int(row[0]), hash=str(row[1]), count=int(row[2]), at=now, replica=replica)


def append_line(path: Path, line: str) -> None:
    """One line at the end of the file, created 0600 (its directory 0700) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """This replica's writer of checkpoints (see the module's docstring)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        # Loaded now, so a missing or weak key in production stops the start.
        self.key = signing_key(settings)
        self.path = settings.checkpoint_file
        self._last: tuple[int, str] | None = None

    async def write(self) -> Checkpoint | None:
        """Sign and write the chain's end, unless this replica already wrote that very end."""
        async with self.sessions() as session:
            checkpoint = await take(session, now=self.clock.now(), replica=self.settings.replica_id)
        if checkpoint is None or (checkpoint.seq, checkpoint.hash) == self._last:
            return None
        line = signed_line(checkpoint, self.key)
        await asyncio.to_thread(append_line, self.path, line)
        log.info("audit checkpoint %s", line)
        self._last = (checkpoint.seq, checkpoint.hash)
        return checkpoint

    async def run(self) -> None:
        while True:
            try:
                await self.write()
            except Exception:
                log.exception("감사 체크포인트 실패 / could not write an audit checkpoint")
            await asyncio.sleep(self.settings.audit_checkpoint_s)
