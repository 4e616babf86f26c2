"""A speaker that returns with the session the broker kept for it, on a real broker: the
commands published while it was away come from the broker, once each; the gateway sends again
only what it has still not acknowledged after the catch-up grace. A command it received waits
behind the ones it holds, and is not asked about before its turn can come."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.broadcasts.models import Broadcast
from gateway.deliveries.models import Delivery
from gateway.deliveries.service import ACK_GRACE
from gateway.speakers.models import Speaker
from tests.gateway.broker_stack import BareSpeaker, BrokerStack, broker_stack
from tests.gateway.test_publisher_backlog import (
    _backlog,
    _received,
    _unfinished_publications,
    _until,
)
from tests.media import make_recording

BACKLOG = 20
SILENT = 3  # commands the speaker gets from the broker and does not answer
CODE = "d01-v001-s1"
GRACE_S = 1.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


async def _online(stack: BrokerStack, code: str) -> bool:
    async with stack.app.state.sessions() as session:
        return bool(await session.scalar(select(Speaker.online).where(Speaker.code == code)))


async def test_a_kept_session_brings_each_command_once(
    mqtt_url: str, tmp_path: Path, recording: bytes
) -> None:
    async with broker_stack(
        mqtt_url, tmp_path, ack_timeout_s=600, heartbeat_s=600, catchup_grace_s=GRACE_S
    ) as stack:
        identity = await stack.identity(CODE)
        # Its first connection: the broker opens the session it keeps while the speaker is away.
        async with BareSpeaker(stack.mqtt_url, identity, persistent=True) as first:
            await first.born(session_present=False)
            await first.gone()
        async with asyncio.timeout(30):
            while await _online(stack, CODE):  # noqa: ASYNC110 - polling the record
                await asyncio.sleep(0.1)

        ids = await _backlog(stack, recording, BACKLOG)
        await _until(lambda: _unfinished_publications(stack), 0, limit_s=60)
        async with stack.app.state.sessions() as session:
            shortest = await session.scalar(
                select(func.min(Broadcast.duration_ms)).where(Broadcast.id.in_(ids))
            )
        assert shortest
        silent = set(ids[:SILENT])

        speaker = BareSpeaker(stack.mqtt_url, identity, persistent=True, silent_for=silent)
        async with speaker:
            # The broker hands over what it kept; the birth says it did.
            await speaker.born(session_present=True)
            await _until(lambda: _received(stack, CODE), BACKLOG - SILENT, limit_s=60)
            # Past the grace, what it has not acknowledged is sent again on its own topic.
            async with asyncio.timeout(60):
                while sum(1 for k, _ in speaker.commands if k == "speaker") < SILENT:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            # A few sweeper passes more: nothing else is sent again.
            await asyncio.sleep(GRACE_S + 2)

        by_command: dict[str, int] = {}
        kinds: dict[str, set[str]] = {}
        for (kind, command_id), n in speaker.commands.items():
            by_command[command_id] = by_command.get(command_id, 0) + n
            kinds.setdefault(command_id, set()).add(kind)
        assert len(by_command) == BACKLOG
        answered = [c for c in by_command if kinds[c] == {"all"}]
        assert len(answered) == BACKLOG - SILENT, kinds
        assert all(by_command[c] == 1 for c in answered), "each acknowledged command once"
        resent = [c for c in by_command if "speaker" in kinds[c]]
        assert len(resent) == SILENT, "only what it never acknowledged is sent again"

        # Received in one go, each is due after those it holds ahead of it have played.
        async with stack.app.state.sessions() as session:
            rows = (
                await session.execute(
                    select(Delivery.received_at, Delivery.deadline_at)
                    .join(Speaker, Speaker.id == Delivery.speaker_id)
                    .where(Speaker.code == CODE, Delivery.state == "received")
                    .order_by(Delivery.received_at, Delivery.id)
                )
            ).tuples()
            deadlines = [(r, d) for r, d in rows if r is not None and d is not None]
        assert len(deadlines) == BACKLOG - SILENT
        received_at, deadline = max(deadlines, key=lambda pair: pair[1])
        duration = timedelta(milliseconds=shortest)
        assert deadline - received_at >= (BACKLOG - SILENT) * duration + ACK_GRACE
