"""Coalesced reads of broadcast summaries: one query per broadcast per interval, whoever asks.

During a city-wide alert, hundreds of officers, village heads and dashboards poll the same
broadcast while the ack intake writes thousands of rows. Each replica keeps the last summary of
a broadcast for ``ttl_s`` (half a second by default) and serves it at once; a request that finds
it older starts one refresh in the background and still gets the last value, so no reader waits
behind another's query (stale-while-revalidate). A summary older than ``max_stale_s`` (one second
by default) is never served: that request waits for a fresh one. So a change another replica
wrote is hidden from this one's readers for at most ``max_stale_s``, which keeps the live boards
within a second or two of the speakers. Nothing here is state another replica needs: the
database stays the only record. The event streams also take each summary's JSON from here,
serialized once per refresh however many streams follow the broadcast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

log = logging.getLogger(__name__)

Key = tuple[int, str, bool]  # city id, broadcast id, detail
Load = Callable[[], Awaitable[BaseModel]]


@dataclass
class _Entry:
    value: BaseModel
    at: float
    body: str | None = None


class StatusCache:
    def __init__(
        self,
        *,
        ttl_s: float,
        max_stale_s: float,
        max_entries: int = 2048,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max_stale = max(max_stale_s, ttl_s)
        self._max_entries = max_entries
        self._now = monotonic
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._loading: dict[Key, asyncio.Task[BaseModel]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    async def get(self, key: Key, load: Load) -> BaseModel:
        """The summary for ``key``: cached, cached while a refresh runs, or loaded now.

        ``load`` must open its own session: a background refresh outlives the request.
        """
        if not self.enabled:
            return await load()
        entry = self._entries.get(key)
        now = self._now()
        if entry is not None:
            age = now - entry.at
            if age <= self._ttl:
                self.hits += 1
                return entry.value
            if age <= self._max_stale:
                self.hits += 1
                self._refresh(key, load)
                return entry.value
        self.misses += 1
        return await asyncio.shield(self._refresh(key, load))

    def serialized(self, key: Key, value: BaseModel) -> str:
        """``value`` as JSON, written once per refresh when it is the value cached for ``key``."""
        entry = self._entries.get(key)
        if entry is None or entry.value is not value:
            return value.model_dump_json()
        if entry.body is None:
            entry.body = value.model_dump_json()
        return entry.body

    def forget(self, city_id: int, broadcast_id: str) -> None:
        """Drop what this replica holds of a broadcast (after it changes here, e.g. cancelled)."""
        for detail in (False, True):
            self._entries.pop((city_id, broadcast_id, detail), None)

    def _refresh(self, key: Key, load: Load) -> asyncio.Task[BaseModel]:
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, load), name=f"status-refresh-{key[1]}")
            # A background refresh may fail with nobody awaiting it; the next reader retries.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._loading[key] = task
        return task

    async def _load(self, key: Key, load: Load) -> BaseModel:
        started = self._now()
        try:
            value = await load()
        except Exception:
            log.debug("status refresh of %s failed", key[1], exc_info=True)
            raise
        finally:
            self._loading.pop(key, None)
        self._entries[key] = _Entry(value, started)
        self._entries.move_to_end(key)
        self._evict()
        return value

    def _evict(self) -> None:
        """Drop what can never be served again (older than ``max_stale_s``), then the oldest
        past ``max_entries``. Without the first, every broadcast ever read would stay until
        ``max_entries`` others pushed it out: a detailed summary of a large city is hundreds of
        kilobytes, so a gateway would grow for thousands of broadcasts."""
        limit = self._now() - self._max_stale
        # Ordered by load, so the expired ones are at the front: stop at the first fresh one.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.at >= limit and len(self._entries) <= self._max_entries:
                break
            del self._entries[key]
