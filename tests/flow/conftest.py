"""The gateway in process against a real database (SQLite, and PostgreSQL when reachable), with
the in-memory bus and a clock the test moves: the whole broadcast flow without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.settings import Settings
from tests.support.databases import seed_city
from tests.support.people import API_TOKEN, bearer
from wire import contract

TOKEN = API_TOKEN


@dataclass
class Stack:
    app: FastAPI
    client: httpx.AsyncClient
    bus: FakeBus
    clock: FakeClock
    settings: Settings

    async def publish_pending(self) -> int:
        count = 0
        while done := await self.app.state.publisher.publish_due():
            count += done
        return count

    async def deliver(self) -> None:
        """Let the intake drain everything the test put on the bus."""
        intake = self.app.state.intake
        while not self.bus.incoming.empty():
            batch = []
            while not self.bus.incoming.empty():
                batch.append(self.bus.incoming.get_nowait())
            await intake.process(batch)


@pytest.fixture
async def stack(
    migrated_database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    # A test module may give its stack settings besides these, as STACK_SETTINGS.
    overrides: dict[str, Any] = getattr(request.module, "STACK_SETTINGS", {})
    database_url = migrated_database_url
    settings = Settings(
        environment="test",
        database_url=database_url,
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        city_code="testcity",
        ack_timeout_s=10,
        max_send_attempts=3,
        retry_backoff_s=5,
        background_workers=False,  # the test drives the publisher, intake and sweeper itself
        heartbeat_s=30,
        status_cache_s=0,  # every read sees the acks the test just delivered
        **overrides,
    )
    bus = FakeBus()
    clock = FakeClock()
    app = create_app(settings, bus=bus, clock=clock)
    async with app.router.lifespan_context(app):
        await seed_city(app.state.sessions, preset="tiny", city_code=settings.city_code)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://gateway",
            headers=bearer(TOKEN),
        ) as client:
            yield Stack(app, client, bus, clock, settings)


def proof_of(command: contract.Command) -> dict[str, Any]:
    """What an honest speaker's ``played`` ack proves: the first encoding, played in full, at
    the level a speaker measures for it."""
    if not command.audio:
        return {}
    return {
        "audio_sha256": command.audio[0].sha256,
        "played_ms": command.audio[0].duration_ms,
        "level_dbfs": -17.2,  # the gateway's audio, normalised, as a speaker measures it
    }
