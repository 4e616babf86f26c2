"""The SMS worker: claims due messages from the outbox and hands each to Kannel.

Every replica may run one. A claim is committed before Kannel is called, and Kannel's answer
is recorded in a transaction of its own, so no session is held across the HTTP request and two
workers never send one message. Kannel down or failing (connection refused, timeout, 5xx):
the message goes back to the queue with exponential back-off, and fails with the last reason
after ``sms_max_attempts``. Kannel refusing the message (4xx): it fails at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.clock import Clock
from gateway.passes import run_passes
from gateway.residents.crypto import PhoneCipher, PhoneKeyUnavailable, is_synthetic_number
from gateway.settings import Settings
from gateway.sms import service
from gateway.sms.links import ReportLinks
from gateway.sms.sendsms import KannelRejected, KannelUnavailable, Outgoing, Sender
from gateway.sms.states import SmsStatus

log = logging.getLogger(__name__)

# Longer than any sendsms request may take (its timeout is 10 s): past it, another worker may
# claim the message again.
LEASE: Final = timedelta(seconds=60)
_MAX_BACKOFF_S: Final = 600.0


class SmsWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        sender: Sender,
        *,
        city_id: int,
        cipher: PhoneCipher,
        links: ReportLinks,
        worker_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._sender = sender
        self._city_id = city_id
        self._cipher = cipher
        self._links = links
        self.worker_id = worker_id or f"{settings.replica_id}-{secrets.token_hex(3)}"
        self.wake = asyncio.Event()
        self.totals: Counter[str] = Counter()

    async def run(self) -> None:
        await run_passes(self.send_due, self.wake, self._settings.sms_poll_s, "SMS")

    async def send_due(self, limit: int = 500) -> Counter[str]:
        """Send every message due now (up to `limit`); outcomes counted by kind."""
        outcomes: Counter[str] = Counter()
        passed: set[str] = set()
        for _ in range(limit):
            outcome = await self._send_one(passed)
            if outcome is None:
                break
            outcomes[outcome] += 1
        self.totals.update(outcomes)
        return outcomes

    async def _send_one(self, passed: set[str]) -> str | None:
        now = self._clock.now()
        async with self._sessions() as session:
            claim = await service.claim_next(
                session,
                city_id=self._city_id,
                worker_id=self.worker_id,
                now=now,
                lease=LEASE,
                daily_budget=self._settings.sms_daily_budget,
                passed=passed,
            )
            await session.commit()
        if claim is None:
            return None
        passed.add(claim.id)
        if claim.status is SmsStatus.OVER_BUDGET:
            log.warning("SMS %s: over the city's daily budget; not sent", claim.id)
            return "over_budget"
        try:
            number = service.open_recipient(self._cipher, claim.id, claim.to_sealed)
        except PhoneKeyUnavailable:
            log.error("SMS %s: its number cannot be opened with GATEWAY_PHONE_KEY", claim.id)
            return await self._fail(claim.id, "number_unreadable")
        if is_synthetic_number(number) and not self._settings.sms_allow_synthetic:
            log.warning("SMS %s: a synthetic (seeded) number; not sent", claim.id)
            return await self._fail(claim.id, "synthetic_number")
        outgoing = Outgoing(to=number, text=claim.text, dlr_url=self._links.url_for(claim.id))
        try:
            await self._sender.send(outgoing)
        except KannelUnavailable as exc:
            return await self._unavailable(claim, exc.reason)
        except KannelRejected as exc:
            log.warning("SMS %s: Kannel refused it (%s)", claim.id, exc.reason)
            return await self._fail(claim.id, exc.reason)
        async with self._sessions() as session:
            await service.record_accepted(session, claim.id, self._clock.now())
            await session.commit()
        return "sent"

    async def _fail(self, message_id: str, reason: str) -> str:
        async with self._sessions() as session:
            await service.record_failed(session, message_id, reason=reason, now=self._clock.now())
            await session.commit()
        return "failed"

    async def _unavailable(self, claim: service.Claim, reason: str) -> str:
        now = self._clock.now()
        async with self._sessions() as session:
            if claim.attempts >= self._settings.sms_max_attempts:
                log.warning(
                    "SMS %s: giving up after %s attempts (%s)", claim.id, claim.attempts, reason
                )
                await service.record_failed(session, claim.id, reason=reason, now=now)
                outcome = "failed"
            else:
                delay = min(
                    _MAX_BACKOFF_S, self._settings.sms_retry_backoff_s * 2 ** (claim.attempts - 1)
                )
                log.info(
                    "SMS %s: Kannel unavailable (%s); retry in %.0f s", claim.id, reason, delay
                )
                await service.record_retry(
                    session, claim.id, reason=reason, at=now + timedelta(seconds=delay)
                )
                outcome = "retry"
            await session.commit()
        return outcome
