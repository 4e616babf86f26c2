"""Broadcasts sent at the same moment: the same audio stored by two requests at once is one
asset, and neither request fails for it."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from gateway.broadcasts.audio_store import store_encoded
from gateway.broadcasts.models import AudioAsset
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import recording

__all__ = ["recording"]  # the module-scoped fixture, shared


@dataclass(frozen=True)
class Encoded:
    data: bytes
    codec: str = "opus"
    mime_type: str = "audio/ogg"
    duration_ms: int = 1000

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


async def test_requests_storing_the_same_audio_at_once_all_commit(stack: Stack) -> None:
    first = stack.clock.now()

    async def store(encoded: Encoded, later: timedelta) -> None:
        async with stack.app.state.sessions() as session:
            await store_encoded(session, encoded, first + later)
            await session.commit()

    # Several rounds: each a new asset, stored by three requests at once.
    assets = [Encoded(f"the same bytes, sent to three villages ({n})".encode()) for n in range(8)]
    for encoded in assets:
        await asyncio.gather(*(store(encoded, timedelta(seconds=s)) for s in (0, 2, 1)))

    async with stack.app.state.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(AudioAsset))
        stored = [await session.get(AudioAsset, encoded.sha256) for encoded in assets]
    assert rows == len(assets)
    assert [a.data if a else None for a in stored] == [encoded.data for encoded in assets]
    # Stored again, its retention clock starts anew (never moving back).
    assert {a.created_at if a else None for a in stored} == {first + timedelta(seconds=2)}


async def test_one_recording_and_one_text_sent_to_two_villages_at_once(
    stack: Stack, recording: bytes
) -> None:
    listed = (await stack.client.get("/api/v1/villages")).json()["items"]
    villages = [v["id"] for v in listed][:2]

    async def send(village: int, *, upload: bool) -> httpx.Response:
        return await stack.client.post(
            "/api/v1/broadcasts",
            data={"category": "administrative", "village_ids": [village], "text": "마을회의"},
            files={"file": ("notice.m4a", recording, "audio/mp4")} if upload else None,
        )

    for upload in (True, False):
        responses = await asyncio.gather(*(send(v, upload=upload) for v in villages))
        assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 2
