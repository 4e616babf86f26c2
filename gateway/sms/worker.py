"""The SMS worker: claims due messages from the outbox in batches and hands them to
Kannel, ``sms_send_concurrency`` at a time.

Every replica may run one. A batch's claims are committed before Kannel is called, and Kannel's
answers are recorded together in a transaction of their own, so no session is held across the
HTTP requests and two workers never send one message. Kannel down or failing (connection
refused, timeout, 5xx): the message goes back to the queue with exponential back-off, and fails
with the last reason after ``sms_max_attempts``. Kannel refusing the message (4xx): it fails
at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from datetime import datetime, timedelta
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
# Messages one pass claims at most (each pass leaves out those it already tried).
PASS_LIMIT: Final = 500
# A batch is claimed in one transaction and sent `sms_send_concurrency` at a time: this many
# rounds of sendsms timeouts (10 s) at most, well inside the lease.
_WAVES: Final = 4


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
        await run_passes(self._drain, self.wake, self._settings.sms_poll_s, "SMS")

    async def _drain(self) -> None:
        """Passes until one ends short of its limit: a backlog (a village's fallback) goes out
        without waiting a poll interval between passes."""
        while sum((await self.send_due(PASS_LIMIT)).values()) >= PASS_LIMIT:
            pass

    async def send_due(self, limit: int = PASS_LIMIT) -> Counter[str]:
        """Send every message due now (up to `limit`); outcomes counted by kind."""
        outcomes: Counter[str] = Counter()
        passed: set[str] = set()
        batch = self._settings.sms_send_concurrency * _WAVES
        while (room := limit - len(passed)) > 0:
            async with self._sessions() as session:
                claims = await service.claim_due(
                    session,
                    city_id=self._city_id,
                    worker_id=self.worker_id,
                    now=self._clock.now(),
                    lease=LEASE,
                    daily_budget=self._settings.sms_daily_budget,
                    limit=min(batch, room),
                    passed=passed,
                )
                await session.commit()
            if not claims:
                break
            passed.update(claim.id for claim in claims)
            outcomes.update(await self._send_batch(claims))
        self.totals.update(outcomes)
        return outcomes

    async def _send_batch(self, claims: list[service.Claim]) -> Counter[str]:
        """Hand the claimed messages to Kannel, ``sms_send_concurrency`` at a time, then record
        every answer in one transaction."""
        gate = asyncio.Semaphore(self._settings.sms_send_concurrency)

        async def attempt(claim: service.Claim) -> tuple[str, str]:
            async with gate:
                return await self._attempt(claim)

        answers = await asyncio.gather(*(attempt(claim) for claim in claims))
        outcomes: Counter[str] = Counter()
        now = self._clock.now()
        async with self._sessions() as session:
            accepted = [
                c.id for c, (kind, _) in zip(claims, answers, strict=True) if kind == "sent"
            ]
            if accepted:
                await service.record_accepted_many(session, accepted, now)
            for claim, (kind, reason) in zip(claims, answers, strict=True):
                if kind == "failed":
                    await service.record_failed(session, claim.id, reason=reason, now=now)
                elif kind == "unavailable":
                    kind = await self._unavailable(session, claim, reason, now)
                outcomes[kind] += 1
            await session.commit()
        return outcomes

    async def _attempt(self, claim: service.Claim) -> tuple[str, str]:
        """("sent", ""), ("over_budget", ""), ("failed", reason) or ("unavailable", reason)."""
        if claim.status is SmsStatus.OVER_BUDGET:
            log.warning("SMS %s: over the city's daily budget; not sent", claim.id)
            return "over_budget", ""
        try:
            number = service.open_recipient(self._cipher, claim.id, claim.to_sealed)
        except PhoneKeyUnavailable:
            log.error("SMS %s: its number cannot be opened with GATEWAY_PHONE_KEY", claim.id)
            return "failed", "number_unreadable"
        if is_synthetic_number(number) and not self._settings.sms_allow_synthetic:
            log.warning("SMS %s: a synthetic (seeded) number; not sent", claim.id)
            return "failed", "synthetic_number"
        outgoing = Outgoing(to=number, text=claim.text, dlr_url=self._links.url_for(claim.id))
        try:
            await self._sender.send(outgoing)
        except KannelUnavailable as exc:
            return "unavailable", exc.reason
        except KannelRejected as exc:
            log.warning("SMS %s: Kannel refused it (%s)", claim.id, exc.reason)
            return "failed", exc.reason
        return "sent", ""

    async def _unavailable(
        self, session: AsyncSession, claim: service.Claim, reason: str, now: datetime
    ) -> str:
        if claim.attempts >= self._settings.sms_max_attempts:
            log.warning(
                "SMS %s: giving up after %s attempts (%s)", claim.id, claim.attempts, reason
            )
            await service.record_failed(session, claim.id, reason=reason, now=now)
            return "failed"
        delay = min(_MAX_BACKOFF_S, self._settings.sms_retry_backoff_s * 2 ** (claim.attempts - 1))
        log.info("SMS %s: Kannel unavailable (%s); retry in %.0f s", claim.id, reason, delay)
        await service.record_retry(
            session, claim.id, reason=reason, at=now + timedelta(seconds=delay)
        )
        return "retry"
