"""Who may talk live where: the same rights, areas and two-person rule as recorded broadcasts."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.auth import Role
from gateway.live.hub import LiveHub
from tests.flow.conftest import Stack, stack  # noqa: F401 - the fixture
from tests.flow.test_roles import _layout, _person
from tests.live.test_hub import FakeSocket, _until


async def _ask(stack: Stack, headers: dict[str, str], **body: Any) -> tuple[int, str | None]:  # noqa: F811
    response = await stack.client.post("/api/v1/live/tickets", json=body, headers=headers)
    return response.status_code, response.json().get("error")


async def test_tickets_follow_each_roles_category_and_area(stack: Stack) -> None:  # noqa: F811
    districts, villages = await _layout(stack)
    first, other = districts[0]["id"], districts[1]["id"]
    own = [v["id"] for v in villages if v["district_id"] == first][:1]
    foreign = [v["id"] for v in villages if v["district_id"] == other][:1]
    police = await _person(stack, Role.POLICE_OFFICER, district_ids=[first])
    head = await _person(stack, Role.VILLAGE_HEAD, village_ids=own)
    auditor = await _person(stack, Role.AUDITOR)

    # A police officer: crime prevention only, in the districts assigned.
    assert (await _ask(stack, police.headers, category="village_notice", district_ids=[first]))[
        0
    ] == 403
    assert await _ask(stack, police.headers, category="crime_prevention", district_ids=[first]) == (
        201,
        None,
    )
    assert (await _ask(stack, police.headers, category="crime_prevention", district_ids=[other]))[
        0
    ] == 403
    # A village head: their own villages only, never the whole city.
    assert await _ask(stack, head.headers, category="village_notice", village_ids=own) == (
        201,
        None,
    )
    assert (await _ask(stack, head.headers, category="village_notice", village_ids=foreign))[
        0
    ] == 403
    assert (await _ask(stack, head.headers, category="village_notice", all=True))[0] == 403
    # The auditor only reads.
    assert (await _ask(stack, auditor.headers, category="village_notice", village_ids=own))[
        0
    ] == 403


async def test_a_disaster_alert_to_several_districts_needs_two_people(
    stack: Stack,  # noqa: F811
) -> None:
    districts, _ = await _layout(stack)
    safety = await _person(stack, Role.SAFETY_OFFICER)
    both = [districts[0]["id"], districts[1]["id"]]
    assert await _ask(stack, safety.headers, category="disaster", district_ids=both) == (
        403,
        "live_needs_approval",
    )
    assert await _ask(stack, safety.headers, category="disaster", all=True) == (
        403,
        "live_needs_approval",
    )
    assert await _ask(stack, safety.headers, category="disaster", district_ids=both[:1]) == (
        201,
        None,
    )


async def test_only_the_person_who_started_a_session_may_resume_it(
    stack: Stack,  # noqa: F811
) -> None:
    hub: LiveHub = stack.app.state.live
    districts, villages = await _layout(stack)
    first = districts[0]["id"]
    own = [v["id"] for v in villages if v["district_id"] == first][:1]
    head = await _person(stack, Role.VILLAGE_HEAD, village_ids=own)
    other = await _person(stack, Role.DISTRICT_OFFICER, district_ids=[first])
    response = await stack.client.post(
        "/api/v1/live/tickets",
        json={"category": "village_notice", "village_ids": own},
        headers=head.headers,
    )
    socket = FakeSocket()
    serving = asyncio.create_task(hub.serve(socket, response.json()["ticket"]))  # type: ignore[arg-type]
    await _until(lambda: "started" in socket.kinds(), stack)
    broadcast_id = socket.sent[0]["broadcast_id"]
    socket.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
    await asyncio.wait_for(serving, 30)

    body = {"category": "village_notice", "resume": broadcast_id}
    assert await _ask(stack, other.headers, **body) == (404, "live_not_found")
    status, _ = await _ask(stack, head.headers, **body)
    assert status == 201
    await hub.close()
