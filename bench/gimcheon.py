"""Gimcheon at full scale (`BENCH_FULL=1`, or ``--only gimcheon``): the preset with its 56,000
households, so every one of its 568 villages' loudspeakers and every household's indoor receiver
(about 19,900 devices) is online, and a city-wide disaster alert goes to all of them.

Rounds alternate as in the fan-out scenario: the alert through the gateway (from its 201 until
every device acked `played`, which the observer sees, then until the gateway has recorded every
ack), then the floor: the gateway's own command, re-signed, published once straight to the
broker's all-city topic, until the same devices acked `played`. `ratio` is the gateway's median
over the floor's, both to the last `played`. `gateway_rss_peak_mib` is the gateway process's
peak resident memory (VmHWM) over the whole scenario, start-up and every round included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

from bench.city import Bench, peak_rss_mb, rss_mb
from bench.stats import log as _log
from bench.stats import summary

# Generous: a loaded 2-core machine runs the gateway, the broker and every device.
ROUND_LIMIT_S: Final = 600.0


async def run_gimcheon_bench(
    folder: Path, broker_url: str, recording: bytes, *, rounds: int, warmup: int
) -> dict[str, Any]:
    started = time.perf_counter()
    async with Bench(
        folder,
        broker_url,
        None,
        preset="gimcheon",
        households=True,
        category="disaster",
        processes=None,  # split as `maeul run` splits it
    ) as bench:
        ready_s = time.perf_counter() - started
        receivers = sum(s.kind == "household_receiver" for s in bench.sims)
        _log(f"gimcheon: {bench.total} devices online ({receivers} receivers) in {ready_s:.0f} s")
        rss_connected = rss_mb(bench.pid)
        run = await bench.alternate_rounds(
            recording, rounds=rounds, warmup=warmup, pause_s=1.0, limit_s=ROUND_LIMIT_S
        )
        played_median, played_p95, played_max = summary(run.gateway_played)
        floor_median, _, floor_max = summary(run.floor_played)
        received_median, _, _ = summary(run.gateway_received)
        floor_received_median, _, _ = summary(run.floor_received)
        end_to_end_median, end_to_end_p95, _ = summary(run.end_to_end)
        return {
            "devices": bench.total,
            "receivers": receivers,
            "loudspeakers": bench.total - receivers,
            "category": "disaster",
            "rounds": rounds,
            "warmup": warmup,
            "fleet_processes": bench.processes,
            "ready_s": round(ready_s, 1),
            "gateway_received_ms_median": received_median,
            "gateway_played_ms_median": played_median,
            "gateway_played_ms_p95": played_p95,
            "gateway_played_ms_max": played_max,
            "floor_received_ms_median": floor_received_median,
            "floor_played_ms_median": floor_median,
            "floor_played_ms_max": floor_max,
            "ratio": round(played_median / floor_median, 3) if floor_median else None,
            "end_to_end_ms_median": end_to_end_median,
            "end_to_end_ms_p95": end_to_end_p95,
            "gateway_rss_mib_connected": rss_connected,
            "gateway_rss_mib_end": rss_mb(bench.pid),
            "gateway_rss_peak_mib": peak_rss_mb(bench.pid),
        }
