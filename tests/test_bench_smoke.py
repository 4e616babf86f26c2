"""The benchmark harness runs end to end in smoke mode and writes every figure it promises."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.run import run_bench, table

pytestmark = [pytest.mark.slow]


FANOUT_KEYS = {
    "speakers",
    "gateway_received_ms_median",
    "gateway_received_ms_p95",
    "gateway_received_ms_max",
    "gateway_played_ms_median",
    "floor_ms_median",
    "floor_ms_p95",
    "ratio",
}


def _non_negative(value: object) -> bool:
    return isinstance(value, int | float) and value >= 0


def _require_snapcast() -> None:
    """The live peer is part of the run; `make test` installs it (scripts/bootstrap.sh)."""
    missing = [name for name in ("snapserver", "snapclient") if shutil.which(name) is None]
    assert not missing, f"{missing} not installed: run scripts/bootstrap.sh --with-ffmpeg"


def test_smoke_run_writes_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_snapcast()
    monkeypatch.setenv("BENCH_SMOKE", "1")
    monkeypatch.delenv("BENCH_FULL", raising=False)
    output = tmp_path / "latest.json"
    run_bench(output)
    result = json.loads(output.read_text())
    assert {"fanout", "transcode", "live", "api", "memory", "machine", "rounds"} <= set(result)
    assert result["fanout"]
    for entry in result["fanout"]:
        assert set(entry) >= FANOUT_KEYS
        assert all(_non_negative(entry[key]) for key in FANOUT_KEYS)
    for entry in result["fanout"]:
        assert _non_negative(entry["end_to_end_ms_median"])
        assert entry["end_to_end_ms_median"] >= entry["gateway_played_ms_median"]
        assert _non_negative(entry["end_to_end_floor_ms_median"])
    transcode = result["transcode"]
    assert {"pipeline_ms_median", "ffmpeg_cli_ms_median", "ratio"} <= set(transcode)
    assert _non_negative(transcode["pipeline_ms_median"])
    assert result["live"]["status"] == "measured"
    assert all(_non_negative(result["live"][k]) for k in ("listeners", "p50_ms", "p95_ms"))
    assert _non_negative(result["live"]["frames_lost"])
    assert _non_negative(result["live"]["impaired_p95_ms"])
    assert _non_negative(result["live"]["impaired_lost_pct"])
    assert result["live"]["peer_snapcast"]["status"] == "measured"
    assert _non_negative(result["live"]["peer_snapcast_p50_ms"])
    assert _non_negative(result["live"]["mouth_to_horn_p95_ms"])
    assert result["live"]["mouth_to_horn_p95_ms"] >= result["live"]["agent_lead_ms"]
    assert _non_negative(result["sync"]["start_spread_p95_ms"])
    printed = table(result)
    assert "mouth    to horn" in printed
    assert "sync       a village's horns" in printed
    assert _non_negative(result["api"]["status_p99_ms"])
    assert _non_negative(result["api"]["count"])
    assert _non_negative(result["memory"]["rss_mb_jinju"])
    assert "rss_mb_10k" in result["memory"]
    soak = result["soak"]
    assert soak["broadcasts"] == 6, "the smoke soak is tiny"
    assert len(soak["samples"]) >= 2
    assert isinstance(soak["rss_growth_mib_per_1000"], int | float)
    bridged = result["bridged"]
    assert bridged["edges"] >= 3
    assert (
        sum(bridged["speakers_per_edge"]) == bridged["speakers"] == result["fanout"][0]["speakers"]
    )
    for side in ("single", "bridged"):
        assert _non_negative(bridged[f"{side}_played_ms_median"])
        assert _non_negative(bridged[f"{side}_floor_played_ms_median"])
    assert _non_negative(bridged["ratio"])
    assert _non_negative(bridged["bridged_end_to_end_ms_median"])
    assert result["catchup"]["pending"] == 100
    assert _non_negative(result["catchup"]["pending_100_ms"])
