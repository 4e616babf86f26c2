"""What the fallback tests share: residents signed up by an officer, and the fallback SMS the
outbox holds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.fallback.channels import REFERENCE_KIND
from gateway.sms.models import SmsMessage
from tests.flow.conftest import stack

__all__ = ["stack"]


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """A gateway that sends SMS: the tests read its outbox (the SMS worker is not run), so the
    address is never called."""
    return {"sms_sendsms_url": "http://127.0.0.1:9/cgi-bin/sendsms", "sms_sender": "1588"}


async def add_resident(
    client: httpx.AsyncClient, village_id: int, phone: str, now: str, **more: Any
) -> int:
    body = {"phone": phone, "channels": ["sms"], "consented_at": now, "consent_version": "paper"}
    response = await client.post(f"/api/v1/villages/{village_id}/residents", json={**body, **more})
    assert response.status_code == 201, response.text
    resident_id: int = response.json()["id"]
    return resident_id


async def fallback_messages(sessions: async_sessionmaker[AsyncSession]) -> list[SmsMessage]:
    async with sessions() as session:
        return list(
            await session.scalars(
                select(SmsMessage).where(SmsMessage.reference_kind == REFERENCE_KIND)
            )
        )
