"""The sweeper: periodic retries, expiry, silent-speaker detection and closing of broadcasts."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gateway import retention
from gateway.bus import Bus
from gateway.clock import Clock
from gateway.deliveries import sweep
from gateway.enrollment import service as enrollment
from gateway.logs import about_broadcast
from gateway.metrics import Metrics
from gateway.residents.crypto import PhoneCipher
from gateway.settings import Settings
from gateway.speakers import presence
from gateway.users import throttle as login_throttle

log = logging.getLogger(__name__)

RETENTION_EVERY = timedelta(hours=1)


class Sweeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        *,
        city_id: int,
        bus: Bus | None = None,
        metrics: Metrics | None = None,
        phone_cipher: PhoneCipher | None = None,
    ) -> None:
        self._sessions = sessions
        self._phone_cipher = phone_cipher
        self._metrics = metrics or Metrics()
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._city_id = city_id
        self.last: sweep.SweepReport | None = None
        self._purged_at: datetime | None = None

    async def run(self, interval: float = 1.0) -> None:
        failing = False
        while True:
            try:
                await self.sweep_once()
                if failing:
                    log.warning("sweeping again")
                failing = False
            except StaleDataError:
                # A delivery changed under this pass (an ack recorded meanwhile): next pass.
                log.debug("sweep met a delivery changed meanwhile; sweeping again")
            except (DBAPIError, OSError) as exc:
                # The database is away: say so once, not every second, and keep trying.
                if not failing:
                    log.warning("sweep failed (%s); retrying until the database is back", exc)
                failing = True
            except Exception:
                log.exception("sweep failed; retrying")
            await asyncio.sleep(interval)

    async def sweep_once(self) -> sweep.SweepReport:
        settings = self._settings
        now = self._clock.now()
        async with self._sessions() as session:
            await presence.mark_silent_offline(
                session, self._city_id, older_than=now - timedelta(seconds=3 * settings.heartbeat_s)
            )
            report = await sweep.sweep(
                session,
                now=now,
                ack_timeout=timedelta(seconds=settings.ack_timeout_s),
                max_attempts=settings.max_send_attempts,
                backoff=timedelta(seconds=settings.retry_backoff_s),
                retries=self._bus is None or self._bus.connected,
                presence_doubt_since=None if self._bus is None else self._bus.presence_doubt_since,
            )
            await session.commit()
        if report.timed_out:
            # Ended with no_ack; each of those speakers was sent a cancel for it.
            log.info(
                "gave up on %d deliveries (no ack); sent %d cancels",
                report.timed_out,
                report.cancels,
            )
        for finished in report.completed:
            self._completed(finished)
        self.last = report
        if self._purged_at is None or now - self._purged_at >= RETENTION_EVERY:
            await self.purge_once()
        return report

    def _completed(self, finished: sweep.Finished) -> None:
        ending = self._metrics.observe_completed(
            created_at=finished.created_at,
            cancelled=finished.cancelled,
            outcomes=finished.outcomes,
            last_played_at=finished.last_played_at,
        )
        counts = ", ".join(f"{state} {n}" for state, n in sorted(finished.outcomes.items()))
        with about_broadcast(finished.broadcast_id):
            log.info(
                "broadcast %s completed (%s): %s",
                finished.broadcast_id,
                ending,
                counts or "no speakers",
            )

    async def purge_once(self) -> retention.Purge:
        """Delete recordings past their retention period, failed-login counts forgotten, spent
        enrollment codes, and residents' personal data past their consent (hourly from the
        sweep)."""
        now = self._clock.now()
        async with self._sessions() as session:
            purge = await retention.purge_recordings(
                session, self._settings, city_id=self._city_id, now=now
            )
            await login_throttle.purge(session, city_id=self._city_id, now=now)
            await enrollment.purge_codes(session, city_id=self._city_id, now=now)
            unused = await retention.purge_unused_audio(session, self._settings, now=now)
            erased = await retention.purge_residents(
                session, self._phone_cipher, city_id=self._city_id, now=now
            )
            await session.commit()
        purge = replace(purge, unused=unused, residents=erased)
        self._purged_at = now
        return purge
