"""The schedule worker: claims due occurrences in the database and turns each into a broadcast.

Every replica may run one. Each occurrence is claimed, settled and committed in one short
transaction of its own, so two replicas never fire the same occurrence, and a replica that
dies mid-way leaves the schedule due for another.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gateway.deps import Runtime
from gateway.places import service as places
from gateway.schedules import firing, pause

log = logging.getLogger(__name__)


class ScheduleWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        runtime: Runtime,
        *,
        city_code: str,
        on_fired: Callable[[], None] | None = None,
        batch: int = 100,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._city_code = city_code
        self._on_fired = on_fired
        self._batch = batch
        self._postgres = not runtime.settings.is_sqlite
        self._city_id: int | None = None
        self.totals: Counter[str] = Counter()

    async def run(self) -> None:
        while True:
            try:
                await self.fire_due()
            except Exception:
                log.exception("schedule pass failed; retrying")
            await asyncio.sleep(self._runtime.settings.schedule_poll_s)

    async def fire_due(self) -> Counter[str]:
        """Settle every occurrence due now (up to a batch); outcomes counted by kind."""
        outcomes: Counter[str] = Counter()
        passed: set[str] = set()
        for _ in range(self._batch):
            outcome = await self._settle_one(passed)
            if outcome is None:
                break
            outcomes[outcome] += 1
        self.totals.update(outcomes)
        if outcomes["fired"] and self._on_fired is not None:
            self._on_fired()
        return outcomes

    async def _settle_one(self, passed: set[str]) -> str | None:
        now = self._runtime.clock.now()
        async with self._sessions() as session:
            if self._city_id is None:
                self._city_id = (await places.get_city(session, self._city_code)).id
            schedule = await firing.claim_due(
                session, self._city_id, now, postgres=self._postgres, passed=passed
            )
            if schedule is None:
                await session.rollback()
                return None
            schedule_id = schedule.id
            outcome: str
            try:
                # A suspended (or removed) creator's schedule sends nothing, whatever its state.
                skipped = await pause.skip_if_owner_inactive(session, schedule, now)
                if skipped is not None:
                    outcome = skipped
                else:
                    city = await places.get_city(session, self._city_code)
                    outcome = await firing.handle_due(session, self._runtime, city, schedule, now)
                if outcome == "raced":
                    await session.rollback()
                else:
                    await session.commit()
            except (StaleDataError, IntegrityError):
                # Another replica settled this occurrence in the meantime.
                await session.rollback()
                outcome = "raced"
            except Exception:
                await session.rollback()
                log.exception("schedule %s: occurrence not settled; retrying later", schedule_id)
                outcome = "error"
            if outcome in ("raced", "error"):
                passed.add(schedule_id)
            else:
                log.info("schedule %s: occurrence %s", schedule_id, outcome)
            return outcome
