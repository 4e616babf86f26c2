"""Fault scenarios end to end: the broker restarts in the middle of a broadcast."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from maeul.broker import MosquittoConfig, MosquittoProcess
from tests.e2e.harness import GatewayProcess, wait_until_final
from tests.e2e.test_jinju import _broadcast, _fleet, _seeded_database, _wait_for_online
from tests.media import make_recording

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    with MosquittoProcess(MosquittoConfig(data_dir=tmp_path / "mqtt")) as broker:
        yield broker


async def test_a_broker_restart_mid_broadcast_loses_and_doubles_nothing(
    tmp_path: Path, own_broker: MosquittoProcess
) -> None:
    gateway = GatewayProcess(
        database_url=await _seeded_database(tmp_path),
        mqtt_url=own_broker.url,
        data_dir=tmp_path,
        # Retries go on long enough for 691 speakers to reconnect to the restarted broker on a
        # busy machine: a speaker gets its command from a retry, never from luck.
        extra_env={
            "GATEWAY_ACK_TIMEOUT_S": "5",
            "GATEWAY_RETRY_BACKOFF_S": "1",
            "GATEWAY_MAX_SEND_ATTEMPTS": "12",
        },
    )
    await gateway.start()
    clip = make_recording(tmp_path / "clip.m4a", "m4a", seconds=6.0).read_bytes()
    try:
        async with gateway.client() as client:
            fleet = await _fleet(client, own_broker.url, gateway.url, speed=2.0)
            try:
                total = len(fleet.speakers)
                await _wait_for_online(client, total)
                created = await _broadcast(client, clip)
                async with asyncio.timeout(60):
                    while sum(s.received for s in fleet) == 0:  # noqa: ASYNC110 - counters
                        await asyncio.sleep(0.02)
                await asyncio.to_thread(own_broker.restart)
                final = await wait_until_final(client, created["id"], limit_s=240)
            finally:
                await fleet.stop()
    finally:
        gateway.stop()
    assert final["speakers"]["played"] == total, final["speakers"]
    assert final["villages"]["played"] == 358
    assert all(s.played == 1 for s in fleet), "nothing played twice"
