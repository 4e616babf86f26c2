"""The gateway in process (the flow tests' stack), with what the residents' tests share: the
seeded villages, the SMS codes waiting in the outbox, and numbers in every spelling."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from gateway.sms.models import SmsMessage
from tests.flow.conftest import Stack, stack

__all__ = ["stack"]

CONSENT = {"consent_version": "2026-12-v1", "consent": True}


async def villages(stack: Stack) -> list[dict[str, Any]]:
    response = await stack.client.get("/api/v1/villages", params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def sent_code(stack: Stack, signup_id: str) -> str:
    """The six digits the SMS for this sign-up carries, read from the outbox as the SMS
    transport would."""
    async with stack.app.state.sessions() as session:
        message = await session.scalar(
            select(SmsMessage).where(
                SmsMessage.reference_kind == "signup", SmsMessage.reference_id == signup_id
            )
        )
    assert message is not None
    found = re.search(r"\d{6}", message.text)
    assert found is not None
    return found.group()


def spellings(number: str) -> list[str]:
    """Ways a normalised number (01012345678) could show up in text or bytes."""
    local = number[1:]
    return [
        number,
        f"{number[:3]}-{number[3:7]}-{number[7:]}",
        f"{number[:3]} {number[3:7]} {number[7:]}",
        f"+82{local}",
        f"+82-{local[:2]}-{local[2:6]}-{local[6:]}",
        f"82{local}",
        number[3:],  # the eight digits after 010
    ]
