"""SMS throughput: a broadcast's fallback telling N residents by SMS through the gateway, beside
the same messages posted straight to Kannel's sendsms (the floor), against one local Kannel.

One Kannel (bearerbox, smsbox and the package's fake SMSC, started as `maeul run` and the tests
start it) serves both sides. Per round:

- **Gateway**: two broadcasts whose speakers are all offline, one with a short text to one
  village and one with a long text (three parts) to another; the fallback worker queues one SMS
  per consenting resident and the SMS worker hands them to smsbox. Timed from the first 201
  until the fake SMSC has every part (``gateway_per_s``) and until the delivery reports have
  marked every message delivered (``gateway_delivered_per_s``).
- **Floor**: the same texts to the same numbers, each a sendsms GET straight to smsbox with the
  gateway's parameters but no delivery report, as many at a time as the SMS worker sends, timed
  until the fake SMSC has every part (``kannel_direct_per_s``).

``ratio`` is the floor's rate over the gateway's. Both sides are counted in parts as fakesmsc
logs them, one line a part; ``extra_parts`` counts any beyond those expected (a double send).
The city's daily budget is raised for the bench (every round spends it again on the same day),
and the figures say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.city import CITY, GATEWAY_ENV, seed_database
from bench.stats import log as _log
from bench.stats import median
from gateway.broadcasts.models import Broadcast
from gateway.fallback.channels import listen_url, sms_text
from gateway.settings import Settings
from gateway.sms.segments import count_parts
from maeul.kannel import SENDSMS_USER, KannelConfig, KannelProcess
from tests.e2e.harness import GatewayProcess
from tests.media import make_recording

MESSAGES = 2000
# One resident in four gets the long text.
LONG_EVERY = 4
# With the village's name and the link to listen: one part, and three.
SHORT_BODY = "오늘 저녁 7시 마을회의"
LONG_BODY = (
    "태풍 북상으로 오늘 밤부터 강한 비바람이 예상됩니다. 비닐하우스와 축사를 미리 묶어 "
    "두시고, 하천과 계곡 근처에는 가지 마십시오. 대피가 필요하면 마을회관으로 오십시오."
)
WAIT_S = 300.0


class SmscCounter:
    """Counts the parts fakesmsc logs, reading only what it appended since the last look."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.parts = 0
        self._offset = 0
        self._rest = b""

    def read(self) -> int:
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
            self._offset += len(data)
            lines = (self._rest + data).split(b"\n")
            self._rest = lines.pop()
            self.parts += sum(1 for line in lines if b"Got message" in line)
        return self.parts

    async def wait_for(self, parts: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while self.read() < parts:  # noqa: ASYNC110 - polling a file
                await asyncio.sleep(0.02)


def _statuses(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT status, count(*) FROM sms_messages GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


async def _wait_statuses(database: Path, status: str, count: int) -> dict[str, int]:
    async with asyncio.timeout(WAIT_S):
        while (found := await asyncio.to_thread(_statuses, database)).get(status, 0) < count:  # noqa: ASYNC110 - polling a file
            await asyncio.sleep(0.05)
    return found


async def _wait_rows(database: Path, count: int) -> float:
    """When the outbox first held `count` messages (perf_counter)."""
    async with asyncio.timeout(WAIT_S):
        while sum((await asyncio.to_thread(_statuses, database)).values()) < count:  # noqa: ASYNC110 - polling a file
            await asyncio.sleep(0.05)
    return time.perf_counter()


def _numbers(count: int) -> list[str]:
    # 010-2XXX-XXXX: a real mobile range, not the seeded synthetic one (010-0XXX-XXXX).
    return [f"0102{n:07d}" for n in range(count)]


async def _import_residents(
    client: httpx.AsyncClient, village_id: int, numbers: list[str], prefix: str
) -> None:
    today = date.today().isoformat()
    rows = ["address,phone,channels,consented_on"]
    rows += [f"{prefix} {n + 1}번지,{number},sms,{today}" for n, number in enumerate(numbers)]
    response = await client.post(
        f"/api/v1/villages/{village_id}/households:import",
        files={"file": ("residents.csv", "\n".join(rows).encode(), "text/csv")},
    )
    if response.status_code != 200:
        raise RuntimeError(f"import refused: {response.status_code} {response.text[:300]}")


async def _broadcast(client: httpx.AsyncClient, clip: bytes, village_id: int, text: str) -> float:
    """Post a broadcast to one village; returns when its 201 arrived (perf_counter)."""
    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "village_ids": [village_id], "text": text},
        files={"file": ("phone.m4a", clip, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if response.status_code != 201:
        raise RuntimeError(f"broadcast refused: {response.status_code} {response.text[:300]}")
    return time.perf_counter()


async def _post_direct(
    kannel: KannelProcess, messages: list[tuple[str, str]], concurrency: int
) -> None:
    """Each message a sendsms GET, `concurrency` at a time, on kept-alive connections."""
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:

        async def lane() -> None:
            while not queue.empty():
                to, text = queue.get_nowait()
                response = await client.get(
                    kannel.sendsms_url,
                    params={
                        "username": SENDSMS_USER,
                        "password": kannel.config.sendsms_password,
                        "to": to,
                        "text": text,
                        "coding": "2",
                        "charset": "UTF-8",
                        "from": "1588",
                    },
                )
                if response.status_code not in (200, 202):
                    raise RuntimeError(f"sendsms refused: {response.status_code}")

        await asyncio.gather(*(lane() for _ in range(concurrency)))


async def run_sms_bench(
    folder: Path,
    mqtt_url: str,
    *,
    messages: int = MESSAGES,
    rounds: int = 3,
    warmup: int = 1,
) -> dict[str, Any]:
    """Alternate gateway and floor rounds on one Kannel; medians of the timed rounds."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    long_count = messages // LONG_EVERY
    short_count = messages - long_count
    numbers = _numbers(messages)
    # Every round spends the budget again on the same local day; the default (20,000 parts)
    # would end a long run over budget, which is not what is measured here.
    budget = 1_000_000
    concurrency = Settings.model_fields["sms_send_concurrency"].default
    url = await seed_database(folder, 2, villages=2)
    kannel = KannelProcess(KannelConfig(data_dir=folder / "kannel"))
    await asyncio.to_thread(kannel.start)
    gateway = GatewayProcess(
        database_url=url,
        mqtt_url=mqtt_url,
        data_dir=folder,
        city_code=CITY,
        extra_env={
            **GATEWAY_ENV,
            **{f"GATEWAY_{k.upper()}": v for k, v in kannel.gateway_settings().items()},
            "GATEWAY_SMS_DAILY_BUDGET": str(budget),
        },
    )
    database = folder / "maeul.db"
    counter = SmscCounter(kannel.config.fakesmsc_log)
    clip = make_recording(folder / "notice.m4a", "m4a", seconds=1.0).read_bytes()
    try:
        await gateway.start()
        async with gateway.client() as client:
            villages = (await client.get("/api/v1/villages", params={"limit": 10})).json()["items"]
            short_village, long_village = sorted(villages, key=lambda v: v["id"])[:2]
            await _import_residents(client, short_village["id"], numbers[:short_count], "가")
            await _import_residents(client, long_village["id"], numbers[short_count:], "나")
            settings = Settings(environment="test", public_url=gateway.url)
            texts = {
                village["id"]: sms_text(
                    Broadcast(text=body, title=""),
                    village["name"],
                    listen_url(settings, village["id"]),
                    max_parts=settings.sms_max_parts,
                )
                for village, body in ((short_village, SHORT_BODY), (long_village, LONG_BODY))
            }
            outgoing = [(n, texts[short_village["id"]]) for n in numbers[:short_count]]
            outgoing += [(n, texts[long_village["id"]]) for n in numbers[short_count:]]
            parts = sum(count_parts(text) for _, text in outgoing)
            _log(
                f"sms: {messages} messages ({long_count} long), {parts} parts a side, "
                f"{concurrency} at a time; budget raised to {budget:,} parts a day"
            )
            samples: dict[str, list[float]] = {
                "gateway": [],
                "delivered": [],
                "direct": [],
                "queued_s": [],
            }
            extra_parts = 0
            delivered_total = 0
            for index in range(warmup + rounds):
                timed = index >= warmup
                before = counter.read()
                # One after the other: the clock starts at the first 201.
                started = await _broadcast(client, clip, short_village["id"], SHORT_BODY)
                await _broadcast(client, clip, long_village["id"], LONG_BODY)
                outboxed = asyncio.create_task(_wait_rows(database, delivered_total + messages))
                await counter.wait_for(before + parts)
                at_smsc = time.perf_counter() - started
                queued = await outboxed - started
                delivered_total += messages
                statuses = await _wait_statuses(database, "delivered", delivered_total)
                delivered = time.perf_counter() - started
                await asyncio.sleep(0.5)
                extra_parts += counter.read() - before - parts
                if set(statuses) != {"delivered"}:
                    raise RuntimeError(f"sms: messages not delivered: {statuses}")

                before = counter.read()
                started = time.perf_counter()
                await _post_direct(kannel, outgoing, concurrency)
                await counter.wait_for(before + parts)
                direct = time.perf_counter() - started
                await asyncio.sleep(0.5)
                extra_parts += counter.read() - before - parts
                _log(
                    f"  round {index + 1}{'' if timed else ' (warm-up)'}: gateway "
                    f"{messages / at_smsc:.1f}/s at the SMSC (all queued after {queued:.1f} s), "
                    f"{messages / delivered:.1f}/s delivered; direct {messages / direct:.1f}/s"
                )
                if timed:
                    samples["gateway"].append(messages / at_smsc)
                    samples["delivered"].append(messages / delivered)
                    samples["direct"].append(messages / direct)
                    samples["queued_s"].append(queued)
    finally:
        gateway.stop()
        await asyncio.to_thread(kannel.stop)
    gateway_per_s = round(median(samples["gateway"]), 1)
    direct_per_s = round(median(samples["direct"]), 1)
    return {
        "messages": messages,
        "long_messages": long_count,
        "parts": parts,
        "concurrency": concurrency,
        "rounds": rounds,
        "warmup": warmup,
        "gateway_per_s": gateway_per_s,
        "gateway_delivered_per_s": round(median(samples["delivered"]), 1),
        "gateway_queued_s": round(median(samples["queued_s"]), 2),
        "kannel_direct_per_s": direct_per_s,
        "ratio": round(direct_per_s / gateway_per_s, 2) if gateway_per_s else None,
        "extra_parts": extra_parts,
        "daily_budget": budget,
        "note": (
            f"gateway side with GATEWAY_SMS_DAILY_BUDGET={budget} (raised for the bench); "
            "the floor asks for no delivery report"
        ),
        "samples": {key: [round(s, 1) for s in values] for key, values in samples.items()},
    }


def sms_settings() -> dict[str, int]:
    """BENCH_SMS_MESSAGES and BENCH_ROUNDS override the size (smoke mode: 40, one round)."""
    if os.environ.get("BENCH_SMOKE") == "1":
        return {"messages": 40, "rounds": 1, "warmup": 0}
    return {
        "messages": int(os.environ.get("BENCH_SMS_MESSAGES", "2000")),
        "rounds": int(os.environ.get("BENCH_ROUNDS", "3")),
        "warmup": 1,
    }
