"""Households and residents through the API: masked everywhere, revealed only for a reason and
only to those who may, counts for village heads, withdrawal and the retention clock erasing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.auth import Role
from gateway.residents import reach
from gateway.residents.models import Channel
from tests.flow.conftest import Stack
from tests.residents.conftest import villages
from tests.support.people import make_person

API = "/api/v1"


def _resident(phone: str, stack: Stack, **more: Any) -> dict[str, Any]:
    return {
        "phone": phone,
        "channels": ["sms"],
        "consented_at": (stack.clock.now() - timedelta(days=1)).isoformat(),
        "consent_version": "paper-2026",
        **more,
    }


async def test_households_residents_reveal_withdraw_and_expiry(stack: Stack) -> None:
    client = stack.client
    all_villages = await villages(stack)
    village = all_villages[0]
    elsewhere = next(v for v in all_villages if v["district_id"] != village["district_id"])
    vid = village["id"]

    receiver = await client.post(
        f"{API}/speakers",
        json={"code": "home-r1", "village_id": vid, "kind": "household_receiver"},
    )
    assert receiver.status_code == 201, receiver.text
    loudspeaker = await client.post(f"{API}/speakers", json={"code": "pa-x", "village_id": vid})
    household = await client.post(
        f"{API}/villages/{vid}/households",
        json={
            "address": "상촌리 12-3",
            "receiver_id": receiver.json()["id"],
            "receiver_volume": 70,
        },
    )
    assert household.status_code == 201, household.text
    hid = household.json()["id"]
    bad_receiver = await client.post(
        f"{API}/villages/{vid}/households",
        json={"address": "상촌리 9", "receiver_id": loudspeaker.json()["id"]},
    )
    assert bad_receiver.json()["error"] == "invalid_receiver"
    again = await client.post(f"{API}/villages/{vid}/households", json={"address": "상촌리 12-3"})
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_household"
    held = await client.patch(f"{API}/households/{hid}", json={"hold_non_urgent": True})
    assert held.json()["hold_non_urgent"] is True
    assert held.json()["receiver_volume"] == 70

    added = await client.post(
        f"{API}/villages/{vid}/residents",
        json=_resident("+82 10-2345-6789", stack, household_id=hid, channels=["sms", "web_push"]),
    )
    assert added.status_code == 201, added.text
    resident = added.json()
    assert resident["phone"] == "010-****-6789"
    rid = resident["id"]
    for spelling, code, status in (
        ("010-2345-6789", "duplicate_resident", 409),  # the same number, spelt otherwise
        ("02-123-4567", "invalid_phone_number", 422),
        ("010-2345-678", "invalid_phone_number", 422),
    ):
        refused = await client.post(
            f"{API}/villages/{vid}/residents", json=_resident(spelling, stack)
        )
        assert refused.status_code == status, refused.text
        assert refused.json()["error"] == code
        assert " / " in refused.json()["detail"]
    future = _resident(
        "010-3333-4444", stack, consented_at=(stack.clock.now() + timedelta(days=1)).isoformat()
    )
    assert (await client.post(f"{API}/villages/{vid}/residents", json=future)).json()["error"] == (
        "invalid_consent_date"
    )
    listed = await client.get(f"{API}/villages/{vid}/residents")
    assert [r["phone"] for r in listed.json()["items"]] == ["010-****-6789"]

    # Who may see the number: an admin and the district's officer, with a reason, audited.
    officer = await make_person(
        client, Role.DISTRICT_OFFICER, district_ids=[village["district_id"]]
    )
    stranger = await make_person(
        client, Role.DISTRICT_OFFICER, district_ids=[elsewhere["district_id"]]
    )
    head = await make_person(client, Role.VILLAGE_HEAD, village_ids=[vid])
    reveal = f"{API}/residents/{rid}/phone:reveal"
    no_reason = await client.post(reveal, json={}, headers=officer.headers)
    assert no_reason.status_code == 422
    shown = await client.post(
        reveal, json={"reason": "재난 문자 반송 확인"}, headers=officer.headers
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["phone"] == "010-2345-6789"
    assert shown.headers["cache-control"] == "no-store"
    outside = await client.post(
        reveal, json={"reason": "궁금해서 봅니다"}, headers=stranger.headers
    )
    assert outside.json()["error"] == "outside_scope"
    by_head = await client.post(reveal, json={"reason": "이장이 봅니다"}, headers=head.headers)
    assert by_head.json()["error"] == "role_not_allowed"
    assert (
        await client.get(f"{API}/villages/{vid}/residents", headers=head.headers)
    ).status_code == 403
    audit = await client.get(f"{API}/audit-events", params={"action": "reveal_resident_phone"})
    rows = {(e["actor"], e["outcome"], e["reason"]) for e in audit.json()["items"]}
    assert (f"{officer.username}#{officer.user_id}", "ok", "재난 문자 반송 확인") in rows
    assert (f"{stranger.username}#{stranger.user_id}", "denied", "궁금해서 봅니다") in rows

    # A village head sees counts, never numbers.
    summary = await client.get(f"{API}/villages/{vid}/households/summary", headers=head.headers)
    assert summary.status_code == 200, summary.text
    assert summary.json() == {
        "village_id": vid,
        "households": 1,
        "with_receiver": 1,
        "residents": 1,
        "by_channel": {"sms": 1, "web_push": 1, "indoor_receiver": 0},
        "withdrawn": 0,
    }
    other = await client.get(
        f"{API}/villages/{elsewhere['id']}/households/summary", headers=head.headers
    )
    assert other.json()["error"] == "outside_scope"

    # Withdrawal erases at once; the row stays for counting, with nothing personal.
    async with stack.app.state.sessions() as session:
        assert [
            r.resident_id
            for r in await reach.reachable_residents(
                session, 1, [vid], Channel.SMS, now=stack.clock.now()
            )
        ] == [rid]
    withdrawn = await client.delete(f"{API}/residents/{rid}", headers=officer.headers)
    assert withdrawn.status_code == 200, withdrawn.text
    body = withdrawn.json()
    assert (body["state"], body["phone"], body["language"], body["channels"]) == (
        "withdrawn",
        None,
        None,
        [],
    )
    assert body["household_id"] is None
    gone = await client.post(reveal, json={"reason": "철회 뒤에 봅니다"})
    assert gone.json()["error"] == "resident_erased"
    async with stack.app.state.sessions() as session:
        assert (
            await reach.reachable_residents(session, 1, [vid], Channel.SMS, now=stack.clock.now())
            == []
        )
    # The number is free again: the same person may come back.
    back = await client.post(
        f"{API}/villages/{vid}/residents", json=_resident("01023456789", stack)
    )
    assert back.status_code == 201, back.text

    # The retention clock: consent older than the period, unrenewed, is erased by the sweep's purge.
    stack.clock.advance(timedelta(days=stack.settings.resident_consent_days).total_seconds())
    async with stack.app.state.sessions() as session:
        assert (
            await reach.phone_for_sending(
                session, stack.app.state.phone_cipher, back.json()["id"], now=stack.clock.now()
            )
            is None
        )
    purge = await stack.app.state.sweeper.purge_once()
    assert purge.residents == 1
    expired = await client.get(f"{API}/residents/{back.json()['id']}")
    assert (expired.json()["state"], expired.json()["phone"]) == ("expired", None)
    counts = (await client.get(f"{API}/villages/{vid}/households/summary")).json()
    assert (counts["residents"], counts["withdrawn"]) == (0, 2)
