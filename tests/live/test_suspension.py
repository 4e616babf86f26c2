"""Suspending a person ends their live sessions on the speakers at once, and a ticket they got
before cannot open one after."""

from __future__ import annotations

import asyncio

from gateway.auth import Principal, Role
from gateway.live import service
from gateway.live.fanout import FakeLiveBus
from gateway.live.hub import LiveHub
from gateway.places.models import City
from tests.flow.conftest import Stack, stack  # noqa: F401 - the fixture
from tests.flow.test_roles import _person
from tests.live.test_hub import FakeSocket, _district, _open_ids, _pcm, _row, _until
from tests.support.people import Person
from wire import contract
from wire.contract import Category, LiveKind


async def _officer_ticket(gateway: Stack) -> tuple[Person, str]:
    district_id, _ = await _district(gateway)
    officer = await _person(gateway, Role.DISTRICT_OFFICER, district_ids=[district_id])
    response = await gateway.client.post(
        "/api/v1/live/tickets",
        json={"category": "village_notice", "district_ids": [district_id]},
        headers=officer.headers,
    )
    assert response.status_code == 201, response.text
    return officer, str(response.json()["ticket"])


async def _suspend(gateway: Stack, person: Person) -> None:
    response = await gateway.client.post(
        f"/api/v1/users/{person.user_id}/suspend", json={"reason": "부적절한 방송"}
    )
    assert response.status_code == 200, response.text


async def test_suspending_a_person_ends_their_live_session_on_the_speakers(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    bus = hub._bus
    assert isinstance(bus, FakeLiveBus)
    officer, token = await _officer_ticket(stack)
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, token))  # type: ignore[arg-type]
    await _until(lambda: "ready" in socket.kinds(), stack)
    socket.put(_pcm(0.2))
    await _until(lambda: _open_ids(bus, LiveKind.AUDIO) != [], stack)
    broadcast_id = socket.sent[0]["broadcast_id"]

    await _suspend(stack, officer)
    # In the record at once, whichever replica streams it.
    marked = await _row(stack, broadcast_id)
    assert marked.state in ("closing", "ended")
    assert marked.end_reason == "owner_suspended"

    await asyncio.wait_for(serving, 30)
    ended = socket.sent[-1]
    assert (ended["type"], ended["reason"]) == ("ended", "owner_suspended")
    assert "계정이 정지" in ended["detail"]
    assert socket.closed == 1008
    end = _open_ids(bus, LiveKind.END)[-1]
    assert end.flags == contract.EndReason.STOPPED, "the speakers get the end command"
    row = await _row(stack, broadcast_id)
    assert (row.state, row.end_reason, row.key) == ("ended", "owner_suspended", None)
    assert hub.sessions_on_air == 0


async def test_a_ticket_issued_before_the_suspension_opens_nothing(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    officer, token = await _officer_ticket(stack)
    await _suspend(stack, officer)
    socket = FakeSocket()
    await asyncio.wait_for(hub.serve(socket, token), 30)  # type: ignore[arg-type]
    assert [m["type"] for m in socket.sent] == ["error"]
    assert socket.sent[-1]["error"] == "account_suspended"
    assert socket.closed == 1008


async def test_a_marked_session_of_a_dead_replica_keeps_its_reason(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    district_id, _ = await _district(stack)
    officer = await _person(stack, Role.DISTRICT_OFFICER, district_ids=[district_id])
    principal = Principal(
        name=officer.username,
        role=Role.DISTRICT_OFFICER,
        user_id=officer.user_id,
        district_ids=frozenset({district_id}),
    )
    request = service.LiveRequest(
        category=Category.VILLAGE_NOTICE,
        title=None,
        all_villages=False,
        district_ids=(district_id,),
        village_ids=(),
        principal=principal,
    )
    city_id = stack.app.state.city_id
    # Opened in the record as another replica would, which then dies without ending it.
    async with stack.app.state.sessions() as session:
        city = await session.get(City, city_id)
        assert city is not None
        opened = await service.open_session(
            session,
            stack.app.state.runtime,
            city,
            request,
            hub.settings,
            chime=await hub._chime("village_notice"),
            input_format="pcm",
        )
        await session.commit()
    await _suspend(stack, officer)
    stack.clock.advance(60)  # nobody renews it: any replica's sweep ends it
    async with stack.app.state.sessions() as session:
        assert await service.close_stale(session, city_id, stack.clock.now(), keep=set()) == 1
        await session.commit()
    row = await _row(stack, opened.broadcast_id)
    assert (row.state, row.end_reason, row.key) == ("ended", "owner_suspended", None)
