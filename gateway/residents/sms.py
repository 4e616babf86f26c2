"""Sending an SMS: the interface every sender implements, and the outbox sender that queues the
message in the caller's transaction for the SMS transport to send after the commit."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.residents.crypto import PhoneCipher
from gateway.residents.models import SmsMessage, SmsState


class SmsSender(Protocol):
    async def send(self, to: str, text: str, *, reference: str) -> None:
        """Send ``text`` to the normalised number ``to``; the same ``reference`` twice is one
        message."""


def recipient_context(reference: str) -> str:
    """The associated data a queued message's recipient is sealed with."""
    return f"sms:{reference}"


class OutboxSender:
    """Queues the message as a row of ``sms_outbox``: it goes out only if the transaction that
    asked for it commits, and the transport sends each row once."""

    def __init__(
        self, session: AsyncSession, cipher: PhoneCipher, *, city_id: int, now: datetime
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._city_id = city_id
        self._now = now

    async def send(self, to: str, text: str, *, reference: str) -> None:
        existing = await self._session.scalar(
            select(SmsMessage.id).where(
                SmsMessage.city_id == self._city_id, SmsMessage.reference == reference
            )
        )
        if existing is not None:
            return
        sealed = self._cipher.seal(to, context=recipient_context(reference))
        self._session.add(
            SmsMessage(
                city_id=self._city_id,
                reference=reference,
                phone_key_id=sealed.key_id,
                phone_ciphertext=sealed.ciphertext,
                text=text,
                state=SmsState.QUEUED.value,
                attempts=0,
                created_at=self._now,
                updated_at=self._now,
            )
        )
        await self._session.flush()


def open_recipient(cipher: PhoneCipher, message: SmsMessage) -> str:
    """The number a queued message goes to (for the transport, at the moment it sends)."""
    return cipher.open(
        message.phone_key_id, message.phone_ciphertext, context=recipient_context(message.reference)
    )
