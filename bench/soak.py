"""The soak: many broadcasts, three at a time, every one played, and the gateway's memory after.

A gateway that runs for months must not grow with the broadcasts it has sent. The scenario
sends ``warmup`` broadcasts first (caches fill, the allocator settles), then ``broadcasts``
more in batches of ``concurrent``, each batch waiting until every speaker acked ``played`` and
the gateway recorded it all. After each batch it reads the gateway process's resident memory
(VmRSS). The growth is the least-squares slope of those samples against the broadcasts sent,
over the samples after the warm-up only, in MiB per 1,000 broadcasts: a bounded gateway gives
close to 0, a leak a steady positive figure. One sample can move by a MiB or two as the
allocator takes or returns an arena; the fit over every sample smooths that out.

``python -m bench --only soak`` runs it alone; ``BENCH_SOAK_WARMUP`` and ``BENCH_SOAK_BROADCASTS``
set its size (the defaults depend on the mode: tiny under ``BENCH_SMOKE``, longer under
``BENCH_FULL``). ``BENCH_SOAK_PROFILE=1`` also reads where the gateway's resident memory lies
after each batch (``bench.smaps``: glibc's main arena, its other arenas, other anonymous
mappings, files) and reports each kind's growth the same way, with its first and last figures;
beside them the gateway's own gauges from ``/metrics``: the C heap in use and held free
(glibc), and SQLite's memory.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from bench.city import Bench, rss_mb
from bench.smaps import KINDS, read_resident_by_kind
from bench.stats import log as _log

CONCURRENT = 3


@dataclass(frozen=True)
class SoakSize:
    speakers: int | None  # None: the Jinju preset
    warmup: int
    broadcasts: int


def soak_size(smoke: bool, full: bool) -> SoakSize:
    """The run's size: environment overrides, else per mode."""
    if smoke:
        default = SoakSize(speakers=20, warmup=3, broadcasts=6)
    elif full:
        default = SoakSize(speakers=None, warmup=90, broadcasts=900)
    else:
        # Jinju fills the ack intake's per-command counts (50,000) in about 72 broadcasts. A
        # sample moves by a MiB as the allocators take and give pages: over 90 broadcasts that
        # alone is +-11 MiB per 1,000 in the slope, over 300 about +-3.
        default = SoakSize(speakers=None, warmup=90, broadcasts=300)
    return SoakSize(
        speakers=default.speakers,
        warmup=int(os.environ.get("BENCH_SOAK_WARMUP", default.warmup)),
        broadcasts=int(os.environ.get("BENCH_SOAK_BROADCASTS", default.broadcasts)),
    )


def slope_per_1000(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of (broadcasts sent, MiB) points, in MiB per 1,000 broadcasts."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return round(covariance / spread * 1000, 1)


async def _batch(bench: Bench, recording: bytes, count: int) -> None:
    """``count`` broadcasts at once; returns when every speaker played each and it completed."""
    assert bench.observer is not None
    posted = await asyncio.gather(*(bench.post_broadcast(recording) for _ in range(count)))
    for broadcast_id, started in posted:
        await bench.observer.wait(broadcast_id, started, 300)
    for broadcast_id, _ in posted:
        await bench.wait_completed(broadcast_id, 300)


# The gateway's own memory gauges (`gateway.allocator.MemoryReader`), by profile key.
_GAUGES: Final = {
    ("maeul_c_heap_bytes", "in_use"): "c_heap_in_use",
    ("maeul_c_heap_bytes", "free"): "c_heap_free",
    ("maeul_sqlite_memory_bytes", None): "sqlite",
}


async def read_gauges(bench: Bench) -> dict[str, float]:
    """The C heap in use and held free, and SQLite's memory, in MiB, from the gateway's
    ``/metrics`` (what it can tell; nothing on another C library)."""
    assert bench.client is not None
    text = (await bench.client.get("/metrics")).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = _GAUGES.get((sample.name, sample.labels.get("state")))
            if key is not None:
                found[key] = round(sample.value / 2**20, 1)
    return found


def profile_growth(samples: list[tuple[int, dict[str, float]]]) -> dict[str, Any]:
    """Each kind's first and last MiB and its growth per 1,000 broadcasts: the kinds of
    mapping of the resident memory, then what the gateway's gauges tell apart inside them."""
    if not samples:
        return {}
    return {
        kind: {
            "mib_first": samples[0][1][kind],
            "mib_last": samples[-1][1][kind],
            "growth_mib_per_1000": slope_per_1000([(x, kinds[kind]) for x, kinds in samples]),
        }
        for kind in (*KINDS, *_GAUGES.values())
        if all(kind in kinds for _, kinds in samples)
    }


async def run_soak_bench(
    folder: Path, mqtt_url: str, recording: bytes, size: SoakSize, *, profile: bool = False
) -> dict[str, Any]:
    async with Bench(folder, mqtt_url, size.speakers) as bench:
        _log(f"soak: {bench.total} speakers, {size.warmup} warm-up + {size.broadcasts} broadcasts")
        started = time.perf_counter()
        rss_start = rss_mb(bench.pid)
        sent = 0
        points: list[tuple[int, float]] = []
        kinds: list[tuple[int, dict[str, float]]] = []
        total = size.warmup + size.broadcasts
        while sent < total:
            count = min(CONCURRENT, total - sent)
            await _batch(bench, recording, count)
            sent += count
            rss = rss_mb(bench.pid)
            if sent >= size.warmup:
                points.append((sent, rss))
                if profile:
                    kinds.append(
                        (sent, {**read_resident_by_kind(bench.pid), **await read_gauges(bench)})
                    )
            if sent % 30 < CONCURRENT:
                _log(f"  soak: {sent} broadcasts, gateway {rss} MiB")
        growth = slope_per_1000(points)
        found: dict[str, Any] = {"profile": profile_growth(kinds)} if profile else {}
        return {
            "speakers": bench.total,
            "warmup": size.warmup,
            "broadcasts": size.broadcasts,
            "concurrent": CONCURRENT,
            "rss_mib_start": rss_start,
            "rss_mib_after_warmup": points[0][1] if points else None,
            "rss_mib_end": points[-1][1] if points else None,
            "rss_growth_mib_per_1000": growth,
            "samples": [[x, y] for x, y in points],
            "seconds": round(time.perf_counter() - started, 1),
            **found,
        }
