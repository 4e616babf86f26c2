"""Who may be the second person, who may see a request, and what approving signs: the two-person
rule tried as an administrator who wants to be both people would try it."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from gateway.auth import Role
from gateway.users.models import User
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, recording
from tests.flow.test_roles import _layout, _people, _send
from tests.support.people import PASSWORD, Person, bearer, log_in, sign_up, signed_in

__all__ = ["recording"]


async def _account(
    stack: Stack, username: str, role: Role, by: Person | None = None, **scope: list[int]
) -> Person:
    """An account made by ``by`` (the bootstrap token if None), signed in."""
    return await sign_up(
        stack.client, username, role, headers=by.headers if by is not None else None, **scope
    )


async def _request_city_wide(stack: Stack, person: Person, recording: bytes) -> dict[str, Any]:
    response = await _send(stack, person, recording, "disaster", all_villages="true")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def _approve(
    stack: Stack, approval: dict[str, Any], headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", json=body, headers=headers
    )


def _refused(response: httpx.Response, code: str, status: int = 403) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def test_an_admin_cannot_approve_through_an_account_they_made(
    stack: Stack, recording: bytes
) -> None:
    admin = await _account(stack, "admin-a", Role.CITY_ADMIN)
    approval = await _request_city_wide(stack, admin, recording)
    second = await _account(stack, "safety-made-by-a", Role.SAFETY_OFFICER, by=admin)

    refused = await _approve(stack, approval, second.headers)
    _refused(refused, "approver_not_eligible")
    assert "요청자가 만들거나" in refused.json()["detail"]
    assert await stack.publish_pending() == 0
    assert not stack.bus.published, "nothing refused may play"

    history = await stack.client.get(f"/api/v1/users/{second.user_id}/events")
    assert [(e["kind"], e["by_actor"], e["by_user_id"]) for e in history.json()] == [
        ("created", f"admin-a#{admin.user_id}", admin.user_id)
    ]


async def test_an_account_the_requester_empowered_cannot_approve(
    stack: Stack, recording: bytes
) -> None:
    admin = await _account(stack, "admin-a", Role.CITY_ADMIN)
    # Made by the bootstrap token, before the request, but then taken over by the requester:
    # a password they set, a role they gave.
    reset = await _account(stack, "safety-reset", Role.SAFETY_OFFICER)
    promoted = await _account(stack, "auditor-promoted", Role.AUDITOR)
    # Or made by an account the requester made.
    deputy = await _account(stack, "admin-deputy", Role.CITY_ADMIN, by=admin)
    chained = await _account(stack, "safety-by-deputy", Role.SAFETY_OFFICER, by=deputy)
    honest = await _account(stack, "safety-honest", Role.SAFETY_OFFICER)

    as_admin = admin.headers
    changed = await stack.client.post(
        f"/api/v1/users/{reset.user_id}/password",
        json={"password": "another-pass-1"},
        headers=as_admin,
    )
    assert changed.status_code == 204
    given = await stack.client.patch(
        f"/api/v1/users/{promoted.user_id}", json={"role": "safety_officer"}, headers=as_admin
    )
    assert given.status_code == 200, given.text
    approval = await _request_city_wide(stack, admin, recording)

    reset_login = await log_in(stack.client, reset.username, "another-pass-1")
    as_reset = bearer(reset_login.json()["access_token"])
    promoted = await signed_in(
        stack.client, promoted.username, Role.SAFETY_OFFICER, promoted.user_id
    )
    for headers in (as_reset, promoted.headers, deputy.headers, chained.headers):
        _refused(await _approve(stack, approval, headers), "approver_not_eligible")
    assert await stack.publish_pending() == 0

    approved = await _approve(stack, approval, honest.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approval"]["decided_by"] == f"safety-honest#{honest.user_id}"


async def test_an_account_given_its_rights_after_the_request_cannot_approve(
    stack: Stack, recording: bytes
) -> None:
    requester = await _account(stack, "safety-requester", Role.SAFETY_OFFICER)
    other_admin = await _account(stack, "admin-other", Role.CITY_ADMIN)
    suspended = await _account(stack, "safety-suspended", Role.SAFETY_OFFICER)
    paused = await stack.client.post(
        f"/api/v1/users/{suspended.user_id}/suspend", json={"reason": "휴직"}
    )
    assert paused.status_code == 200
    approval = await _request_city_wide(stack, requester, recording)

    stack.clock.advance(1)
    late = await _account(stack, "safety-late", Role.SAFETY_OFFICER, by=other_admin)
    back = await stack.client.post(
        f"/api/v1/users/{suspended.user_id}/reinstate", headers=other_admin.headers
    )
    assert back.status_code == 200
    suspended = await signed_in(
        stack.client, suspended.username, Role.SAFETY_OFFICER, suspended.user_id
    )
    for person in (late, suspended):
        refused = await _approve(stack, approval, person.headers)
        _refused(refused, "approver_not_eligible")
        assert "승인 요청 뒤에" in refused.json()["detail"]

    approved = await _approve(stack, approval, other_admin.headers)
    assert approved.status_code == 200, approved.text


async def test_neither_the_bootstrap_token_nor_an_api_key_approves(
    stack: Stack, recording: bytes
) -> None:
    requester = await _account(stack, "safety-requester", Role.SAFETY_OFFICER)
    admin = await _account(stack, "admin-b", Role.CITY_ADMIN)
    key = await stack.client.post(f"/api/v1/users/{admin.user_id}/api-keys", json={"name": "cli"})
    assert key.status_code == 201
    approval = await _request_city_wide(stack, requester, recording)

    _refused(await _approve(stack, approval, {}), "bootstrap_cannot_approve")
    by_key = await _approve(stack, approval, bearer(key.json()["key"]))
    _refused(by_key, "approver_not_eligible")
    assert await stack.publish_pending() == 0
    assert (await _approve(stack, approval, admin.headers)).status_code == 200


async def test_a_request_is_seen_by_its_requester_and_who_may_approve_it(
    stack: Stack, recording: bytes
) -> None:
    people = await _people(stack)
    districts, _ = await _layout(stack)
    first, second = districts[0]["id"], districts[1]["id"]
    both = await _account(
        stack, "district-both", Role.DISTRICT_OFFICER, district_ids=[first, second]
    )
    safety = people[Role.SAFETY_OFFICER]
    city_wide = await _request_city_wide(stack, safety, recording)
    two = await _send(
        stack, people[Role.CITY_ADMIN], recording, "disaster", district_ids=[first, second]
    )
    assert two.status_code == 202, two.text
    two_districts = two.json()

    async def seen(person: Person) -> set[str]:
        listed = await stack.client.get("/api/v1/approvals", headers=person.headers)
        assert listed.status_code == 200, listed.text
        ids = {a["id"] for a in listed.json()["items"]}
        assert listed.json()["total"] == len(ids)
        for approval in (city_wide, two_districts):
            got = await stack.client.get(
                f"/api/v1/approvals/{approval['id']}", headers=person.headers
            )
            assert got.status_code == (200 if approval["id"] in ids else 404), got.text
            audio = await stack.client.get(
                f"/api/v1/approvals/{approval['id']}/audio", headers=person.headers
            )
            assert audio.status_code == got.status_code
            if got.status_code == 404:
                assert got.json()["error"] == "approval_not_found", "as if it did not exist"
        return ids

    everything = {city_wide["id"], two_districts["id"]}
    assert await seen(safety) == everything  # asked for one, may approve the other
    assert await seen(people[Role.CITY_ADMIN]) == everything
    assert await seen(people[Role.AUDITOR]) == everything  # read-only, for audit
    assert await seen(both) == {two_districts["id"]}
    for role in (Role.DISTRICT_OFFICER, Role.VILLAGE_HEAD, Role.POLICE_OFFICER):
        assert await seen(people[role]) == set(), role

    outsider = people[Role.DISTRICT_OFFICER]
    for verb in ("approve", "reject"):
        response = await stack.client.post(
            f"/api/v1/approvals/{city_wide['id']}/{verb}", headers=outsider.headers
        )
        _refused(response, "approval_not_found", 404)


async def test_the_approver_hears_and_signs_the_recording_that_will_play(
    stack: Stack, recording: bytes
) -> None:
    requester = await _account(stack, "safety-requester", Role.SAFETY_OFFICER)
    admin = await _account(stack, "admin-b", Role.CITY_ADMIN)
    approval = await _request_city_wide(stack, requester, recording)
    read = await stack.client.get(f"/api/v1/approvals/{approval['id']}", headers=admin.headers)
    body = read.json()
    assert set(body["audio_sha256"]) >= {"opus"}
    assert body["source_sha256"] == hashlib.sha256(recording).hexdigest()
    assert body["duration_ms"] > 0
    assert body["audio_url"] == f"/api/v1/approvals/{approval['id']}/audio"

    heard = await stack.client.get(body["audio_url"], headers=admin.headers)
    assert heard.status_code == 200, heard.text
    assert heard.headers["content-type"].startswith("audio/ogg")
    digest = hashlib.sha256(heard.content).hexdigest()
    assert digest == body["audio_sha256"]["opus"]
    assert heard.headers["etag"] == f'"{digest}"'
    part = await stack.client.get(
        body["audio_url"], headers={**admin.headers, "Range": "bytes=0-99"}
    )
    assert part.status_code == 206
    assert part.content == heard.content[:100]
    for codec, sha256 in body["audio_sha256"].items():
        encoded = await stack.client.get(
            body["audio_url"], params={"codec": codec}, headers=admin.headers
        )
        assert hashlib.sha256(encoded.content).hexdigest() == sha256

    changed = await _approve(stack, approval, admin.headers, audio_sha256="0" * 64)
    _refused(changed, "approval_audio_changed", 409)
    assert await stack.publish_pending() == 0
    approved = await _approve(stack, approval, admin.headers, audio_sha256=digest, note="들어 봄")
    assert approved.status_code == 200, approved.text
    assert await stack.publish_pending() == 1
    [(_, command)] = _commands(stack)
    assert command.broadcast_id == approved.json()["broadcast"]["id"]
    assert digest in {a.sha256 for a in command.audio}, "what was heard is what plays"


async def test_an_area_widened_by_the_requester_does_not_make_an_approver(
    stack: Stack, recording: bytes
) -> None:
    districts, _ = await _layout(stack)
    first, second = districts[0]["id"], districts[1]["id"]
    admin = await _account(stack, "admin-a", Role.CITY_ADMIN)
    widened = await _account(stack, "district-widened", Role.DISTRICT_OFFICER, district_ids=[first])
    honest = await _account(
        stack, "district-honest", Role.DISTRICT_OFFICER, district_ids=[first, second]
    )
    grown = await stack.client.patch(
        f"/api/v1/users/{widened.user_id}",
        json={"district_ids": [first, second]},
        headers=admin.headers,
    )
    assert grown.status_code == 200, grown.text
    widened = await signed_in(
        stack.client, widened.username, Role.DISTRICT_OFFICER, widened.user_id
    )
    requested = await _send(stack, admin, recording, "disaster", district_ids=[first, second])
    assert requested.status_code == 202, requested.text
    approval = requested.json()

    _refused(await _approve(stack, approval, widened.headers), "approver_not_eligible")
    assert (await _approve(stack, approval, honest.headers)).status_code == 200
    history = await stack.client.get(f"/api/v1/users/{widened.user_id}/events")
    assert [e["kind"] for e in history.json()] == ["created", "scope_widened"]


async def test_a_suspended_persons_pending_request_is_withdrawn_and_never_approved(
    stack: Stack, recording: bytes
) -> None:
    """Suspending the requester withdraws what they left waiting for a second person; a request
    that slipped through is refused at approval."""
    asker = await _account(stack, "safety-asker", Role.SAFETY_OFFICER)
    second = await _account(stack, "safety-second", Role.SAFETY_OFFICER)
    approval = await _request_city_wide(stack, asker, recording)

    suspended = await stack.client.post(
        f"/api/v1/users/{asker.user_id}/suspend", json={"reason": "misuse"}
    )
    assert suspended.status_code == 200, suspended.text
    shown = await stack.client.get(f"/api/v1/approvals/{approval['id']}")
    assert shown.json()["state"] == "withdrawn"
    assert shown.json()["decision_note"] == "owner_suspended"
    _refused(await _approve(stack, approval, second.headers), "approval_not_pending", 409)

    # A request made as the suspension committed: still pending, refused all the same.
    reinstated = await stack.client.post(f"/api/v1/users/{asker.user_id}/reinstate")
    assert reinstated.status_code == 200, reinstated.text
    asker = await signed_in(stack.client, "safety-asker", Role.SAFETY_OFFICER, asker.user_id)
    late = await _request_city_wide(stack, asker, recording)
    async with stack.app.state.sessions() as session:
        user = await session.get(User, asker.user_id)
        assert user is not None
        user.suspended_at = user.updated_at
        await session.commit()
    _refused(await _approve(stack, late, second.headers), "requester_suspended", 409)
    assert await stack.publish_pending() == 0
    assert not stack.bus.published, "nothing refused may play"


async def test_an_account_whose_password_someone_else_set_after_the_request_cannot_approve(
    stack: Stack, recording: bytes
) -> None:
    """Whoever set a password can sign in as that account: a reset after the request (by the
    bootstrap token or by a colleague) leaves no second person in that account."""
    requester = await _account(stack, "admin-asks", Role.CITY_ADMIN)
    colleague = await _account(stack, "admin-colleague", Role.CITY_ADMIN)
    officer = await _account(stack, "safety-reset", Role.SAFETY_OFFICER)
    untouched = await _account(stack, "safety-untouched", Role.SAFETY_OFFICER)
    approval = await _request_city_wide(stack, requester, recording)

    stack.clock.advance(1)
    for by in ({}, colleague.headers):
        reset = await stack.client.post(
            f"/api/v1/users/{officer.user_id}/password", json={"password": PASSWORD}, headers=by
        )
        assert reset.status_code == 204, reset.text
        officer = await signed_in(
            stack.client, officer.username, Role.SAFETY_OFFICER, officer.user_id
        )
        refused = await _approve(stack, approval, officer.headers)
        _refused(refused, "approver_not_eligible")
    approved = await _approve(stack, approval, untouched.headers)
    assert approved.status_code == 200, approved.text
