"""End to end, with real Mosquitto and real Kannel: the gateway as a process, a simulated fleet
in which one village's speakers are all stopped. That village's residents get the notice by SMS
(seen at the fake SMSC) before the rule's time; villages whose speakers played get none; the
broadcast's record shows both channels, the speakers' and the phones'."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from maeul.kannel import SENDSMS_USER, KannelProcess
from tests.e2e.harness import GatewayProcess, broadcast_to, fleet_for, wait_online
from tests.fallback.conftest import add_resident
from tests.media import make_recording
from tests.sms.conftest import random_mobile
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RULE_S = 60


async def _detail(client: httpx.AsyncClient, broadcast_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_village_whose_speakers_are_all_offline_is_told_by_sms(
    tmp_path: Path, mqtt_url: str, kannel: KannelProcess
) -> None:
    gateway = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code="jinju"
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={
            "GATEWAY_SMS_SENDSMS_URL": kannel.sendsms_url,
            "GATEWAY_SMS_USERNAME": SENDSMS_USER,
            "GATEWAY_SMS_PASSWORD": kannel.config.sendsms_password,
            "GATEWAY_SMS_SENDER": "1588",
            "GATEWAY_SMS_POLL_S": "0.2",
            "GATEWAY_FALLBACK_POLL_S": "0.2",
        },
    )
    await gateway.start()
    clip = make_recording(tmp_path / "notice.m4a", "m4a", seconds=1.0).read_bytes()
    fleet = None
    try:
        async with gateway.client() as client:
            rule = await client.put(
                "/api/v1/fallback-rules/administrative", json={"after_s": RULE_S}
            )
            assert rule.status_code == 200, rule.text
            items = (await client.get("/api/v1/speakers/fleet")).json()["items"]
            by_village: dict[str, list[str]] = {}
            for speaker in items:
                by_village.setdefault(speaker["village_code"], []).append(speaker["code"])
            villages = {
                v["code"]: v["id"]
                for v in (await client.get("/api/v1/villages", params={"limit": 100})).json()[
                    "items"
                ]
            }
            dark, *heard = sorted(by_village)[:3]
            fleet = await fleet_for(
                client,
                mqtt_url,
                gateway.url,
                only=lambda s: s["village_code"] in heard,
                speed=8.0,
            )
            await wait_online(client, sum(len(by_village[v]) for v in heard), exactly=True)
            now = datetime.now().astimezone().isoformat()
            phones = {
                v: [random_mobile() for _ in range(2 if v == dark else 1)] for v in [dark, *heard]
            }
            for village, numbers in phones.items():
                for number in numbers:
                    await add_resident(client, villages[village], number, now)

            created = await broadcast_to(
                client,
                clip,
                [villages[v] for v in (dark, *heard)],
                text="오늘 오후 2시 마을회관에서 주민 회의가 있습니다.",
            )
            # Told by SMS (seen at the fake SMSC), and the villages whose speakers played are
            # settled without SMS; bounded so a broken run ends.
            async with asyncio.timeout(30):
                while True:
                    detail = await _detail(client, created["id"])
                    rows = {v["code"]: v for v in detail["village_deliveries"]}
                    told = [kannel.smsc.messages_to(n) for n in phones[dark]]
                    settled = all(
                        rows[v]["fallback"] and rows[v]["fallback"]["state"] != "waiting"
                        for v in heard
                    )
                    if all(told) and settled and rows[dark]["phone"]["delivered"] == 2:
                        break
                    await asyncio.sleep(0.2)
    finally:
        if fleet is not None:
            await fleet.stop()
        gateway.stop()

    expected = (
        f"[마을방송] {rows[dark]['name']}: 오늘 오후 2시 마을회관에서 주민 회의가 있습니다.\n"
        f"듣기: {gateway.url}/notices/{villages[dark]}"
    )
    assert told == [[expected], [expected]]
    assert all(kannel.smsc.messages_to(n) == [] for v in heard for n in phones[v])
    # The record: the speakers' channel and the phones', per village.
    fallback = rows[dark]["fallback"]
    assert (fallback["state"], fallback["reason"]) == ("notified", "offline")
    started = datetime.fromisoformat(detail["created_at"])
    assert (datetime.fromisoformat(fallback["decided_at"]) - started).total_seconds() < RULE_S
    assert rows[dark]["speakers_played"] == 0
    assert rows[dark]["phone"] == {
        "queued": 0,
        "sent": 0,
        "delivered": 2,
        "failed": 0,
        "skipped": 0,
    }
    for village in heard:
        assert (rows[village]["fallback"]["state"], rows[village]["fallback"]["reason"]) == (
            "not_needed",
            "played",
        )
        assert rows[village]["speakers_played"] == len(by_village[village])
        assert sum(rows[village]["phone"].values()) == 0
    assert detail["phone"]["delivered"] == 2
    assert detail["speakers"]["played"] == sum(len(by_village[v]) for v in heard)
    # No number in the gateway's log.
    logged = (tmp_path / "gateway.log").read_text(errors="replace")
    assert not [n for numbers in phones.values() for n in numbers if n in logged]
