"""Sending an SMS: the interface every sender implements, and the outbox sender that queues the
message in the caller's transaction (``sms_messages``, `gateway.sms.service.enqueue_sms`) for
the SMS worker to send after the commit."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.residents.crypto import PhoneCipher
from gateway.sms.models import SmsMessage
from gateway.sms.service import enqueue_sms


class SmsSender(Protocol):
    async def send(self, to: str, text: str, *, reference: str) -> None:
        """Send ``text`` to the normalised number ``to``; the same ``reference`` twice is one
        message."""


class OutboxSender:
    """Queues verification codes as rows of ``sms_messages``: one goes out only if the
    transaction that asked for it commits, the worker sends it once, and its text (the code) is
    erased once it is sent or final. ``reference`` is ``<kind>:<id>`` (``signup:<id>``)."""

    def __init__(
        self,
        session: AsyncSession,
        cipher: PhoneCipher,
        *,
        city_id: int,
        now: datetime,
        max_parts: int = 10,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._city_id = city_id
        self._now = now
        self._max_parts = max_parts

    async def send(self, to: str, text: str, *, reference: str) -> None:
        kind, _, reference_id = reference.partition(":")
        existing = await self._session.scalar(
            select(SmsMessage.id).where(
                SmsMessage.city_id == self._city_id,
                SmsMessage.reference_kind == kind,
                SmsMessage.reference_id == reference_id,
            )
        )
        if existing is not None:
            return
        await enqueue_sms(
            self._session,
            cipher=self._cipher,
            city_id=self._city_id,
            to_number=to,
            text=text,
            reference_kind=kind,
            reference_id=reference_id,
            now=self._now,
            max_parts=self._max_parts,
            forget_text=True,
        )
