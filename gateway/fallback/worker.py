"""The fallback worker: plans one job per village of each new broadcast, and decides each job
when it is due, claimed in the database so exactly one replica tells a village's residents.

Planning (a broadcast seen for the first time): every village it reaches gets a job, due at the
start when the rule sends at once (``all_at_once``) or the village had no speaker online
(``offline``, ``no_speakers``), otherwise at the start plus the rule's time (``after_rule``).
Test and exercise broadcasts, resends and categories whose rule is off get jobs already
decided (``not_needed``), so nothing of theirs reaches a real phone.

A village whose speakers can no longer change (every delivery played, failed, expired or
cancelled) is due at once rather than at the rule's time: waiting would change nothing.

Deciding (due): a compare-and-set on the job's ``version`` in the same transaction as the
messages it queues, so a replica that dies mid-way leaves the job waiting and nothing queued;
a village whose speakers all played is ``not_needed``; otherwise each channel of the rule's
sender tells the village's consenting residents (``notified``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import reached_villages
from gateway.clock import Clock
from gateway.deliveries import service as deliveries
from gateway.fallback import rules
from gateway.fallback.channels import SENDERS, Fanout, enabled_channels
from gateway.fallback.models import FallbackJob
from gateway.logs import about_broadcast
from gateway.passes import run_passes
from gateway.places.models import Village
from gateway.residents.crypto import PhoneCipher
from gateway.settings import Settings
from wire.contract import Category

log = logging.getLogger(__name__)

_CANDIDATES: Final = 20
# Broadcasts planned per pass, newest first (the rest on the next).
_PLAN_BATCH: Final = 50
# A broadcast first seen older than this (the workers were down, or the gateway was just
# upgraded) is not told by phone: an SMS that late would mislead more than help.
PLAN_HORIZON: Final = timedelta(hours=1)


class FallbackWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        *,
        city_id: int,
        cipher: PhoneCipher,
        queued: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._city_id = city_id
        self._cipher = cipher
        # Called after a commit that queued messages (wakes the SMS and push workers).
        self._queued = queued
        self.wake = asyncio.Event()

    async def run(self) -> None:
        await run_passes(self.run_once, self.wake, self._settings.fallback_poll_s, "fallback")

    async def run_once(self) -> Counter[str]:
        """Plan new broadcasts, then decide every job due now; outcomes counted."""
        outcomes: Counter[str] = Counter()
        now = self._clock.now()
        try:
            async with self._sessions() as session:
                outcomes["planned"] = await self._plan(session, now)
                outcomes["settled"] = await self._settle_early(session, now)
                await session.commit()
        except IntegrityError:
            # Another replica planned the same broadcast at the same moment: its jobs stand.
            log.debug("fallback: a broadcast was planned by another replica meanwhile")
        passed: set[int] = set()
        while (outcome := await self._decide_one(now, passed)) is not None:
            outcomes[outcome] += 1
        return +outcomes

    async def _plan(self, session: AsyncSession, now: datetime) -> int:
        planned = select(FallbackJob.id).where(FallbackJob.broadcast_id == Broadcast.id)
        fresh = list(
            await session.scalars(
                select(Broadcast)
                .where(
                    Broadcast.city_id == self._city_id,
                    Broadcast.cancelled_at.is_(None),
                    Broadcast.expires_at > now,
                    Broadcast.created_at >= now - PLAN_HORIZON,
                    ~exists(planned),
                )
                .order_by(Broadcast.created_at.desc())
                .limit(_PLAN_BATCH)
            )
        )
        if not fresh:
            return 0
        city_rules = await rules.rules_of(session, self._settings, self._city_id)
        for broadcast in fresh:
            villages = reached_villages(broadcast)
            if not villages:
                continue
            rule = city_rules[Category(broadcast.category)]
            _, tallies = await deliveries.tally(session, broadcast.id)
            start = broadcast.created_at
            for village_id in villages:
                tally = tallies.get(village_id)
                job = FallbackJob(
                    city_id=self._city_id,
                    broadcast_id=broadcast.id,
                    village_id=village_id,
                    channels=list(rule.channels),
                    version=0,
                )
                if not rule.enabled:
                    job.state, job.reason, job.due_at, job.decided_at = (
                        "not_needed",
                        "rule_off",
                        start,
                        now,
                    )
                elif broadcast.mode != "live" and not rule.drills:
                    job.state, job.reason, job.due_at, job.decided_at = (
                        "not_needed",
                        "drill",
                        start,
                        now,
                    )
                elif "resend_of" in broadcast.target:
                    # The original broadcast's jobs tell the village; a resend adds nothing.
                    job.state, job.reason, job.due_at, job.decided_at = (
                        "not_needed",
                        "resend",
                        start,
                        now,
                    )
                else:
                    job.state = "waiting"
                    if rule.all_at_once:
                        job.reason, job.due_at = "all_at_once", start
                    elif tally is None:
                        job.reason, job.due_at = "no_speakers", start
                    elif tally.open_online == 0 and tally.played == 0:
                        job.reason, job.due_at = "offline", start
                    else:
                        job.reason = "after_rule"
                        job.due_at = start + timedelta(seconds=rule.after_s)
                session.add(job)
        await session.flush()
        return len(fresh)

    async def _settle_early(self, session: AsyncSession, now: datetime) -> int:
        """Make due now the waiting jobs of villages whose deliveries are all final."""
        waiting = (
            await session.execute(
                select(FallbackJob.id, FallbackJob.broadcast_id, FallbackJob.village_id).where(
                    FallbackJob.city_id == self._city_id,
                    FallbackJob.state == "waiting",
                    FallbackJob.due_at > now,
                )
            )
        ).all()
        by_broadcast: dict[str, list[tuple[int, int]]] = {}
        for job_id, broadcast_id, village_id in waiting:
            by_broadcast.setdefault(broadcast_id, []).append((job_id, village_id))
        settled: list[int] = []
        for broadcast_id, jobs in by_broadcast.items():
            _, tallies = await deliveries.tally(session, broadcast_id)
            for job_id, village_id in jobs:
                tally = tallies.get(village_id)
                if tally is not None and tally.open_online + tally.open_offline == 0:
                    settled.append(job_id)
        if settled:
            await session.execute(
                update(FallbackJob)
                .where(FallbackJob.id.in_(settled), FallbackJob.state == "waiting")
                .values(due_at=now)
                .execution_options(synchronize_session=False)
            )
        return len(settled)

    async def _decide_one(self, now: datetime, passed: set[int]) -> str | None:
        async with self._sessions() as session:
            query = (
                select(FallbackJob.id, FallbackJob.version)
                .where(
                    FallbackJob.city_id == self._city_id,
                    FallbackJob.state == "waiting",
                    FallbackJob.due_at <= now,
                )
                .order_by(FallbackJob.due_at, FallbackJob.id)
                .limit(_CANDIDATES)
            )
            if passed:
                query = query.where(FallbackJob.id.not_in(list(passed)))
            for job_id, version in (await session.execute(query)).all():
                passed.add(job_id)
                won = await session.execute(
                    update(FallbackJob)
                    .where(FallbackJob.id == job_id, FallbackJob.version == version)
                    .values(version=FallbackJob.version + 1)
                    .execution_options(synchronize_session=False)
                )
                if getattr(won, "rowcount", 0) != 1:
                    continue  # another replica decides it
                job = await session.get(FallbackJob, job_id, populate_existing=True)
                assert job is not None
                outcome, queued = await self._decide(session, job, now)
                await session.commit()
                if queued and self._queued is not None:
                    self._queued()
                return outcome
        return None

    async def _decide(
        self, session: AsyncSession, job: FallbackJob, now: datetime
    ) -> tuple[str, int]:
        broadcast = await session.get(Broadcast, job.broadcast_id)
        job.decided_at = now
        if broadcast is None or broadcast.cancelled_at is not None:
            job.state, job.reason = "not_needed", "cancelled"
            return job.state, 0
        if job.reason != "all_at_once":
            _, tallies = await deliveries.tally(session, broadcast.id)
            tally = tallies.get(job.village_id)
            # Indoor receivers held by their household's choice (quiet hours) need no phone.
            if tally is not None and tally.total and tally.played and tally.settled:
                job.state, job.reason = "not_needed", "played"
                return job.state, 0
            if job.reason == "after_rule":
                job.reason = "not_played"
        village = await session.get(Village, job.village_id)
        queued = 0
        enabled = enabled_channels(self._settings)
        for channel in job.channels:
            sender = SENDERS.get(channel)
            if sender is None or channel not in enabled:
                log.warning("fallback channel %s is not available here; skipped", channel)
                continue
            queued += await sender(
                Fanout(
                    session=session,
                    settings=self._settings,
                    cipher=self._cipher,
                    broadcast=broadcast,
                    village_id=job.village_id,
                    village_name=village.name if village is not None else "",
                    now=now,
                )
            )
        job.state = "notified"
        with about_broadcast(broadcast.id):
            log.info(
                "broadcast %s: village %s told by phone (%s, %s): %d messages",
                broadcast.id,
                job.village_id,
                job.reason,
                "+".join(job.channels),
                queued,
            )
        return job.state, queued
