"""Signed audit checkpoints read back from their file and from the gateway's log lines."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoints import Checkpoint, read_lines, signed_line
from gateway.logs import JsonLines

CHECKPOINT = Checkpoint(
    seq=7, hash="ab" * 32, count=7, at=datetime(2026, 1, 1, tzinfo=UTC), replica="r1"
)


def _logged(line: str, formatter: logging.Formatter) -> str:
    record = logging.LogRecord(
        "gateway.audit.checkpoints", logging.INFO, __file__, 1, "audit checkpoint %s", (line,), None
    )
    return formatter.format(record)


def test_checkpoints_are_found_in_the_file_and_in_plain_and_json_logs() -> None:
    key = Ed25519PrivateKey.generate()
    line = signed_line(CHECKPOINT, key)
    plain = _logged(line, logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    json_line = _logged(line, JsonLines())
    found = read_lines([line, plain, json_line, 'unrelated {"x": 1}', ""], key.public_key())
    assert found.valid == (CHECKPOINT,) * 3
    assert (found.other_key, found.forged) == (0, 0)

    stranger = Ed25519PrivateKey.generate()
    other = read_lines([line], stranger.public_key())
    assert (other.valid, other.other_key) == ((), 1)
    tampered = line.replace('"seq":7', '"seq":8')
    assert read_lines([tampered], key.public_key()).forged == 1
