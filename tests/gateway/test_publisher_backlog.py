"""A speaker that returns to a backlog gets each command it missed once, on a real broker: no
per-pass structure a batch can outgrow, and every publish recorded once it is handed over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast, Publication
from gateway.broadcasts.publisher import AUDIO_CACHE_MAX
from gateway.deliveries.models import Delivery
from gateway.places import service as places
from gateway.speakers import service as speakers
from gateway.speakers.models import Speaker
from tests.gateway.broker_stack import BareSpeaker, BrokerStack, broker_stack
from tests.media import make_recording
from wire.contract import Category

BACKLOG = 100
EXPIRED = 5
CODE = "d01-v001-s1"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


async def _backlog(stack: BrokerStack, recording: bytes, count: int) -> list[str]:
    """`count` broadcasts to the whole city with the audio of one upload (transcoded once)."""
    created = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert created.status_code == 201, created.text
    ids = [created.json()["id"]]
    runtime = stack.app.state.runtime
    async with stack.app.state.sessions() as session:
        city = await places.get_city(session, stack.settings.city_code)
        first = await session.get(Broadcast, ids[0])
        assert first is not None
        audio = broadcasts.StoredAudio(
            source_sha256=first.source_sha256 or "",
            duration_ms=first.duration_ms,
            sha256=dict(first.audio_sha256),
        )
        target = await places.resolve_targets(
            session, city, all_villages=True, district_ids=(), village_ids=()
        )
        recipients = await speakers.speakers_for(session, city.id, village_ids=None)
        for n in range(count - 1):
            request = broadcasts.BroadcastRequest(
                category=Category.ADMINISTRATIVE,
                title=f"밀린 방송 {n + 2}",
                text=None,
                all_villages=True,
                district_ids=(),
                village_ids=(),
                expires_in_s=None,
                idempotency_key=None,
                created_by="test",
            )
            started = await broadcasts.record_broadcast(
                session, runtime, city, request, target, recipients, audio, scope="gateway"
            )
            ids.append(started.broadcast.id)
        await session.commit()
    stack.app.state.publisher.wake.set()
    return ids


async def _until(read: Callable[[], Awaitable[int]], value: int, *, limit_s: float) -> None:
    """Poll until `read` gives `value` (a bound, so a broken run ends)."""
    async with asyncio.timeout(limit_s):
        while True:
            if await read() == value:
                return
            await asyncio.sleep(0.1)


async def _unfinished_publications(stack: BrokerStack) -> int:
    async with stack.app.state.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Publication).where(Publication.state == "pending")
            )
            or 0
        )


async def _received(stack: BrokerStack, code: str) -> int:
    async with stack.app.state.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .join(Speaker, Speaker.id == Delivery.speaker_id)
                .where(Speaker.code == code, Delivery.state == "received")
            )
            or 0
        )


async def test_a_returning_speaker_gets_each_missed_command_once(
    mqtt_url: str, tmp_path: Path, recording: bytes
) -> None:
    # Long ack timeouts: no retry of the sweeper's mixes in; what is sent is the catch-up.
    async with broker_stack(mqtt_url, tmp_path, ack_timeout_s=600, heartbeat_s=600) as stack:
        ids = await _backlog(stack, recording, BACKLOG + EXPIRED)
        assert len(ids) > AUDIO_CACHE_MAX * 3, "more broadcasts than any cache between passes"
        # Published to the city while every speaker is away, and each recorded once.
        await _until(lambda: _unfinished_publications(stack), 0, limit_s=60)
        assert stack.app.state.publisher.stats.published == len(ids)

        expired = ids[:EXPIRED]
        async with stack.app.state.sessions() as session:
            past = stack.app.state.clock.now() - timedelta(seconds=1)
            await session.execute(
                update(Broadcast).where(Broadcast.id.in_(expired)).values(expires_at=past)
            )
            commands = dict(
                (await session.execute(select(Broadcast.id, Broadcast.command_id))).tuples().all()
            )
            await session.commit()

        identity = await stack.identity(CODE)
        async with BareSpeaker(stack.mqtt_url, identity) as speaker:
            await speaker.born()
            await _until(lambda: _received(stack, CODE), BACKLOG, limit_s=90)
            await _until(lambda: _unfinished_publications(stack), 0, limit_s=30)
            # One more pass of the publisher finds nothing left to send.
            assert await stack.app.state.publisher.publish_due() == 0

        caught_up = {command_id: n for (kind, command_id), n in speaker.commands.items()}
        assert {kind for kind, _ in speaker.commands} == {"speaker"}
        assert caught_up == {commands[b]: 1 for b in ids[EXPIRED:]}, "each command once"
        assert not set(caught_up) & {commands[b] for b in expired}, "nothing already expired"
        assert stack.app.state.publisher.stats.published == len(ids) + BACKLOG


async def test_a_birth_repeated_ten_times_still_brings_each_command_once(
    mqtt_url: str, tmp_path: Path, recording: bytes
) -> None:
    # The test takes each step itself: one message per intake batch, so each birth is its own
    # catch-up, all of them owed before the publisher runs.
    async with broker_stack(
        mqtt_url,
        tmp_path,
        background_workers=False,
        ack_batch_max=1,
        ack_timeout_s=600,
        heartbeat_s=600,
    ) as stack:
        publisher = stack.app.state.publisher
        intake = stack.app.state.intake
        ids = await _backlog(stack, recording, BACKLOG)
        while await publisher.publish_due():
            pass
        assert publisher.stats.published == BACKLOG
        async with stack.app.state.sessions() as session:
            commands = dict(
                (await session.execute(select(Broadcast.id, Broadcast.command_id))).tuples().all()
            )

        identity = await stack.identity(CODE)
        async with BareSpeaker(stack.mqtt_url, identity) as speaker:
            for _ in range(10):
                await speaker.born()
            await _until(lambda: _queued(stack), 10, limit_s=30)
            for _ in range(10):
                await intake.step()
            assert await _unfinished_publications(stack) == 10 * BACKLOG
            while await publisher.publish_due():
                pass
            await _until(lambda: _queued(stack), BACKLOG, limit_s=60)
            while not stack.bus.incoming.empty():
                await intake.step()
            assert await _received(stack, CODE) == BACKLOG

        assert speaker.commands == {("speaker", commands[b]): 1 for b in ids}, "each once"
        assert publisher.stats.published == 2 * BACKLOG
        assert publisher.stats.abandoned == 9 * BACKLOG, "the other copies were not sent"


async def _queued(stack: BrokerStack) -> int:
    return stack.bus.incoming.qsize()
