"""The summary cache: one query per interval however many read, never older than its limit."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from gateway.broadcasts.status_cache import StatusCache
from gateway.settings import Settings


class Summary(BaseModel):
    version: int


class Source:
    """Counts loads; each load returns the next version, optionally waiting to be released."""

    def __init__(self) -> None:
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def load(self) -> BaseModel:
        self.loads += 1
        version = self.loads
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database away")
        return Summary(version=version)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


KEY = (1, "b" * 32, False)


def _cache(clock: Clock, ttl: float = 0.5, stale: float = 5.0) -> StatusCache:
    return StatusCache(ttl_s=ttl, max_stale_s=stale, monotonic=clock)


async def test_fresh_reads_share_one_load() -> None:
    clock, source = Clock(), Source()
    cache = _cache(clock)
    first = await cache.get(KEY, source.load)
    clock.now += 0.4
    again = await cache.get(KEY, source.load)
    assert first == again == Summary(version=1)
    assert source.loads == 1


async def test_concurrent_misses_wait_for_one_load() -> None:
    clock, source = Clock(), Source()
    source.gate = asyncio.Event()
    cache = _cache(clock)
    readers = [asyncio.create_task(cache.get(KEY, source.load)) for _ in range(20)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*readers)
    assert {r.model_dump_json() for r in results} == {Summary(version=1).model_dump_json()}
    assert source.loads == 1


async def test_a_stale_value_is_served_while_one_refresh_runs() -> None:
    clock, source = Clock(), Source()
    cache = _cache(clock)
    await cache.get(KEY, source.load)
    clock.now += 1.0
    source.gate = asyncio.Event()
    served = [await cache.get(KEY, source.load) for _ in range(5)]
    assert served == [Summary(version=1)] * 5, "readers never wait behind the refresh"
    await asyncio.sleep(0)
    assert source.loads == 2, "one refresh for all of them"
    source.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get(KEY, source.load) == Summary(version=2)


async def test_too_old_is_never_served() -> None:
    clock, source = Clock(), Source()
    cache = _cache(clock, stale=5.0)
    await cache.get(KEY, source.load)
    clock.now += 6.0
    assert await cache.get(KEY, source.load) == Summary(version=2)


async def test_forget_and_disabled() -> None:
    clock, source = Clock(), Source()
    cache = _cache(clock)
    await cache.get(KEY, source.load)
    cache.forget(KEY[0], KEY[1])
    assert await cache.get(KEY, source.load) == Summary(version=2)

    off = _cache(clock, ttl=0)
    await off.get(KEY, source.load)
    await off.get(KEY, source.load)
    assert source.loads == 4


async def test_a_failed_load_reaches_the_waiting_reader_and_is_not_cached() -> None:
    clock, source = Clock(), Source()
    source.fail = True
    cache = _cache(clock)
    with pytest.raises(RuntimeError, match="database away"):
        await cache.get(KEY, source.load)
    source.fail = False
    assert await cache.get(KEY, source.load) == Summary(version=2)


async def test_by_default_a_change_is_hidden_for_a_second_at_most() -> None:
    settings = Settings(environment="test", api_token="t" * 32)
    clock, source = Clock(), Source()
    cache = StatusCache(
        ttl_s=settings.status_cache_s, max_stale_s=settings.status_max_stale_s, monotonic=clock
    )
    await cache.get(KEY, source.load)
    clock.now += 1.1
    assert await cache.get(KEY, source.load) == Summary(version=2), "a live board trails by 1 s"


async def test_streams_share_one_serialization_per_refresh() -> None:
    clock, source = Clock(), Source()
    cache = _cache(clock)
    first = await cache.get(KEY, source.load)
    body = cache.serialized(KEY, first)
    assert body == '{"version":1}'
    assert cache.serialized(KEY, await cache.get(KEY, source.load)) is body
    assert cache.serialized(KEY, Summary(version=7)) == '{"version":7}', "not the cached value"


async def test_summaries_too_old_to_serve_are_let_go() -> None:
    """A gateway reads each broadcast's summary while it runs, then seldom again: what can no
    longer be served must not stay until thousands of newer broadcasts push it out."""
    clock, source = Clock(), Source()
    cache = _cache(clock, stale=5.0)
    for n in range(100):
        await cache.get((1, f"{n:032d}", n % 2 == 0), source.load)
        clock.now += 2.0  # a few broadcasts read within any 5 s
    assert len(cache) <= 3


async def test_the_cache_never_holds_more_than_its_bound() -> None:
    clock, source = Clock(), Source()
    cache = StatusCache(ttl_s=0.5, max_stale_s=5.0, max_entries=10, monotonic=clock)
    for n in range(50):
        await cache.get((1, f"{n:032d}", False), source.load)
    assert len(cache) == 10
    assert await cache.get((1, f"{49:032d}", False), source.load) == Summary(version=50)
