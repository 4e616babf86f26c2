"""Rate limits that hold when sends race, a village head's disaster alerts (limited, never
delayed, told to the district's officers at once), and the officers' alerts on the console."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from gateway import ratelimits
from gateway.auth import Role
from gateway.errors import TooManyRequests
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_roles import _layout
from tests.flow.test_schedules import _fire, local, move_to
from tests.support.people import Person, access_token, sign_up
from wire.contract import Category

__all__ = ["recording"]  # the module-scoped fixture, shared


async def _send(
    stack: Stack, person: Person, recording: bytes, category: str, **form: Any
) -> httpx.Response:
    return await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": category, **form},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=person.headers,
    )


async def _all_at_once(
    stack: Stack, sends: list[tuple[Person, str]], recording: bytes, village: int
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(
                _send(stack, person, recording, category, village_ids=[village])
                for person, category in sends
            )
        )
    )


def _outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str]]:
    return Counter(
        (r.status_code, r.json().get("error", "") if r.status_code != 201 else "")
        for r in responses
    )


async def _places(stack: Stack) -> tuple[int, int, int, int]:
    """(a district, a village in it, another district, a village in that one)."""
    districts, villages = await _layout(stack)
    mine, other = districts[0]["id"], districts[1]["id"]
    own = next(v["id"] for v in villages if v["district_id"] == mine)
    foreign = next(v["id"] for v in villages if v["district_id"] == other)
    return mine, own, other, foreign


async def test_village_notices_racing_for_the_last_places_of_the_hour(
    stack: Stack, recording: bytes
) -> None:
    """8 notices at once to a village with 3 left in the hour: exactly 3 go out."""
    district, village, _, _ = await _places(stack)
    head = await sign_up(stack.client, "ijang", Role.VILLAGE_HEAD, village_ids=[village])
    officer = await sign_up(stack.client, "myeon", Role.DISTRICT_OFFICER, district_ids=[district])
    limit = stack.settings.rate_limit_village_notices_per_hour
    for _ in range(limit - 3):
        first = await _send(stack, head, recording, "village_notice", village_ids=[village])
        assert first.status_code == 201, first.text

    # Two people at once, so that only the village's count can hold them back.
    racing = [(head, "village_notice"), (officer, "village_notice")] * 4
    responses = await _all_at_once(stack, racing, recording, village)

    assert _outcomes(responses) == Counter({(201, ""): 3, (429, "rate_limited_village"): 5})
    # The refusal names the village (never its id) and says, in seconds, when to come back.
    refused = next(r for r in responses if r.status_code == 429)
    name = (await stack.client.get(f"/api/v1/villages/{village}")).json()["name"]
    assert name in refused.json()["detail"], refused.text
    assert "[" not in refused.json()["detail"], refused.text
    assert int(refused.headers["Retry-After"]) > 0
    listed = await stack.client.get(
        "/api/v1/broadcasts", params={"category": "village_notice", "limit": 100}
    )
    assert listed.json()["total"] == limit


async def test_one_persons_sends_racing_for_the_last_places_of_the_hour(
    stack: Stack, recording: bytes
) -> None:
    """8 sends at once by one person with 3 left in the hour: exactly 3 go out."""
    district, village, _, _ = await _places(stack)
    officer = await sign_up(stack.client, "myeon", Role.DISTRICT_OFFICER, district_ids=[district])
    stack.settings.rate_limit_user_per_hour = 4
    first = await _send(stack, officer, recording, "administrative", village_ids=[village])
    assert first.status_code == 201, first.text

    responses = await _all_at_once(stack, [(officer, "administrative")] * 8, recording, village)

    assert _outcomes(responses) == Counter({(201, ""): 3, (429, "rate_limited_user"): 5})


async def test_a_village_heads_disaster_alerts_are_limited_but_never_delayed(
    stack: Stack, recording: bytes
) -> None:
    district, village, _, foreign = await _places(stack)
    head = await sign_up(stack.client, "ijang", Role.VILLAGE_HEAD, village_ids=[village])
    safety = await sign_up(stack.client, "anjeon", Role.SAFETY_OFFICER)
    officer = await sign_up(stack.client, "myeon", Role.DISTRICT_OFFICER, district_ids=[district])
    per_head = stack.settings.rate_limit_head_disaster_per_hour
    assert per_head == 3
    # The village has had its notices this hour: a disaster alert is not held back by that.
    for _ in range(stack.settings.rate_limit_village_notices_per_hour):
        notice = await _send(stack, head, recording, "village_notice", village_ids=[village])
        assert notice.status_code == 201, notice.text
    await stack.publish_pending()
    # At 2 a.m., in quiet hours: sent at once, not deferred.
    move_to(stack, local("2026-01-02T02:00"))
    head.token = await access_token(stack.client, head.username)
    safety.token = await access_token(stack.client, safety.username)
    officer.token = await access_token(stack.client, officer.username)

    elsewhere = await _send(stack, head, recording, "disaster", village_ids=[foreign])
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (403, "outside_scope")

    # Five at once: the limit holds under the race too.
    responses = await _all_at_once(stack, [(head, "disaster")] * 5, recording, village)
    assert _outcomes(responses) == Counter(
        {(201, ""): per_head, (429, "rate_limited_head_disaster"): 5 - per_head}
    )
    for sent in (r for r in responses if r.status_code == 201):
        assert sent.json()["category"] == "disaster"
    assert await stack.publish_pending() == per_head, "every alert published at once"

    refused = await _send(stack, head, recording, "disaster", village_ids=[village])
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited_head_disaster"
    assert "읍·면사무소" in refused.json()["detail"]
    assert "district office" in refused.json()["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 3601

    # Everyone else's disaster alerts stay unlimited.
    for person in (safety, officer) * 2:
        alert = await _send(stack, person, recording, "disaster", village_ids=[village])
        assert alert.status_code == 201, alert.text

    # Audited: the sends, the one refused, and each alert by its broadcast.
    events = (
        await stack.client.get("/api/v1/audit-events", params={"actor": f"ijang#{head.user_id}"})
    ).json()["items"]
    outcomes = Counter((e["action"], e["outcome"]) for e in events)
    assert outcomes[("create_broadcast", "limited")] >= 3
    assert outcomes[("head_disaster_alert", "ok")] == per_head
    alerted = {e["target"] for e in events if e["action"] == "head_disaster_alert"}
    assert alerted == {f"broadcast_id={r.json()['id']}" for r in responses if r.status_code == 201}

    # An hour later the head may warn again.
    stack.clock.advance(3601)
    head.token = await access_token(stack.client, head.username)
    again = await _send(stack, head, recording, "disaster", village_ids=[village])
    assert again.status_code == 201, again.text


async def test_the_districts_officers_are_told_at_once_and_acknowledge(
    stack: Stack, recording: bytes
) -> None:
    district, village, other, _ = await _places(stack)
    head = await sign_up(stack.client, "ijang", Role.VILLAGE_HEAD, village_ids=[village])
    officer = await sign_up(stack.client, "myeon", Role.DISTRICT_OFFICER, district_ids=[district])
    stranger = await sign_up(stack.client, "yeopmyeon", Role.DISTRICT_OFFICER, district_ids=[other])
    safety = await sign_up(stack.client, "anjeon", Role.SAFETY_OFFICER)
    police = await sign_up(stack.client, "gyeongchal", Role.POLICE_OFFICER, district_ids=[district])
    _, villages = await _layout(stack)
    name = next(v["name"] for v in villages if v["id"] == village)

    # Another role's disaster alert, and the head's notice, tell nobody.
    assert (await _send(stack, safety, recording, "disaster", village_ids=[village])).is_success
    assert (await _send(stack, head, recording, "village_notice", village_ids=[village])).is_success
    inbox = await stack.client.get("/api/v1/officer-alerts", headers=officer.headers)
    assert inbox.status_code == 200, inbox.text
    assert inbox.json() == {"items": [], "unacknowledged": 0}

    first = await _send(stack, head, recording, "disaster", village_ids=[village])
    assert first.status_code == 201, first.text
    stack.clock.advance(60)
    second = await _send(stack, head, recording, "disaster", village_ids=[village])
    assert second.status_code == 201, second.text

    for person in (officer, safety):
        inbox = await stack.client.get("/api/v1/officer-alerts", headers=person.headers)
        body = inbox.json()
        assert body["unacknowledged"] == 2
        assert [a["broadcast_id"] for a in body["items"]] == [
            second.json()["id"],
            first.json()["id"],
        ]
        alert = body["items"][0]
        assert alert["message"] == f"{name} 이장이 재난 방송을 보냈습니다"
        assert alert["village_ids"] == [village]
        assert alert["sent_by"] == f"ijang#{head.user_id}"
        assert alert["acknowledged_at"] is None
    assert (await stack.client.get("/api/v1/officer-alerts", headers=stranger.headers)).json()[
        "items"
    ] == []
    assert (
        await stack.client.get("/api/v1/officer-alerts", headers=police.headers)
    ).status_code == 403
    assert (
        await stack.client.get("/api/v1/officer-alerts", headers=head.headers)
    ).status_code == 403

    # The officer acknowledges the newest: it goes after the one still waiting.
    newest = (await stack.client.get("/api/v1/officer-alerts", headers=officer.headers)).json()[
        "items"
    ][0]
    stranger_ack = await stack.client.post(
        f"/api/v1/officer-alerts/{newest['id']}/ack", headers=stranger.headers
    )
    assert (stranger_ack.status_code, stranger_ack.json()["error"]) == (
        404,
        "officer_alert_not_found",
    )
    ack = await stack.client.post(
        f"/api/v1/officer-alerts/{newest['id']}/ack", headers=officer.headers
    )
    assert ack.status_code == 200, ack.text
    acknowledged_at = ack.json()["acknowledged_at"]
    assert acknowledged_at is not None
    stack.clock.advance(30)
    again = await stack.client.post(
        f"/api/v1/officer-alerts/{newest['id']}/ack", headers=officer.headers
    )
    assert again.json()["acknowledged_at"] == acknowledged_at
    body = (await stack.client.get("/api/v1/officer-alerts", headers=officer.headers)).json()
    assert body["unacknowledged"] == 1
    assert [a["broadcast_id"] for a in body["items"]] == [first.json()["id"], second.json()["id"]]
    waiting = await stack.client.get(
        "/api/v1/officer-alerts", params={"unacknowledged": "true"}, headers=officer.headers
    )
    assert [a["broadcast_id"] for a in waiting.json()["items"]] == [first.json()["id"]]
    # The safety officer's own copy is still waiting.
    assert (await stack.client.get("/api/v1/officer-alerts", headers=safety.headers)).json()[
        "unacknowledged"
    ] == 2


async def test_a_village_heads_scheduled_disaster_alerts_are_held_to_the_same_rule(
    stack: Stack, recording: bytes
) -> None:
    """A firing knows only the name of who made the schedule: the head's limit and the
    officers' alerts apply all the same."""
    district, village, _, _ = await _places(stack)
    head = await sign_up(stack.client, "ijang", Role.VILLAGE_HEAD, village_ids=[village])
    officer = await sign_up(stack.client, "myeon", Role.DISTRICT_OFFICER, district_ids=[district])
    made = []
    for n in range(4):
        response = await stack.client.post(
            "/api/v1/schedules",
            data={
                "category": "disaster",
                "title": f"홍수 경보 {n}",
                "send_at": "2026-01-01T10:00",
                "village_ids": [village],
            },
            files={"file": ("notice.m4a", recording, "audio/mp4")},
            headers=head.headers,
        )
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])

    move_to(stack, local("2026-01-01T10:00"))
    assert await _fire(stack) == Counter({"fired": 3, "skipped": 1})
    reasons = Counter()
    for schedule_id in made:
        [occurrence] = (await stack.client.get(f"/api/v1/schedules/{schedule_id}")).json()[
            "occurrences"
        ]
        reasons[(occurrence["state"], occurrence["reason"])] += 1
    assert reasons == Counter({("fired", None): 3, ("skipped", "rate_limited_head_disaster"): 1})

    officer.token = await access_token(stack.client, officer.username)
    inbox = (await stack.client.get("/api/v1/officer-alerts", headers=officer.headers)).json()
    assert inbox["unacknowledged"] == 3
    assert {a["sent_by"] for a in inbox["items"]} == {f"ijang#{head.user_id}"}


async def test_a_count_read_before_anothers_send_is_read_again_under_the_lock(
    stack: Stack, recording: bytes
) -> None:
    """A transaction that answered early (before its transcode) and then locks sees the
    broadcast another request committed in between: never a stale count, never a 503 (on
    SQLite a read snapshot held across that commit could no longer write)."""
    _, village, _, _ = await _places(stack)
    head = await sign_up(stack.client, "ijang", Role.VILLAGE_HEAD, village_ids=[village])
    stack.settings.rate_limit_village_notices_per_hour = 1
    check = {
        "city_id": stack.app.state.city_id,
        "actor": "someone#999",
        "category": Category.VILLAGE_NOTICE,
        "village_ids": [village],
    }
    async with stack.app.state.sessions() as session:
        await ratelimits.check_send(
            session, stack.settings, now=stack.clock.now(), lock=False, **check
        )
        other = await _send(stack, head, recording, "village_notice", village_ids=[village])
        assert other.status_code == 201, other.text
        with pytest.raises(TooManyRequests) as refused:
            await ratelimits.check_send(session, stack.settings, now=stack.clock.now(), **check)
        assert refused.value.code == "rate_limited_village"
