"""End to end through edge brokers: the gateway on a core Mosquitto, the simulated speakers on
three edge Mosquittos bridged to it. An edge that goes down takes its speakers offline in the
gateway; a broadcast sent meanwhile plays on the other edges at once and on its speakers when it
is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.city import Bench
from maeul.broker import LocalMosquitto
from maeul.broker_bridge import Bridge
from maeul.broker_config import MosquittoConfig
from tests.media import make_recording

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EDGES = ("north", "centre", "south")
SPEAKERS = 6


@contextlib.asynccontextmanager
async def _bridged_city(folder: Path) -> AsyncIterator[tuple[dict[str, LocalMosquitto], Bench]]:
    async with contextlib.AsyncExitStack() as stack:
        core = await stack.enter_async_context(
            LocalMosquitto(MosquittoConfig(data_dir=folder / "core"))
        )
        edges = {}
        for name in EDGES:
            bridge = Bridge(
                name=name, core_host=core.host, core_port=core.port, restart_timeout=(1, 2)
            )
            cfg = MosquittoConfig(data_dir=folder / name, bridge=bridge)
            edges[name] = await stack.enter_async_context(LocalMosquitto(cfg))
        urls = [edge.url for edge in edges.values()]
        bench = await stack.enter_async_context(Bench(folder / "city", core.url, SPEAKERS, urls))
        yield edges, bench


async def _offline(bench: Bench) -> int:
    assert bench.client is not None
    response = await bench.client.get("/api/v1/speakers", params={"online": "false", "limit": 1})
    return int(response.json()["total"])


async def test_a_broadcast_reaches_every_edge_and_waits_for_one_that_is_down(
    tmp_path: Path,
) -> None:
    recording = make_recording(tmp_path / "phone.m4a", "m4a", seconds=1.0).read_bytes()
    async with _bridged_city(tmp_path) as (edges, bench):
        assert bench.observer is not None
        assert bench.total == SPEAKERS
        assert [len(fleet.speakers) for fleet in bench.fleets] == [2, 2, 2]

        # The edge stops: the wills of its speakers cross the bridge before it closes.
        await edges["north"].stop()
        down = len(bench.fleets[0].speakers)
        for _ in range(400):
            if await _offline(bench) == down:
                break
            await asyncio.sleep(0.05)
        assert await _offline(bench) == down

        broadcast_id, started = await bench.post_broadcast(recording)
        await edges["north"].start()
        # Back online, they get what they missed from the gateway's database: all six play it.
        await bench.observer.wait(broadcast_id, started, 60)
        await bench.wait_completed(broadcast_id)
        assert await _offline(bench) == 0
