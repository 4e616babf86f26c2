"""A publish whose record cannot be written at once is written later, never published again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from gateway.broadcasts.models import Publication
from gateway.broadcasts.publisher import Publisher
from tests.flow.conftest import Stack
from tests.media import make_recording


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


async def test_a_pass_that_cannot_record_never_publishes_the_same_row_twice(
    stack: Stack, recording: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert created.status_code == 201, created.text
    publisher: Publisher = stack.app.state.publisher
    record = publisher._record
    outage = {"on": True}

    async def record_during_outage(*args: Any, **kwargs: Any) -> None:
        if outage["on"]:
            # The database stays away past the lease.
            stack.clock.advance(stack.settings.publish_lease_s)
            raise OperationalError("UPDATE publications", {}, OSError("database away"))
        await record(*args, **kwargs)

    monkeypatch.setattr(publisher, "_record", record_during_outage)
    with pytest.raises(OperationalError):
        await publisher.publish_due()
    assert len(stack.bus.published) == 1

    stack.clock.advance(stack.settings.publish_lease_s + 1)
    with pytest.raises(OperationalError):
        await publisher.publish_due()  # still away: nothing is claimed, nothing sent again
    assert len(stack.bus.published) == 1

    outage["on"] = False
    assert await stack.publish_pending() == 0
    assert len(stack.bus.published) == 1, "the lease lapsed, and still it went out once"
    async with stack.app.state.sessions() as session:
        rows = list(await session.scalars(select(Publication)))
    assert [(r.state, r.attempts, r.lease_owner) for r in rows] == [("published", 1, None)]
    detail = (await stack.client.get(f"/api/v1/broadcasts/{created.json()['id']}")).json()
    assert (
        detail["speakers"].get("sent", 0) + detail["speakers"].get("offline", 0)
        == (detail["speakers"]["total"])
    )
