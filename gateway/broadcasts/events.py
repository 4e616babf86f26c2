"""The event stream of one broadcast: its summary (or detail) each time it changes.

Any replica serves it, from the database alone: each poll reads through the replica's status
cache, which lets many streams of one broadcast cost one query and never hides a change for
more than ``GATEWAY_STATUS_MAX_STALE_S``. Nothing is kept between polls but what this stream last
sent and read, so the acks any replica records reach every replica's streams.

The detail (every speaker's state) costs far more to read than the summary (counts by state), so
a detail stream watches the summary and reads the detail when the summary moved, until a detail
has caught up with it (the two are cached apart and may be a refresh apart), and every
``DETAIL_REFRESH_S`` for what the counts do not show (a speaker the gateway had to ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.broadcasts import reading
from gateway.broadcasts.schemas import BroadcastSummary
from gateway.broadcasts.status_cache import StatusCache

KEEP_ALIVE_S: Final = 15.0
DETAIL_REFRESH_S: Final = 5.0
FINAL: Final = frozenset({"completed", "cancelled"})


def _progress(summary: BroadcastSummary) -> tuple[object, ...]:
    return (summary.state, summary.speakers, summary.villages)


async def follow(
    cache: StatusCache,
    sessions: async_sessionmaker[AsyncSession],
    city_id: int,
    broadcast_id: str,
    *,
    detail: bool,
    interval_s: float,
    gone: Callable[[], Awaitable[bool]],
    stopping: asyncio.Event,
) -> AsyncIterator[str]:
    """Server-sent events until the broadcast can no longer change, ``gone()`` says so, or the
    replica is `stopping` (the client follows again, on a replica that stays; see
    gateway/serving.py)."""
    last = ""  # the body this stream last sent
    matched = ""  # the summary that the last detail read had caught up with
    full: BroadcastSummary | None = None
    detail_age = 0.0
    quiet = 0.0
    while not stopping.is_set() and not await gone():
        summary = await reading.read_summary(cache, sessions, city_id, broadcast_id, detail=False)
        current = summary
        key = (city_id, broadcast_id, False)
        if detail:
            seen = cache.serialized(key, summary)
            if full is None or seen != matched or detail_age >= DETAIL_REFRESH_S:
                full = await reading.read_summary(
                    cache, sessions, city_id, broadcast_id, detail=True
                )
                detail_age = 0.0
                if _progress(full) == _progress(summary):
                    matched = seen
            current = full
            key = (city_id, broadcast_id, True)
        body = cache.serialized(key, current)
        if body != last:
            last = body
            quiet = 0.0
            yield f"event: summary\ndata: {body}\n\n"
            if current.state in FINAL:
                return
        elif quiet >= KEEP_ALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):  # never swallows a cancellation
                await stopping.wait()
        quiet += interval_s
        detail_age += interval_s
