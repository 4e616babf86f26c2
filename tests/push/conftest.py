"""The gateway in process (SQLite, and PostgreSQL when reachable) with web push on, and a push
service on this machine that the worker really sends to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.push.models import PushMessage
from gateway.push.worker import PushWorker
from gateway.settings import Settings
from tests.support.databases import seed_city
from tests.support.people import API_TOKEN, bearer
from tests.support.push_service import PushService


@dataclass
class PushStack:
    app: FastAPI
    client: httpx.AsyncClient  # no credentials: a resident's phone
    staff: httpx.AsyncClient
    clock: FakeClock
    settings: Settings
    service: PushService

    @property
    def worker(self) -> PushWorker:
        worker: PushWorker | None = self.app.state.push_worker
        assert worker is not None
        return worker

    def new_worker(self, **overrides: Any) -> PushWorker:
        """Another worker on the same database, as another replica runs."""
        assert self.app.state.push_worker is not None
        return PushWorker(
            self.app.state.sessions,
            self.settings.model_copy(update=overrides),
            self.clock,
            self.worker._sender,
            city_id=self.app.state.city_id,
        )

    async def village_id(self, code: str) -> int:
        found = await self.staff.get("/api/v1/villages", params={"q": code})
        [village] = [v for v in found.json()["items"] if v["code"] == code]
        return int(village["id"])

    async def subscribe(self, village_id: int, **extra: Any) -> dict[str, Any]:
        """Subscribe a new browser to the village, as the residents' page does."""
        key = (await self.client.get("/api/v1/push/vapid-public-key")).json()["public_key"]
        subscription = self.service.subscribe(key)
        response = await self.client.post(
            "/api/v1/push/subscriptions",
            json={"village_id": village_id, "subscription": subscription, **extra},
        )
        assert response.status_code == 201, response.text
        return subscription

    async def message(self, message_id: str) -> PushMessage:
        async with self.app.state.sessions() as session:
            message: PushMessage | None = await session.get(PushMessage, message_id)
            assert message is not None
            return message


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


@pytest.fixture
async def push_stack(
    migrated_database_url: str, tmp_path: Path, push_service: PushService
) -> AsyncIterator[PushStack]:
    settings = Settings(
        environment="test",
        database_url=migrated_database_url,
        data_dir=tmp_path / "data",
        api_token=API_TOKEN,
        city_code="testcity",
        public_url="https://maeul.example.go.kr",
        background_workers=False,  # the test drives the push worker itself
        push_vapid_subject="mailto:ops@maeul.example.go.kr",
        push_allow_loopback_endpoints=True,
        push_retry_backoff_s=1,
        push_subscriptions_per_minute=100,
    )
    clock = FakeClock()
    app = create_app(settings, bus=FakeBus(), clock=clock)
    async with app.router.lifespan_context(app):
        await seed_city(app.state.sessions, preset="tiny", city_code=settings.city_code)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
            httpx.AsyncClient(
                transport=transport, base_url="http://gateway", headers=bearer(API_TOKEN)
            ) as staff,
        ):
            yield PushStack(app, client, staff, clock, settings, push_service)
