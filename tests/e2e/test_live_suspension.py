"""End to end: suspending a person ends their live talk on every speaker, through the gateway
process, a real Mosquitto and simulated speakers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import websockets

from devices.simulator import Fleet
from gateway.auth import Role
from maeul.live import LiveClient
from tests.devices.observer import Observer
from tests.e2e.harness import GatewayProcess
from tests.e2e.test_live import _district, _final, fleet, gateway, observer
from tests.support.people import access_token, create_user
from wire.contract import AckStatus

__all__ = ["fleet", "gateway", "observer"]  # the fixtures, shared

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def _create_officer(gateway: GatewayProcess, district_id: int) -> int:
    async with gateway.client() as client:
        return await create_user(
            client,
            "officer-d02",
            Role.DISTRICT_OFFICER,
            display_name="담당자",
            district_ids=[district_id],
        )


async def test_suspending_a_person_ends_their_live_talk_on_every_speaker(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer, tmp_path: Path
) -> None:
    async with gateway.client() as client:
        district_id, speakers, _ = await _district(client, "d02")
        user_id = await _create_officer(gateway, district_id)
        token = await access_token(client, "officer-d02")
    talk = LiveClient(gateway.url, token)
    try:
        started = await talk.open(
            {"category": "administrative", "district_ids": [district_id], "format": "pcm"}
        )
        broadcast_id = started["broadcast_id"]
        await talk.wait_for("ready", 30)
        tone = (8000 * np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000)).astype("<i2")
        pcm = tone.tobytes()
        for offset in range(0, len(pcm), 640):  # 20 ms of 16 kHz PCM per message
            await talk.send(pcm[offset : offset + 640])
            await asyncio.sleep(0.02)

        async with gateway.client() as client:
            suspended = await client.post(
                f"/api/v1/users/{user_id}/suspend", json={"reason": "부적절한 방송"}
            )
            assert suspended.status_code == 200, suspended.text
        ended = await talk.wait_for("ended", 30)
        await talk.wait_for("closed", 30)
    finally:
        await talk.close()
    assert ended["reason"] == "owner_suspended"
    assert "계정이 정지" in ended["detail"]
    assert talk._socket.close_code == 1008
    assert talk._socket.close_reason == "owner_suspended"

    # Every speaker got the end: what was said played, and nothing is left playing.
    await observer.until(
        lambda: all(_final(observer, broadcast_id, s) is not None for s in speakers), 30
    )
    for speaker in speakers:
        final = _final(observer, broadcast_id, speaker)
        assert final.status is AckStatus.PLAYED, (speaker, final)
        assert fleet.speaker(speaker).live.playing is None
    with sqlite3.connect(tmp_path / "maeul.db") as db:
        row = db.execute(
            "SELECT state, end_reason FROM live_sessions WHERE broadcast_id = ?", (broadcast_id,)
        ).fetchone()
    assert row == ("ended", "owner_suspended")


async def test_a_client_still_streaming_when_suspended_is_told_why_before_the_close(
    gateway: GatewayProcess, fleet: Fleet, observer: Observer
) -> None:
    """A client keeps sending PCM while the suspension lands (as a person talking does): the
    next message it sends must not close the socket before it is told the reason."""
    async with gateway.client() as client:
        district_id, speakers, _ = await _district(client, "d02")
        user_id = await _create_officer(gateway, district_id)
        token = await access_token(client, "officer-d02")
    talk = LiveClient(gateway.url, token)
    tone = (8000 * np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000)).astype("<i2").tobytes()
    try:
        started = await talk.open(
            {
                "category": "administrative",
                "district_ids": [district_id],
                "format": "pcm",
                "sample_rate": 16000,
            }
        )
        await talk.wait_for("ready", 30)

        async def keep_talking() -> None:
            # 20 ms of 16 kHz PCM per message, on and on, until the gateway closes the socket.
            offset = 0
            with contextlib.suppress(websockets.ConnectionClosed):
                while talk.latest("closed") is None:
                    await talk.send(tone[offset : offset + 640])
                    offset = (offset + 640) % len(tone)
                    await asyncio.sleep(0.02)

        talking = asyncio.create_task(keep_talking())
        await asyncio.sleep(0.5)  # talking for a while before the suspension
        async with gateway.client() as client:
            suspended = await client.post(
                f"/api/v1/users/{user_id}/suspend", json={"reason": "부적절한 방송"}
            )
            assert suspended.status_code == 200, suspended.text
        await talk.wait_for("closed", 30)
        await talking
    finally:
        await talk.close()
    ended = talk.latest("ended")
    assert ended is not None, talk.events
    assert ended["reason"] == "owner_suspended"
    assert "계정이 정지" in ended["detail"]
    assert "suspended" in ended["detail"]
    assert talk._socket.close_code == 1008
    assert talk._socket.close_reason == "owner_suspended"

    # What was said before the suspension played on every speaker.
    broadcast_id = started["broadcast_id"]
    await observer.until(
        lambda: all(_final(observer, broadcast_id, s) is not None for s in speakers), 30
    )
    for speaker in speakers:
        assert _final(observer, broadcast_id, speaker).status is AckStatus.PLAYED, speaker
