"""Ack batches of every size reuse a handful of statements, so the driver's caches stay small."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from gateway.db import create_engine, create_sessions
from gateway.deliveries import service as deliveries
from gateway.deliveries.acks import AckIn, apply_acks
from gateway.migrations import upgrade
from wire.contract import AckStatus


def test_padded_keeps_the_values_and_rounds_the_length() -> None:
    assert deliveries.padded([]) == []
    assert deliveries.padded([7]) == [7]
    assert deliveries.padded([1, 2, 3]) == [1, 2, 3, 3]
    assert len(deliveries.padded(list(range(513)))) == 1024


async def test_ack_batches_of_a_hundred_sizes_use_a_few_statement_shapes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    seen: set[str] = set()

    def remember(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM deliveries" in statement or "FROM broadcasts" in statement:
            seen.add(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    now = datetime.now(UTC)
    try:
        sessions = create_sessions(engine)
        for size in range(1, 101):
            acks = [
                AckIn(
                    speaker_id=speaker,
                    broadcast_id=f"{size % 3:032d}",
                    command_id="c" * 32,
                    status=AckStatus.RECEIVED,
                    at=now,
                )
                for speaker in range(1, size + 1)
            ]
            async with sessions() as session:
                await apply_acks(session, acks)
    finally:
        await engine.dispose()
    # One shape per power of two (1 to 128) for each query, not one per batch size.
    assert len(seen) <= 20, f"{len(seen)} statement shapes"
