"""The push worker: claims due messages from the outbox and hands each to its push service.

Every replica may run one. A claim is committed before the push service is called, and its
answer is recorded in a transaction of its own, so no session is held across the HTTP request
and two workers never send one message. A few messages are in flight at once
(``push_concurrency``), each claimed on its own.

The push service's answer: 201 sent; 404 or 410 the subscription is gone (dropped, the message
expired); 429, 5xx or no answer: back to the queue after the service's Retry-After or an
exponential back-off, failed after ``push_max_attempts``, expired if its time runs out first;
any other 4xx: failed at once. Log lines name the message, never the endpoint.
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
from gateway.push import service
from gateway.push.sender import (
    Outgoing,
    PushGone,
    PushRejected,
    PushUnavailable,
    Sender,
)
from gateway.push.states import PushEvent
from gateway.settings import Settings

log = logging.getLogger(__name__)

# Longer than any push request may take (its timeout is 10 s): past it, another worker may
# claim the message again.
LEASE: Final = timedelta(seconds=60)
_MAX_BACKOFF_S: Final = 3600.0


class PushWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        sender: Sender,
        *,
        city_id: int,
        worker_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._sender = sender
        self._city_id = city_id
        self.worker_id = worker_id or f"{settings.replica_id}-{secrets.token_hex(3)}"
        self.wake = asyncio.Event()
        self.totals: Counter[str] = Counter()

    async def run(self) -> None:
        await run_passes(self.send_due, self.wake, self._settings.push_poll_s, "push")

    async def send_due(self, limit: int = 1000) -> Counter[str]:
        """Send every message due now (up to `limit`); outcomes counted by kind."""
        outcomes: Counter[str] = Counter()
        passed: set[str] = set()

        async def lane() -> None:
            while sum(outcomes.values()) < limit:
                outcome = await self._send_one(passed)
                if outcome is None:
                    return
                outcomes[outcome] += 1

        await asyncio.gather(*(lane() for _ in range(self._settings.push_concurrency)))
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
                passed=passed,
            )
            await session.commit()
        if claim is None:
            return None
        passed.add(claim.id)
        # The push service keeps it no longer than the message has left to live.
        ttl_s = max(0, int((claim.expires_at - now).total_seconds()))
        outgoing = Outgoing(
            endpoint=claim.endpoint,
            p256dh=claim.p256dh,
            auth=claim.auth,
            payload=claim.payload,
            ttl_s=min(ttl_s, self._settings.push_ttl_s),
            urgency=claim.urgency,
            topic=claim.id,
        )
        try:
            await self._sender.send(outgoing)
        except PushGone as exc:
            log.info("push %s: the subscription is gone (%s); dropped", claim.id, exc.reason)
            async with self._sessions() as session:
                await service.drop_subscription(
                    session,
                    claim.id,
                    claim.subscription_id,
                    reason=exc.reason,
                    now=self._clock.now(),
                )
                await session.commit()
            return "expired"
        except PushUnavailable as exc:
            return await self._unavailable(claim, exc)
        except PushRejected as exc:
            log.warning("push %s: the push service refused it (%s)", claim.id, exc.reason)
            return await self._end(claim.id, exc.reason, PushEvent.GIVE_UP)
        async with self._sessions() as session:
            await service.record_sent(session, claim.id, self._clock.now())
            await session.commit()
        return "sent"

    async def _end(self, message_id: str, reason: str, event: PushEvent) -> str:
        async with self._sessions() as session:
            status = await service.record_failed(
                session, message_id, reason=reason, now=self._clock.now(), event=event
            )
            await session.commit()
        return str(status)

    async def _unavailable(self, claim: service.Claim, exc: PushUnavailable) -> str:
        now = self._clock.now()
        if claim.attempts >= self._settings.push_max_attempts:
            log.warning(
                "push %s: giving up after %s attempts (%s)", claim.id, claim.attempts, exc.reason
            )
            return await self._end(claim.id, exc.reason, PushEvent.GIVE_UP)
        backoff = self._settings.push_retry_backoff_s * 2 ** (claim.attempts - 1)
        delay = min(_MAX_BACKOFF_S, max(backoff, exc.retry_after_s or 0.0))
        at = now + timedelta(seconds=delay)
        if at >= claim.expires_at:
            log.info("push %s: %s, and its time runs out before a retry", claim.id, exc.reason)
            return await self._end(claim.id, exc.reason, PushEvent.EXPIRE)
        log.info(
            "push %s: push service unavailable (%s); retry in %.0f s", claim.id, exc.reason, delay
        )
        async with self._sessions() as session:
            await service.record_retry(session, claim.id, reason=exc.reason, at=at)
            await session.commit()
        return "retry"
