"""The send use case's writes: a key lost in a race is lost in a savepoint, not with the
request's other work, and the transcode runs with no transaction of the request open."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.auth import Role
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast
from gateway.places import service as places
from gateway.places.models import City
from gateway.speakers import service as speakers
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout
from tests.support.people import make_person
from wire.contract import Category

__all__ = ["recording", "stack"]  # the fixtures, shared


async def test_a_key_lost_in_a_race_keeps_the_requests_other_work(stack: Stack) -> None:
    runtime = stack.app.state.runtime
    async with stack.app.state.sessions() as session:
        city = await session.get(City, stack.app.state.city_id)
        assert city is not None
        target = await places.resolve_targets(
            session, city, all_villages=True, district_ids=(), village_ids=()
        )
        recipients = await speakers.speakers_for(session, city.id, village_ids=None)
        audio = broadcasts.StoredAudio(source_sha256="a" * 64, duration_ms=1000, sha256={})

        def request(title: str) -> broadcasts.BroadcastRequest:
            return broadcasts.BroadcastRequest(
                category=Category.ADMINISTRATIVE,
                title=title,
                text=None,
                all_villages=True,
                district_ids=(),
                village_ids=(),
                expires_in_s=None,
                idempotency_key="raced",
                created_by="someone#1",
            )

        async def record(title: str) -> broadcasts.Started:
            return await broadcasts.record_broadcast(
                session, runtime, city, request(title), target, recipients, audio, scope="user:1"
            )

        first = await record("같은 방송")
        assert not first.replayed
        # The request's own work, written before the insert that collides on its key.
        other = await broadcasts.record_broadcast(
            session,
            runtime,
            city,
            broadcasts.BroadcastRequest(
                category=Category.ADMINISTRATIVE,
                title="다른 일",
                text=None,
                all_villages=True,
                district_ids=(),
                village_ids=(),
                expires_in_s=None,
                idempotency_key=None,
                created_by="someone#1",
            ),
            target,
            recipients,
            audio,
            scope="user:1",
        )
        assert not other.replayed
        # Written straight, as a request that lost the race after its lookup missed would.
        lost = await record("같은 방송")
        assert lost.replayed
        assert lost.broadcast.id == first.broadcast.id
        await session.commit()
    async with stack.app.state.sessions() as session:
        titles = set(await session.scalars(select(Broadcast.title)))
    assert titles == {"같은 방송", "다른 일"}, "the other work of the request survived"


@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_no_connection_is_held_while_the_audio_is_made(
    stack: Stack, recording: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transcode may take minutes: the request holds no pooled connection meanwhile."""
    engine = stack.app.state.sessions.kw["bind"]
    worker = stack.app.state.runtime.worker
    transcode = worker.transcode
    held: list[int] = []

    async def watched(*args: Any, **kwargs: Any) -> Any:
        held.append(engine.pool.checkedout())
        return await transcode(*args, **kwargs)

    monkeypatch.setattr(worker, "transcode", watched)
    districts, _ = await _layout(stack)
    officer = await make_person(
        stack.client, Role.DISTRICT_OFFICER, district_ids=[districts[0]["id"]]
    )
    for category in ("administrative", "disaster"):
        response = await stack.client.post(
            "/api/v1/broadcasts",
            data={"category": category, "district_ids": [districts[0]["id"]]},
            files={"file": ("notice.m4a", recording, "audio/mp4")},
            headers=officer.headers,
        )
        assert response.status_code == 201, response.text
    assert held == [0, 0]
