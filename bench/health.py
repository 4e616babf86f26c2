"""Benchmark: the API's health endpoint latency while ten 86-second uploads are transcoded."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from maeul.broker import MosquittoProcess
from maeul.broker_config import MosquittoConfig, find_free_port
from tests.media import make_recording
from tests.support.databases import seed_database


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _measure(base: str, token: str, clip: bytes, uploads: int) -> dict[str, Any]:
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=base) as client:
            while not done.is_set():
                started = time.perf_counter()
                response = await client.get("/healthz")
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                await asyncio.sleep(0.01)

    async def upload(client: httpx.AsyncClient) -> int:
        response = await client.post(
            "/api/v1/broadcasts",
            data={"category": "administrative", "all_villages": "true"},
            files={"file": ("phone.m4a", clip, "audio/mp4")},
        )
        return response.status_code

    prober = asyncio.create_task(probe())
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        statuses = await asyncio.gather(*(upload(client) for _ in range(uploads)))
    elapsed = time.perf_counter() - started
    done.set()
    await prober
    return {
        "uploads": uploads,
        "upload_statuses": sorted(set(statuses)),
        "uploads_total_s": round(elapsed, 2),
        "health_requests": len(latencies),
        "health_p50_ms": round(statistics.median(latencies), 2),
        "health_p99_ms": round(_percentile(latencies, 0.99), 2),
        "health_max_ms": round(max(latencies), 2),
    }


def run_health_bench(*, uploads: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    smoke = os.environ.get("BENCH_SMOKE") == "1"
    uploads = uploads or (2 if smoke else 10)
    seconds = seconds or (5.0 if smoke else 86.0)
    with tempfile.TemporaryDirectory(prefix="maeul-bench-health-") as tmp:
        work = Path(tmp)
        clip = make_recording(work / "phone.m4a", "m4a", seconds=seconds).read_bytes()
        database_url = f"sqlite+aiosqlite:///{work / 'maeul.db'}"
        asyncio.run(seed_database(database_url, preset="tiny", city_code="bench"))
        token = secrets.token_urlsafe(32)
        port = find_free_port()
        with MosquittoProcess(MosquittoConfig(data_dir=work / "mqtt")) as broker:
            env = {
                **os.environ,
                "GATEWAY_ENVIRONMENT": "test",
                "GATEWAY_DATABASE_URL": database_url,
                "GATEWAY_MQTT_URL": broker.url,
                "GATEWAY_API_TOKEN": token,
                "GATEWAY_CITY_CODE": "bench",
                "GATEWAY_DATA_DIR": str(work / "data"),
                "GATEWAY_TRANSCODE_WORKERS": "1",
                "GATEWAY_LOG_LEVEL": "WARNING",
                "GATEWAY_QUIET_HOURS": "off",  # it measures at any hour
            }
            with (work / "gateway.log").open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "maeul.cli", "serve", "--port", str(port)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_ready(base, process)
                result = asyncio.run(_measure(base, token, clip, uploads))
            finally:
                process.terminate()
                process.wait(timeout=30)
    result["clip_seconds"] = seconds
    return result


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError("the gateway exited before it was ready")
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not become ready")


if __name__ == "__main__":
    import json

    sys.stdout.write(json.dumps(run_health_bench(), indent=2) + "\n")
