"""The publisher is woken by the commit that wrote publications, whatever committed them (a
request, a schedule firing, a service called from a background loop), and by nothing else: not
by a transaction rolled back, not by a request that wrote none."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Publication
from gateway.broadcasts.publisher import Claimed
from gateway.broadcasts.service import BroadcastRequest, Started, StoredAudio, record_broadcast
from gateway.db import AfterCommit, create_sessions
from gateway.deliveries import returning
from gateway.places import service as places
from gateway.speakers import service as speakers
from tests.flow.conftest import Stack
from wire.contract import Category


async def _record(stack: Stack, session: AsyncSession) -> Started:
    """A broadcast to every village, written by the service the way a background path does."""
    city = await places.get_city(session, stack.settings.city_code)
    target = await places.resolve_targets(
        session, city, all_villages=True, district_ids=(), village_ids=()
    )
    recipients = await speakers.speakers_for(session, city.id, village_ids=None)
    request = BroadcastRequest(
        category=Category.ADMINISTRATIVE,
        title="마을 회관 청소",
        text=None,
        all_villages=True,
        district_ids=(),
        village_ids=(),
        expires_in_s=600,
        idempotency_key=None,
        created_by="test",
    )
    audio = StoredAudio(source_sha256="a" * 64, duration_ms=2000, sha256={"opus": "b" * 64})
    return await record_broadcast(
        session, stack.app.state.runtime, city, request, target, recipients, audio, scope="gateway"
    )


async def test_a_broadcast_committed_outside_a_request_wakes_the_publisher(stack: Stack) -> None:
    wake = stack.app.state.publisher.wake
    wake.clear()
    async with stack.app.state.sessions() as session:
        started = await _record(stack, session)  # publications inserted by one statement
        await session.flush()
        assert not wake.is_set(), "written, not committed: nothing to publish yet"
        await session.commit()
        assert wake.is_set()

    # Rows added one by one (a speaker's catch-up, as the ack intake writes it) wake it too.
    wake.clear()
    async with stack.app.state.sessions() as session:
        fleet = await speakers.speakers_for(session, stack.app.state.city_id, village_ids=None)
        added = await returning.catch_up(
            session, [s.id for s in fleet], stack.clock.now(), states=("queued",)
        )
        assert added > 0
        await session.commit()
    assert wake.is_set()
    assert started.broadcast.id


async def test_a_transaction_rolled_back_or_without_publications_does_not_wake_it(
    stack: Stack,
) -> None:
    wake = stack.app.state.publisher.wake
    wake.clear()
    async with stack.app.state.sessions() as session:
        await _record(stack, session)
        await session.rollback()
        await session.commit()  # the next transaction wrote nothing
    async with stack.app.state.sessions() as session:
        await _record(stack, session)
        # Closed without a commit.
    async with stack.app.state.sessions() as session:
        await places.get_city(session, stack.settings.city_code)
        await session.commit()
    assert not wake.is_set()
    async with stack.app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Publication)) == 0


async def test_a_schedule_firing_wakes_the_publisher_and_a_request_only_when_it_wrote_some(
    stack: Stack,
) -> None:
    wake = stack.app.state.publisher.wake
    wake.clear()
    made = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "administrative",
            "all_villages": "true",
            "send_at": "2026-01-01T10:00",
            "text": "오늘 오전 열 시에 마을 회관에서 모입니다.",
        },
    )
    assert made.status_code == 201, made.text
    assert not wake.is_set(), "a schedule is not a publication"

    at = datetime(2026, 1, 1, 10, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    stack.clock.advance((at - stack.clock.now()).total_seconds())
    assert (await stack.app.state.scheduler.fire_due())["fired"] == 1
    assert wake.is_set()

    wake.clear()
    sent = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", "text": "지금 모입니다."},
    )
    assert sent.status_code == 201, sent.text
    assert wake.is_set()


async def test_each_session_factory_wakes_only_its_own_publisher(stack: Stack) -> None:
    """Several apps in one process (replicas in a test): a commit wakes its own app's."""
    woken: list[str] = []
    other = AfterCommit()
    other.on_insert(Publication, lambda: woken.append("other"))
    sessions = create_sessions(stack.app.state.engine, after_commit=other)
    wake = stack.app.state.publisher.wake
    wake.clear()
    async with sessions() as session:
        await _record(stack, session)
        await session.commit()
    assert woken == ["other"]
    assert not wake.is_set()


async def test_a_commit_during_a_pass_that_found_nothing_is_not_missed(stack: Stack) -> None:
    """Publications committed while a pass was already past its claim are published by the
    next pass at once, not after a poll interval."""
    publisher = stack.app.state.publisher
    publisher._settings = stack.settings.model_copy(update={"poll_interval_s": 3600.0})
    passes = 0
    second = asyncio.Event()
    claim = publisher._claim

    async def claiming(now: datetime) -> list[Claimed]:
        nonlocal passes
        passes += 1
        found = await claim(now)
        if passes == 1:
            # Committed just after this pass looked: its wake must survive the pass.
            async with stack.app.state.sessions() as session:
                await _record(stack, session)
                await session.commit()
        else:
            second.set()
        return found

    publisher._claim = claiming
    running = asyncio.create_task(publisher.run())
    try:
        async with asyncio.timeout(30):  # far below the poll interval
            await second.wait()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_publisher_woken_as_it_is_cancelled_still_stops(stack: Stack) -> None:
    """A commit that wakes the publisher just as the app stops must not keep it running: on
    Python 3.11, asyncio.wait_for swallows a cancellation that meets a completed wait."""
    publisher = stack.app.state.publisher
    running = asyncio.create_task(publisher.run())
    for _ in range(200):  # until its first pass has found nothing and it waits for a wake
        await asyncio.sleep(0.01)
        if not publisher.wake.is_set():
            break
    await asyncio.sleep(0.2)
    publisher.wake.set()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(30):
            await running
