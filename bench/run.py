"""Runs every benchmark in one go, prints a table and writes the results as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.bridged import run_bridged_bench, single_from_fanout
from bench.catchup import run_catchup_bench
from bench.city import Bench, children_rss_mb, rss_mb
from bench.disaster import run_disaster_bench
from bench.gimcheon import run_gimcheon_bench
from bench.health import run_health_bench
from bench.live import live_settings, run_live_bench
from bench.replicas import run_replicas_bench
from bench.sms import run_sms_bench, sms_settings
from bench.soak import run_soak_bench, soak_size
from bench.stats import log as _log
from bench.stats import percentile, summary
from bench.sync import run_sync_bench, sync_settings
from bench.transcode import ffmpeg_cli_ms, run_transcode_bench
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, find_mosquitto, raise_nofile_limit
from tests.e2e.harness import TOKEN
from tests.media import make_recording
from tests.support.postgres import PostgresDatabase

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"
POLLERS = 4


def _flag(name: str) -> bool:
    return os.environ.get(name) == "1"


def _mosquitto_version() -> str | None:
    binary = find_mosquitto()
    if binary is None:
        return None
    result = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).splitlines()
    return first[0].removeprefix("mosquitto version ").strip() if first else None


def _machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "mosquitto": _mosquitto_version(),
        "platform": platform.platform(),
    }


async def _fanout(
    folder: Path,
    mqtt_url: str,
    count: int,
    recording: bytes,
    rounds: int,
    warmup: int,
    ffmpeg_ms: float | None = None,
) -> tuple[dict[str, Any], Bench | None]:
    """Alternate gateway and floor rounds on one fleet; returns the entry (bench kept open)."""
    bench = Bench(folder / f"fanout-{count}", mqtt_url, count)
    await bench.__aenter__()
    try:
        _log(f"fan-out {count}: {bench.total} speakers online")
        rounds_run = await bench.alternate_rounds(
            recording, rounds=rounds, warmup=warmup, pause_s=0.3
        )
        assert bench.observer is not None
        topic = bench.observer.command_topics.get(rounds_run.first_broadcast_id or "")
        template = rounds_run.template
        g_med, g_p95, g_max = summary(rounds_run.gateway_received)
        gp_med, gp_p95, gp_max = summary(rounds_run.gateway_played)
        f_med, f_p95, f_max = summary(rounds_run.floor_received)
        fp_med, _, _ = summary(rounds_run.floor_played)
        entry: dict[str, Any] = {
            "speakers": bench.total,
            "gateway_received_ms_median": g_med,
            "gateway_received_ms_p95": g_p95,
            "gateway_received_ms_max": g_max,
            "gateway_played_ms_median": gp_med,
            "gateway_played_ms_p95": gp_p95,
            "gateway_played_ms_max": gp_max,
            "floor_ms_median": f_med,
            "floor_ms_p95": f_p95,
            "floor_ms_max": f_max,
            "floor_played_ms_median": fp_med,
            "ratio": round(g_med / f_med, 3) if f_med else None,
            "played_ratio": round(gp_med / fp_med, 3) if fp_med else None,
            **end_to_end_figures(rounds_run.end_to_end, ffmpeg_ms, fp_med),
            "command_bytes": len(template) if template else None,
            "gateway_command_topic": topic,
        }
        return entry, bench
    except BaseException:
        await bench.__aexit__(None, None, None)
        raise


def end_to_end_figures(
    samples: list[float], ffmpeg_ms: float | None, floor_played_ms: float
) -> dict[str, Any]:
    """From the start of the POST (upload, transcode, database write) to every speaker's
    `played`, next to its floor: the ffmpeg CLI's transcode of the same recording plus the bare
    broker's publish to every speaker's `played`."""
    median, p95, _ = summary(samples)
    floor = round(ffmpeg_ms + floor_played_ms, 1) if ffmpeg_ms is not None else None
    return {
        "end_to_end_ms_median": median,
        "end_to_end_ms_p95": p95,
        "end_to_end_floor_ms_median": floor,
        "end_to_end_ratio": round(median / floor, 3) if floor else None,
    }


async def _api_during_fanout(bench: Bench, recording: bytes) -> dict[str, Any]:
    """Poll one broadcast's summary from several clients (their own process) while it fans out."""
    assert bench.gateway is not None
    assert bench.observer is not None
    poller = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.poller",
        bench.gateway.url,
        TOKEN,
        str(POLLERS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert poller.stdin is not None
    assert poller.stdout is not None
    try:
        async with asyncio.timeout(60):
            await poller.stdout.readline()  # "ready"
        broadcast_id, started = await bench.post_broadcast(recording)
        poller.stdin.write(f"{broadcast_id}\n".encode())
        await poller.stdin.drain()
        received, played = await bench.observer.wait(broadcast_id, started, 180)
        poller.stdin.write(b"stop\n")
        await poller.stdin.drain()
        async with asyncio.timeout(60):
            output = await poller.stdout.readline()
            await poller.wait()
    finally:
        if poller.returncode is None:
            poller.kill()
            await poller.wait()
    samples: list[float] = json.loads(output)
    latencies = [s for s in samples if s >= 0]
    await bench.wait_completed(broadcast_id)
    return {
        "speakers": bench.total,
        "status_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "status_p50_ms": round(percentile(latencies, 0.50), 1) if latencies else None,
        "status_max_ms": round(max(latencies), 1) if latencies else None,
        "count": len(latencies),
        "errors": len(samples) - len(latencies),
        "clients": POLLERS,
        "fanout_received_ms": round(received, 1),
        "fanout_played_ms": round(played, 1),
    }


async def _memory_jinju(folder: Path, mqtt_url: str, recording: bytes) -> dict[str, Any]:
    async with Bench(folder / "memory-jinju", mqtt_url, None) as bench:
        broadcast_id, started = await bench.post_broadcast(recording)
        assert bench.observer is not None
        await bench.observer.wait(broadcast_id, started, 180)
        await bench.wait_completed(broadcast_id)
        await asyncio.sleep(1.0)
        return {
            "rss_mb_jinju": rss_mb(bench.pid),
            "rss_mb_jinju_workers": children_rss_mb(bench.pid),
            "jinju_speakers": bench.total,
        }


async def run_bench_async() -> dict[str, Any]:
    smoke, full = _flag("BENCH_SMOKE"), _flag("BENCH_FULL")
    rounds, warmup = (1, 0) if smoke else (int(os.environ.get("BENCH_ROUNDS", "5")), 1)
    sizes = [20] if smoke else [358, 2000, *([10_000] if full else [])]
    clip_s = 2.0 if smoke else 10.0
    raise_nofile_limit()
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "rounds": rounds,
        "warmup": warmup,
        "mode": "smoke" if smoke else "full" if full else "default",
        "clip_s": clip_s,
        "fanout": [],
        "live": {
            "status": "not_built",
            "listeners": 358,
            "p50_ms": None,
            "p95_ms": None,
            "frames_lost": None,
        },
    }
    with tempfile.TemporaryDirectory(prefix="maeul-bench-") as scratch:
        folder = Path(scratch)
        recording_path = make_recording(folder / "phone.m4a", "m4a", seconds=clip_s)
        recording = recording_path.read_bytes()
        ffmpeg_ms = await asyncio.to_thread(ffmpeg_cli_ms, recording_path, 1 if smoke else 3)
        result["ffmpeg_cli_ms_for_clip"] = ffmpeg_ms
        broker = LocalMosquitto(MosquittoConfig(data_dir=folder / "mosquitto"))
        async with broker:
            _log(f"broker {broker.url}")
            memory: dict[str, Any] = {"rss_mb_jinju": None, "rss_mb_10k": None}
            if not smoke:
                memory.update(await _memory_jinju(folder, broker.url, recording))
                _log(f"memory (Jinju): {memory['rss_mb_jinju']} MiB")
            for count in sizes:
                entry, bench = await _fanout(
                    folder, broker.url, count, recording, rounds, warmup, ffmpeg_ms
                )
                assert bench is not None
                try:
                    result["fanout"].append(entry)
                    if count == (sizes[0] if smoke else 2000):
                        result["api"] = await _api_during_fanout(bench, recording)
                        _log(f"api: p99 {result['api']['status_p99_ms']} ms")
                    if smoke:
                        memory["rss_mb_jinju"] = rss_mb(bench.pid)
                        memory["note"] = f"smoke: measured with {count} speakers, not Jinju"
                        result["bridged"] = await _bridged(
                            folder, broker.url, recording, rounds, warmup, reuse=(bench, entry)
                        )
                    if count == 10_000:
                        memory["rss_mb_10k"] = rss_mb(bench.pid)
                        memory["rss_mb_10k_workers"] = children_rss_mb(bench.pid)
                finally:
                    await bench.__aexit__(None, None, None)
            result["memory"] = memory
            _log("catch-up: a speaker returns to 100 broadcasts it missed")
            # A short clip of its own: the scenario times the catch-up, not 100 transcodes.
            short = make_recording(folder / "short.m4a", "m4a", seconds=1.0).read_bytes()
            result["catchup"] = await run_catchup_bench(folder / "catchup", broker.url, short)
            _log(f"catch-up: {result['catchup']['pending_100_ms']} ms")
            size = soak_size(smoke, full)
            _log(f"soak: {size.warmup} warm-up + {size.broadcasts} broadcasts, three at a time")
            result["soak"] = await run_soak_bench(
                folder / "soak", broker.url, recording, size, profile=_flag("BENCH_SOAK_PROFILE")
            )
            _log(f"soak: {result['soak']['rss_growth_mib_per_1000']} MiB per 1,000 broadcasts")
            _log("disaster alert while 30 previews and 4 uploads wait for the audio worker")
            result["api"] = {
                **result.get("api", {}),
                **await run_disaster_bench(folder / "disaster", broker.url, recording, smoke=smoke),
            }
            _log(
                f"disaster: {result['api']['disaster_under_load_ms']} ms under load, "
                f"{result['api']['disaster_idle_ms']} ms idle"
            )
            if not smoke:
                result["bridged"] = await _bridged(folder, broker.url, recording, rounds, warmup)
            _log("live: mouth-to-speaker latency")
            result["live"] = await run_live_bench(folder, broker.url, **live_settings(smoke))
            _log("sync: how far apart the horns of a village start")
            result["sync"] = await run_sync_bench(
                folder, broker.url, recording, **sync_settings(smoke)
            )
            if full:
                _log("sms: a fallback's SMS through the gateway, then straight to Kannel")
                result["sms"] = await run_sms_bench(folder / "sms", broker.url, **sms_settings())
                _log(
                    f"sms: {result['sms']['gateway_per_s']}/s through the gateway, "
                    f"{result['sms']['kannel_direct_per_s']}/s straight to Kannel"
                )
                _log("gimcheon: a disaster alert to every loudspeaker and indoor receiver")
                try:
                    result["gimcheon_full"] = await _gimcheon(folder, broker.url, recording, rounds)
                except Exception as exc:  # the other scenarios' figures still count
                    _log(f"gimcheon: failed ({exc!r})")
                    result["gimcheon_full"] = {"status": "failed", "error": repr(exc)}
                if PostgresDatabase.reachable():
                    _log("replicas: one, then two, on PostgreSQL with 10,000 speakers")
                    try:
                        result["replicas"] = await run_replicas_bench(
                            folder,
                            broker.url,
                            recording,
                            speakers=10_000,
                            rounds=rounds,
                            warmup=warmup,
                        )
                    except Exception as exc:  # the other scenarios' figures still count
                        _log(f"replicas: failed ({exc!r})")
                        result["replicas"] = {"status": "failed", "error": repr(exc)}
                else:
                    _log("replicas: skipped, PostgreSQL not reachable on 127.0.0.1:5432")
    _log("transcode")
    result["transcode"] = await asyncio.to_thread(
        run_transcode_bench, 1 if smoke else rounds, 0 if smoke else 1
    )
    _log("health while transcoding")
    result["transcode"]["health_during_transcodes"] = await asyncio.to_thread(run_health_bench)
    return result


def run_bench(output: Path = DEFAULT_OUTPUT) -> dict[str, Any]:
    """Run every benchmark (BENCH_SMOKE=1: tiny and quick; BENCH_FULL=1: adds 10,000)."""
    result = asyncio.run(run_bench_async())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value}"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Maeul benchmarks  {result['timestamp']}  {result['machine']['cores']} cores, "
        f"Python {result['machine']['python']}, Mosquitto {result['machine']['mosquitto']}, "
        f"{result['rounds']} rounds after {result['warmup']} warm-up",
        "",
        "fan-out (ms from 201 / publish to every speaker acked)",
        f"{'speakers':>9} {'gw recv med':>12} {'p95':>8} {'max':>8} {'gw played':>10} "
        f"{'floor med':>10} {'p95':>8} {'max':>8} {'ratio':>6}  target <= 1.3",
    ]
    for e in result["fanout"]:
        lines.append(
            f"{e['speakers']:>9} {e['gateway_received_ms_median']:>12} "
            f"{e['gateway_received_ms_p95']:>8} {e['gateway_received_ms_max']:>8} "
            f"{e['gateway_played_ms_median']:>10} {e['floor_ms_median']:>10} "
            f"{e['floor_ms_p95']:>8} {e['floor_ms_max']:>8} {_fmt(e['ratio']):>6}"
        )
    lines += [
        "",
        "end to end (ms from the start of the POST: upload, transcode, database write, fan-out)",
    ]
    for e in result["fanout"]:
        lines.append(
            f"{e['speakers']:>9} {_fmt(e.get('end_to_end_ms_median')):>12} vs floor (ffmpeg CLI "
            f"+ bare broker) {_fmt(e.get('end_to_end_floor_ms_median'))}, ratio "
            f"{_fmt(e.get('end_to_end_ratio'))}"
        )
    t = result["transcode"]
    api = result.get("api", {})
    memory = result["memory"]
    soak = result.get("soak", {})
    lines += [
        "",
        f"transcode  pipeline {_fmt(t.get('pipeline_ms_median'))} ms, ffmpeg CLI "
        f"{_fmt(t.get('ffmpeg_cli_ms_median'))} ms, ratio {_fmt(t.get('ratio'))}  "
        "(target <= 0.8)",
        f"health     p99 {_fmt(t.get('health_during_transcodes', {}).get('health_p99_ms'))} ms "
        f"while {_fmt(t.get('health_during_transcodes', {}).get('uploads'))} uploads transcode"
        "  (target < 50)",
        f"api        status p99 {_fmt(api.get('status_p99_ms'))} ms, p50 "
        f"{_fmt(api.get('status_p50_ms'))} ms over {_fmt(api.get('count'))} requests during "
        f"a {_fmt(api.get('speakers'))}-speaker fan-out  (target < 50)",
        f"memory     Jinju {_fmt(memory.get('rss_mb_jinju'))} MiB, 10k "
        f"{_fmt(memory.get('rss_mb_10k'))} MiB  (target <= 300 at 10k)",
        f"disaster   {_fmt(api.get('disaster_under_load_ms'))} ms to its 201 while 30 "
        f"previews and 4 uploads wait, {_fmt(api.get('disaster_idle_ms'))} ms idle",
        f"catch-up   {_fmt(result.get('catchup', {}).get('pending_100_ms'))} ms until a "
        "returning speaker acked its 100 missed broadcasts received",
        f"soak       {_fmt(soak.get('rss_growth_mib_per_1000'))} MiB per 1,000 broadcasts "
        f"after {_fmt(soak.get('warmup'))} warm-up ({_fmt(soak.get('rss_mib_after_warmup'))} -> "
        f"{_fmt(soak.get('rss_mib_end'))} MiB over {_fmt(soak.get('broadcasts'))}, "
        f"{_fmt(soak.get('speakers'))} speakers)  (target ~0)",
        f"live       {result['live']['status']}: p50 {_fmt(result['live']['p50_ms'])} ms, "
        f"p95 {_fmt(result['live']['p95_ms'])} ms, {_fmt(result['live']['frames_lost'])} "
        f"frames lost, {result['live']['listeners']} listeners  (target p95 <= 150, no loss)",
        *_live_more(result["live"]),
    ]
    if (sync := result.get("sync")) is not None:
        lines.append(
            f"sync       a village's horns start within p95 {_fmt(sync.get('start_spread_p95_ms'))}"
            f" ms of each other (max {_fmt(sync.get('start_spread_max_ms'))} ms)  (target <= 20)"
        )
    if (m := result.get("sms")) is not None:
        lines.append(
            f"sms        {m['messages']} fallback SMS ({m['parts']} parts): gateway "
            f"{m['gateway_per_s']}/s at the SMSC, {m['gateway_delivered_per_s']}/s delivered; "
            f"Kannel direct {m['kannel_direct_per_s']}/s; ratio {_fmt(m['ratio'])}  "
            f"({m['note']})"
        )
    if (b := result.get("bridged")) is not None:
        lines.append(
            f"bridged    {b['speakers']} speakers, played {b['single_played_ms_median']} ms on one "
            f"broker, {b['bridged_played_ms_median']} ms through {b['edges']} edges (ratio "
            f"{_fmt(b['ratio'])}); floor {b['single_floor_played_ms_median']} -> "
            f"{b['bridged_floor_played_ms_median']} ms (ratio {_fmt(b['floor_ratio'])})"
        )
    if (g := result.get("gimcheon_full")) is not None and "devices" in g:
        lines.append(
            f"gimcheon   disaster alert to {g['devices']} devices ({g['receivers']} indoor "
            f"receivers): played {g['gateway_played_ms_median']} ms vs floor "
            f"{g['floor_played_ms_median']} ms (ratio {_fmt(g['ratio'])}, target <= 1.3), end to "
            f"end {g['end_to_end_ms_median']} ms, gateway peak {g['gateway_rss_peak_mib']} MiB "
            "(target <= 600)"
        )
    for key in ("one", "two"):
        if (r := result.get("replicas", {}).get(key)) is not None:
            lines.append(
                f"replicas   {r['replicas']} on PostgreSQL, {result['replicas']['speakers']} "
                f"speakers: received {r['received_ms'][0]} ms, played {r['played_ms'][0]} ms, "
                f"completed {r['completed_ms'][0]} ms (medians), acks {r['acks_per_replica']}"
            )
    return "\n".join(lines) + "\n"


def _live_more(live: dict[str, Any]) -> list[str]:
    """The live line's companions: the impaired run, and the peer beside Maeul's own figure."""
    lines = []
    if (impaired := live.get("impaired")) is not None:
        lines.append(
            f"  impaired p95 {_fmt(live.get('impaired_p95_ms'))} ms, "
            f"{_fmt(live.get('impaired_lost_pct'))}% frames lost, {impaired['listeners']} "
            f"listeners behind {impaired['delay_ms']:g} ± {impaired['jitter_ms']:g} ms and a "
            f"{impaired['stall_ms']:g} ms stall every {impaired['stall_every_s']:g} s"
        )
    if live.get("mouth_to_horn_p95_ms") is not None:
        lines.append(
            f"  mouth    to horn p50 {_fmt(live.get('mouth_to_horn_p50_ms'))} ms, p95 "
            f"{_fmt(live.get('mouth_to_horn_p95_ms'))} ms through the adaptive buffer and the "
            f"agent's {_fmt(live.get('agent_lead_ms'))} ms lead, beside gateway to slot p95 "
            f"{_fmt(live.get('p95_ms'))} ms  (target p95 <= 150)"
        )
    peer = live.get("peer_snapcast")
    if peer is not None and peer.get("status") == "measured":
        buffers = ", ".join(
            f"{s['buffer_ms']} ms: p50 {_fmt(s['p50_ms'])}, {s['lost']}/{s['clicks']} lost"
            for s in peer["settings"]
        )
        lines.append(
            f"  peer     Snapcast p50 {_fmt(live.get('peer_snapcast_p50_ms'))} ms "
            f"(buffer {_fmt(peer['buffer_ms'])} ms, the lowest that lost nothing) beside "
            f"Maeul p50 {_fmt(live.get('p50_ms'))} ms  [{buffers}]"
        )
    elif peer is not None:
        lines.append(f"  peer     Snapcast {peer.get('status')}")
    return lines


async def _bridged(
    folder: Path,
    broker_url: str,
    recording: bytes,
    rounds: int,
    warmup: int,
    reuse: tuple[Bench, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Through three edge brokers: the smoke run's fan-out city (`reuse`: its bench and figures
    on the core), or Gimcheon."""
    _log("bridged: the same city on one broker, then on three edge brokers bridged to it")
    if reuse is not None:
        bench, entry = reuse
        found = await run_bridged_bench(
            bench,
            folder / "bridged",
            recording,
            rounds=rounds,
            warmup=warmup,
            single=single_from_fanout(entry),
        )
    else:
        async with Bench(folder / "bridged", broker_url, None, preset="gimcheon") as bench:
            found = await run_bridged_bench(
                bench, folder / "bridged", recording, rounds=rounds, warmup=warmup
            )
    _log(
        f"bridged: {found['speakers']} speakers, played {found['single_played_ms_median']} ms on "
        f"one broker, {found['bridged_played_ms_median']} ms through {found['edges']} edges "
        f"(ratio {found['ratio']})"
    )
    return found


async def _only_bridged(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    return {"bridged": await _bridged(folder, broker_url, recording, rounds, 1)}


async def _gimcheon(folder: Path, broker_url: str, recording: bytes, rounds: int) -> dict[str, Any]:
    found = await run_gimcheon_bench(
        folder / "gimcheon", broker_url, recording, rounds=rounds, warmup=1
    )
    _log(
        f"gimcheon: {found['devices']} devices, played {found['gateway_played_ms_median']} ms vs "
        f"floor {found['floor_played_ms_median']} ms (ratio {found['ratio']}), gateway peak "
        f"{found['gateway_rss_peak_mib']} MiB"
    )
    return found


async def _only_gimcheon(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    return {"gimcheon_full": await _gimcheon(folder, broker_url, recording, rounds)}


async def _only_disaster(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    return {"api": await run_disaster_bench(folder / "disaster", broker_url, recording)}


async def _only_catchup(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    short = make_recording(folder / "short.m4a", "m4a", seconds=1.0).read_bytes()
    return {"catchup": await run_catchup_bench(folder / "catchup", broker_url, short)}


async def _only_soak(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    size = soak_size(_flag("BENCH_SMOKE"), _flag("BENCH_FULL"))
    profile = _flag("BENCH_SOAK_PROFILE")
    return {
        "soak": await run_soak_bench(folder / "soak", broker_url, recording, size, profile=profile)
    }


async def _only_live(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    smoke = _flag("BENCH_SMOKE")
    live = await run_live_bench(folder, broker_url, **live_settings(smoke))
    _log("sync: how far apart the horns of a village start")
    sync = await run_sync_bench(folder, broker_url, recording, **sync_settings(smoke))
    return {"live": live, "sync": sync}


async def _only_sms(folder: Path, broker_url: str, recording: bytes) -> dict[str, Any]:
    return {"sms": await run_sms_bench(folder / "sms", broker_url, **sms_settings())}


# Scenarios that run on their own (``--only NAME``), each with its broker and a 10 s recording.
ONLY: Final[dict[str, Callable[[Path, str, bytes], Awaitable[dict[str, Any]]]]] = {
    "bridged": _only_bridged,
    "disaster": _only_disaster,
    "gimcheon": _only_gimcheon,
    "catchup": _only_catchup,
    "soak": _only_soak,
    "live": _only_live,
    "sms": _only_sms,
}


async def run_only_async(name: str) -> dict[str, Any]:
    raise_nofile_limit()
    with tempfile.TemporaryDirectory(prefix="maeul-bench-") as scratch:
        folder = Path(scratch)
        recording = make_recording(folder / "phone.m4a", "m4a", seconds=10.0).read_bytes()
        async with LocalMosquitto(MosquittoConfig(data_dir=folder / "mosquitto")) as broker:
            found = await ONLY[name](folder, broker.url, recording)
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "only": name,
        **found,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--only", choices=sorted(ONLY), help="run one scenario; its figures go to NAME.json"
    )
    args = parser.parse_args(argv)
    if args.only is not None:
        output = args.output or DEFAULT_OUTPUT.with_name(f"{args.only}.json")
        result = asyncio.run(run_only_async(args.only))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
        sys.stdout.write(f"\n\nwritten to {output}\n")
        return 0
    output = args.output or DEFAULT_OUTPUT
    result = run_bench(output)
    sys.stdout.write(table(result))
    sys.stdout.write(f"\nwritten to {output}\n")
    return 0
