"""Fan-out through edge brokers: the same city and gateway, once with every speaker on the core
broker and once with its speakers on three edge brokers bridged to it (`maeul.broker_bridge`),
one edge per group of districts. Gimcheon's shape by default (22 districts, 568 villages, about
1,100 speakers); the smoke run reuses its small fan-out city.

Each side alternates a broadcast through the gateway with the floor: the gateway's own command
published once straight to the core's all-city topic. Both sides publish on the core, so the
bridged floor includes the hop through the bridge. `ratio` is the bridged gateway's median over
the single broker's, both to every speaker's `played` ack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from bench.city import Bench
from bench.stats import summary
from gateway.settings import MqttTarget
from maeul.broker import LocalMosquitto
from maeul.broker_bridge import Bridge
from maeul.broker_config import MosquittoConfig

EDGES: Final = ("north", "centre", "south")


@contextlib.asynccontextmanager
async def edge_brokers(folder: Path, core_url: str) -> AsyncIterator[list[LocalMosquitto]]:
    """Three local edge brokers bridged to the broker at core_url."""
    core = MqttTarget(core_url)
    async with contextlib.AsyncExitStack() as stack:
        edges = []
        for name in EDGES:
            bridge = Bridge(name=name, core_host=core.host, core_port=core.port)
            cfg = MosquittoConfig(data_dir=folder / name, bridge=bridge)
            edges.append(await stack.enter_async_context(LocalMosquitto(cfg)))
        yield edges


async def _side(bench: Bench, recording: bytes, rounds: int, warmup: int) -> dict[str, Any]:
    played: list[float] = []
    received: list[float] = []
    floor: list[float] = []
    end_to_end: list[float] = []
    template: bytes | None = None
    for index in range(warmup + rounds):
        broadcast_id, got, done = await bench.gateway_round(recording)
        template = template or bench.template_for(broadcast_id)
        await asyncio.sleep(0.3)
        _, floor_played = await bench.floor_round(template)
        await asyncio.sleep(0.3)
        if index >= warmup:
            received.append(got)
            played.append(done)
            floor.append(floor_played)
            end_to_end.append(bench.post_ms[broadcast_id] + done)
    return {
        "received_ms_median": summary(received)[0],
        "played_ms_median": summary(played)[0],
        "played_ms_p95": summary(played)[1],
        "floor_played_ms_median": summary(floor)[0],
        "end_to_end_ms_median": summary(end_to_end)[0],
    }


async def run_bridged_bench(
    bench: Bench,
    folder: Path,
    recording: bytes,
    *,
    rounds: int,
    warmup: int,
    single: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure a started bench (its fleet on the core), move its fleet to three edge brokers
    and measure again, then move it back. `single`: this bench's figures on the core measured
    already in the same run (a fan-out entry), so they are not measured twice."""
    if single is None:
        single = await _side(bench, recording, rounds, warmup)
    async with edge_brokers(folder / "edges", bench.mqtt_url) as edges:
        await bench.move_fleet([edge.url for edge in edges])
        try:
            per_edge = [len(fleet.speakers) for fleet in bench.fleets]
            bridged = await _side(bench, recording, rounds, warmup)
        finally:
            await bench.move_fleet([])

    def ratio(key: str) -> float | None:
        return round(bridged[key] / single[key], 3) if single[key] else None

    return {
        "speakers": bench.total,
        "edges": len(EDGES),
        "speakers_per_edge": per_edge,
        "preset": bench.preset if bench.speaker_count is None else None,
        **{f"single_{key}": value for key, value in single.items()},
        **{f"bridged_{key}": value for key, value in bridged.items()},
        "ratio": ratio("played_ms_median"),
        "floor_ratio": ratio("floor_played_ms_median"),
    }


def single_from_fanout(entry: dict[str, Any]) -> dict[str, Any]:
    """A fan-out entry's figures, named as `_side` names them."""
    return {
        "received_ms_median": entry["gateway_received_ms_median"],
        "played_ms_median": entry["gateway_played_ms_median"],
        "played_ms_p95": entry["gateway_played_ms_p95"],
        "floor_played_ms_median": entry["floor_played_ms_median"],
        "end_to_end_ms_median": entry["end_to_end_ms_median"],
    }
