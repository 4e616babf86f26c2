"""Horns in step: how far apart the speakers of one village start the same broadcast.

A gateway and a simulated fleet (several speakers per village, their clocks synchronised as
NTP keeps them in production) play broadcasts to the whole city. Every play command carries
the gateway's ``play_at_ms``; each simulated speaker starts its horn at that time through its
own clock, and the fleet notes the true time each horn started. Per village and broadcast the
spread is the last start minus the first; ``start_spread_p95_ms`` is the 95th percentile over
all of them (the target: 20 ms).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.city import Bench
from bench.stats import log as _log
from bench.stats import percentile

VILLAGES = 40
PER_VILLAGE = 3


async def run_sync_bench(
    folder: Path,
    mqtt_url: str,
    recording: bytes,
    *,
    villages: int = VILLAGES,
    per_village: int = PER_VILLAGE,
    rounds: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """Figures for the `sync` keys of the results."""
    spreads: list[float] = []
    late = 0
    late_starts = 0
    async with Bench(folder / "sync", mqtt_url, villages * per_village, villages=villages) as bench:
        # One fleet on the one broker (no edge brokers here).
        (fleet,) = bench.fleets
        for index in range(warmup + rounds):
            broadcast_id, _, _ = await bench.gateway_round(recording)
            per_village_spread = fleet.start_spread_ms(broadcast_id)
            ready_late, fleet.late_starts = fleet.late_starts, 0
            if index < warmup:
                continue
            late_starts += ready_late
            spreads.extend(per_village_spread.values())
            late += sum(1 for spread in per_village_spread.values() if spread > 20)
            worst = max(per_village_spread.values(), default=0.0)
            _log(
                f"sync round {index + 1 - warmup}: worst village spread {worst:.1f} ms, "
                f"{ready_late} speakers ready only after the play-at time"
            )
            await asyncio.sleep(0.3)
    return {
        "status": "measured",
        "villages": villages,
        "speakers_per_village": per_village,
        "rounds": rounds,
        "start_spread_p50_ms": _rounded(percentile(spreads, 0.5) if spreads else None),
        "start_spread_p95_ms": _rounded(percentile(spreads, 0.95) if spreads else None),
        "start_spread_max_ms": _rounded(max(spreads) if spreads else None),
        "village_starts_over_20_ms": late,
        "village_starts": len(spreads),
        # Speakers that had their audio ready only after the play-at time: they start at once.
        "ready_after_play_at": late_starts,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def sync_settings(smoke: bool) -> dict[str, Any]:
    """Villages, speakers and rounds: tiny in smoke mode."""
    if smoke:
        return {"villages": 3, "per_village": 2, "rounds": 1, "warmup": 0}
    return {"villages": VILLAGES, "per_village": PER_VILLAGE}
