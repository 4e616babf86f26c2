"""End to end: quiet hours hold a village notice until they end, then every speaker plays it;
a disaster alert in the middle of quiet hours plays at once."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, wait_online, wait_until_final
from tests.e2e.test_preemption import _fleet, clips
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
__all__ = ["clips"]

SEOUL = ZoneInfo("Asia/Seoul")


# Time enough, on a busy machine too, to start the gateway and its speakers and play the whole
# disaster alert before the window ends.
LEAD_S = 45


def _window_ending_soon() -> tuple[str, datetime]:
    """A quiet-hours window that began half an hour ago and ends on the first whole minute at
    least LEAD_S seconds away (windows are in whole minutes)."""
    now = datetime.now(SEOUL)
    end = datetime.fromtimestamp(math.ceil((now.timestamp() + LEAD_S) / 60) * 60, SEOUL)
    start = now - timedelta(minutes=30)
    return f"{start:%H:%M}-{end:%H:%M}", end


@pytest.fixture
async def quiet_gateway(
    tmp_path: Path, mqtt_url: str
) -> AsyncIterator[tuple[GatewayProcess, datetime]]:
    window, end = _window_ending_soon()
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny"
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={
            "GATEWAY_QUIET_HOURS": window,
            "GATEWAY_QUIET_HOURS_POLICY": "defer",
            "GATEWAY_SCHEDULE_POLL_S": "0.5",
        },
    )
    await process.start()
    try:
        yield process, end
    finally:
        process.stop()


async def _post(client: httpx.AsyncClient, clip: bytes, category: str) -> httpx.Response:
    return await client.post(
        "/api/v1/broadcasts",
        data={"category": category, "all_villages": "true", "expires_in_s": "900"},
        files={"file": ("clip.m4a", clip, "audio/mp4")},
    )


async def test_quiet_hours_defer_a_notice_but_not_a_disaster_alert(
    quiet_gateway: tuple[GatewayProcess, datetime], mqtt_url: str, clips: dict[str, bytes]
) -> None:
    gateway, end = quiet_gateway
    async with gateway.client() as client:
        fleet = await _fleet(client, mqtt_url, gateway.url)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total, exactly=True)

            held = await _post(client, clips["short"], "village_notice")
            assert held.status_code == 202, held.text
            schedule: dict[str, Any] = held.json()
            fires_at = datetime.fromisoformat(schedule["next_fire_at"])
            assert fires_at == end.astimezone(UTC), "held until quiet hours end"

            alert = await _post(client, clips["alert"], "disaster")
            assert alert.status_code == 201, "a disaster alert ignores quiet hours"
            final = await wait_until_final(client, alert.json()["id"], limit_s=120)
            assert final["speakers"]["played"] == total
            assert all(s.played == 1 for s in fleet), "the notice has not played yet"

            async with asyncio.timeout(240):
                while True:
                    current = (await client.get(f"/api/v1/schedules/{schedule['id']}")).json()
                    if current["broadcast_ids"]:
                        break
                    await asyncio.sleep(1)
            assert datetime.now(UTC) >= fires_at
            [broadcast_id] = current["broadcast_ids"]
            final = await wait_until_final(client, broadcast_id, limit_s=120)
            assert final["speakers"]["played"] == total
            assert all(s.played == 2 for s in fleet)
        finally:
            await fleet.stop()
