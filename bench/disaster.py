"""Disaster under load: how long a spoken disaster alert takes to be created (its 201) while
thirty 2,000-character speech previews and a few uploads keep the audio worker busy (the worst
of three), next to the same alert on an idle gateway (the median of three). The previews come
from fifteen accounts, two each, so the per-person limit admits them all; the uploads come
from the bootstrap token."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx

from bench.city import CITY, GATEWAY_ENV, seed_database
from tests.e2e.harness import GatewayProcess

PREVIEWS: Final = 30
ACCOUNTS: Final = 15
UPLOADS: Final = 4
# Smoke mode (the test suite) checks that the scenario runs and reports, not the figures.
SMOKE_PREVIEWS, SMOKE_ACCOUNTS, SMOKE_UPLOADS = 4, 2, 1
PASSWORD: Final = "bench-password-disaster"
SENTENCE: Final = (
    "오늘 오후 세 시부터 마을회관 앞 도로에서 상수도 공사가 있어 물이 나오지 않습니다. "
)
ALERT: Final = "하천 수위가 올라가고 있습니다. 하천 근처 주민은 즉시 높은 곳으로 대피하십시오."


def preview_text(length: int = 2000) -> str:
    """Korean prose of `length` characters (the longest text a preview takes), ending a sentence."""
    text = SENTENCE * (length // len(SENTENCE) + 1)
    return text[: length - 1].rstrip() + "."


async def _accounts(client: httpx.AsyncClient, count: int) -> list[dict[str, str]]:
    headers: list[dict[str, str]] = []
    for n in range(count):
        username = f"bench-preview-{n}"
        created = await client.post(
            "/api/v1/users",
            json={
                "username": username,
                "display_name": f"미리듣기 {n}",
                "role": "city_admin",
                "password": PASSWORD,
            },
        )
        created.raise_for_status()
        login = await client.post(
            "/api/v1/auth/token",
            data={"username": username, "password": PASSWORD},
            headers={"Authorization": ""},
        )
        login.raise_for_status()
        headers.append({"Authorization": f"Bearer {login.json()['access_token']}"})
    return headers


async def _disaster(client: httpx.AsyncClient, village_id: int) -> float:
    """Milliseconds from sending a spoken disaster alert to one village until its 201."""
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "text": ALERT, "village_ids": str(village_id)},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"disaster refused: {response.status_code} {response.text}")
    return elapsed


async def _load(
    client: httpx.AsyncClient,
    people: list[dict[str, str]],
    recording: bytes,
    village_id: int,
    counts: tuple[int, int],
) -> list[asyncio.Task[httpx.Response]]:
    preview_count, upload_count = counts
    text = preview_text()
    previews = [
        asyncio.create_task(
            client.post(
                "/api/v1/speech/preview",
                json={"text": text},
                headers=people[n % len(people)],
            )
        )
        for n in range(preview_count)
    ]
    uploads = [
        asyncio.create_task(
            client.post(
                "/api/v1/broadcasts",
                data={"category": "administrative", "village_ids": str(village_id)},
                files={"file": ("phone.m4a", recording, "audio/mp4")},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        )
        for _ in range(upload_count)
    ]
    return previews + uploads


async def run_disaster_bench(
    folder: Path, mqtt_url: str, recording: bytes, *, smoke: bool = False
) -> dict[str, Any]:
    previews_n, accounts_n, uploads_n = (
        (SMOKE_PREVIEWS, SMOKE_ACCOUNTS, SMOKE_UPLOADS) if smoke else (PREVIEWS, ACCOUNTS, UPLOADS)
    )
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    url = await seed_database(folder, 20)
    gateway = GatewayProcess(
        database_url=url,
        mqtt_url=mqtt_url,
        data_dir=folder,
        city_code=CITY,
        extra_env={**GATEWAY_ENV, "GATEWAY_RATE_LIMIT_USER_PER_HOUR": "0"},
    )
    await gateway.start()
    try:
        async with gateway.client() as client:
            client.timeout = httpx.Timeout(600)
            villages = (await client.get("/api/v1/villages", params={"limit": 2})).json()["items"]
            village_id = int(villages[0]["id"])
            people = await _accounts(client, accounts_n)
            await _disaster(client, village_id)  # warm-up: the worker processes start
            idle = [await _disaster(client, village_id) for _ in range(3)]
            started = time.perf_counter()
            load = await _load(client, people, recording, village_id, (previews_n, uploads_n))
            under_load: list[float] = []
            for _ in range(3):
                await asyncio.sleep(1.0)  # every request is in: previews and uploads wait
                under_load.append(await _disaster(client, village_id))
            responses = await asyncio.gather(*load)
            load_s = time.perf_counter() - started
    finally:
        gateway.stop()
    previews = Counter(r.status_code for r in responses[:previews_n])
    uploads = Counter(r.status_code for r in responses[previews_n:])
    return {
        "disaster_idle_ms": round(statistics.median(idle), 1),
        # The worst of three: on a gateway without lanes, the first alert waits for the whole
        # line and the next two find it empty, so a median would hide exactly the finding.
        "disaster_under_load_ms": round(max(under_load), 1),
        "disaster_under_load_samples_ms": [round(ms, 1) for ms in under_load],
        "disaster_idle_samples_ms": [round(ms, 1) for ms in idle],
        "previews": previews_n,
        "preview_chars": len(preview_text()),
        "preview_accounts": accounts_n,
        "preview_statuses": {str(k): v for k, v in sorted(previews.items())},
        "uploads": uploads_n,
        "upload_statuses": {str(k): v for k, v in sorted(uploads.items())},
        "load_total_s": round(load_s, 2),
    }
