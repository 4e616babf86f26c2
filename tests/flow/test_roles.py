"""Who may do what: login, tokens, suspension, API keys, the role x endpoint matrix, scopes."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from gateway.auth import Allow, Role
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import recording
from tests.support.people import PASSWORD, Person, access_token, bearer, log_in, sign_up

__all__ = ["recording"]

# Routes anyone may call without a token: health, login, what speakers fetch (audio through a
# signed link, else with a token: `tests/flow/test_audio_access.py`), the residents'
# notices (no personal data), and residents signing themselves up or withdrawing (a code by
# SMS proves the number: `tests/residents/test_signup.py`).
PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/keys"),
    ("GET", "/api/v1/keys/ring"),
    ("GET", "/api/v1/audio/{sha256}"),
    ("HEAD", "/api/v1/audio/{sha256}"),
    ("GET", "/api/v1/notices/villages"),
    ("GET", "/api/v1/notices/villages/{village_id}"),
    # Live alerts as CAP for other alerting systems (tests/flow/test_cap_publish.py).
    ("GET", "/api/v1/cap/feed"),
    ("GET", "/api/v1/cap/alerts/{identifier}.xml"),
    # The enrollment code is the credential (tests/flow/test_enrollment.py).
    ("POST", "/api/v1/enrollment/redeem"),
    # Kannel's delivery-report callback: the signature in the link is the credential (tests/sms).
    ("GET", "/api/v1/sms/dlr"),
    # Residents' browsers subscribe to web push without an account (tests/push).
    ("GET", "/api/v1/push/vapid-public-key"),
    ("POST", "/api/v1/push/subscriptions"),
    ("DELETE", "/api/v1/push/subscriptions"),
    ("GET", "/api/v1/residents/consent"),
    ("POST", "/api/v1/residents/signup"),
    ("POST", "/api/v1/residents/signup/verify"),
    ("POST", "/api/v1/residents/withdrawal"),
    ("POST", "/api/v1/residents/withdrawal/verify"),
}
# The broker's questions: answered only with the broker hook secret, whatever a person holds
# (tests/devicesec/test_broker_hooks.py).
BROKER = {
    ("POST", "/api/v1/broker/hooks/emqx/authenticate"),
    ("POST", "/api/v1/broker/hooks/emqx/authorize"),
}


async def _layout(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    villages = (await stack.client.get("/api/v1/villages", params={"limit": 100})).json()["items"]
    return districts, villages


async def _person(stack: Stack, role: Role, **scope: list[int]) -> Person:
    username = f"{role.value.replace('_', '-')}-{len(scope)}-{sum(map(len, scope.values()))}"
    return await sign_up(stack.client, username, role, **scope)


async def _people(stack: Stack) -> dict[Role, Person]:
    districts, villages = await _layout(stack)
    first = districts[0]["id"]
    own = [v["id"] for v in villages if v["district_id"] == first][:1]
    return {
        Role.CITY_ADMIN: await _person(stack, Role.CITY_ADMIN),
        Role.DISTRICT_OFFICER: await _person(stack, Role.DISTRICT_OFFICER, district_ids=[first]),
        Role.VILLAGE_HEAD: await _person(stack, Role.VILLAGE_HEAD, village_ids=own),
        Role.POLICE_OFFICER: await _person(stack, Role.POLICE_OFFICER, district_ids=[first]),
        Role.SAFETY_OFFICER: await _person(stack, Role.SAFETY_OFFICER),
        Role.AUDITOR: await _person(stack, Role.AUDITOR),
    }


def _declared(route: APIRoute) -> frozenset[Role] | None:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, Allow):
            return dependant.call.roles
        stack.extend(dependant.dependencies)
    return None


def _api_routes(stack: Stack) -> list[tuple[str, str, APIRoute]]:
    """(method, full path, route) of every API route, through included routers."""
    found: list[tuple[str, str, APIRoute]] = []
    for route in stack.app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        pairs = (
            [(c.path, c.original_route) for c in contexts()]
            if contexts is not None
            else [(getattr(route, "path", ""), route)]
        )
        for path, original in pairs:
            if isinstance(original, APIRoute) and path.startswith("/api/v1/"):
                found += [(method, path, original) for method in sorted(original.methods)]
    assert len(found) > 30, "the route walk found too few routes"
    return found


def _concrete(path: str) -> str:
    """Path parameters that name nothing: an allowed caller gets 404 or 422, never a change."""

    def fill(match: re.Match[str]) -> str:
        name = match[1]
        if name == "sha256":
            return "0" * 64
        if name.endswith("_id") and name in ("broadcast_id", "schedule_id"):
            return "f" * 32
        return "999999"

    return re.sub(r"\{(\w+)\}", fill, path)


async def test_every_endpoint_declares_who_may_call_it(stack: Stack) -> None:
    undeclared = [
        (method, path)
        for method, path, route in _api_routes(stack)
        if _declared(route) is None and (method, path) not in PUBLIC | BROKER
    ]
    assert not undeclared, f"routes without an Allow(...) declaration: {undeclared}"


async def test_role_by_endpoint_matrix(stack: Stack) -> None:
    people = await _people(stack)
    checked = 0
    for method, path, route in _api_routes(stack):
        roles = _declared(route)
        if roles is None:
            continue
        url = _concrete(path)
        for role, person in people.items():
            response = await stack.client.request(method, url, headers=person.headers)
            json_body = response.headers.get("content-type", "").startswith("application/json")
            body = response.json() if json_body and response.content else {}
            refused = response.status_code == 403 and body.get("error") == "role_not_allowed"
            assert refused == (role not in roles), (method, path, role, response.status_code, body)
            assert response.status_code < 500, (method, path, role, response.text)
            checked += 1
        anonymous = await stack.client.request(method, url, headers={"Authorization": ""})
        assert anonymous.status_code == 401, (method, path)
    assert checked >= 6 * 30


async def test_wrong_passwords_and_unknown_names_get_one_answer(stack: Stack) -> None:
    """Guessing itself is slowed per source (tests/flow/test_logins.py)."""
    await _person(stack, Role.AUDITOR)
    for name, password in (("nobody-here", PASSWORD), ("auditor-0-0", "not-the-password")):
        wrong = await log_in(stack.client, name, password)
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_credentials")
    assert (await log_in(stack.client, "auditor-0-0", PASSWORD)).status_code == 200


async def test_tokens_expire_refresh_once_and_reuse_revokes(stack: Stack) -> None:
    person = await _person(stack, Role.AUDITOR)
    me = await stack.client.get("/api/v1/auth/me", headers=person.headers)
    assert me.json()["role"] == "auditor"

    tampered = person.token[:-3] + ("AAA" if not person.token.endswith("AAA") else "BBB")
    bad = await stack.client.get("/api/v1/auth/me", headers=bearer(tampered))
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_token"

    stack.clock.advance(stack.settings.access_token_ttl_s + 1)
    expired = await stack.client.get("/api/v1/auth/me", headers=person.headers)
    assert expired.status_code == 401

    renewed = await stack.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": person.refresh}
    )
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    ok = await stack.client.get("/api/v1/auth/me", headers=bearer(fresh["access_token"]))
    assert ok.status_code == 200

    # The used refresh token again: taken as stolen, so the new one dies with it.
    reused = await stack.client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh})
    assert reused.status_code == 401
    after = await stack.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
    )
    assert after.status_code == 401


async def test_suspension_refuses_tokens_already_issued(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    head = people[Role.VILLAGE_HEAD]
    assert (await stack.client.get("/api/v1/auth/me", headers=head.headers)).status_code == 200
    suspended = await stack.client.post(
        f"/api/v1/users/{head.user_id}/suspend", json={"reason": "주민 비방 방송"}
    )
    assert suspended.status_code == 200
    refused = await stack.client.get("/api/v1/auth/me", headers=head.headers)
    assert (refused.status_code, refused.json()["error"]) == (403, "account_suspended")
    again = await log_in(stack.client, head.username)
    assert again.status_code == 403
    assert again.json()["error"] == "account_suspended"
    refresh = await stack.client.post("/api/v1/auth/refresh", json={"refresh_token": head.refresh})
    assert refresh.status_code == 401

    admin = people[Role.CITY_ADMIN]
    self_suspend = await stack.client.post(
        f"/api/v1/users/{admin.user_id}/suspend", json={"reason": "x"}, headers=admin.headers
    )
    assert self_suspend.status_code == 409


async def test_api_keys_act_as_their_user_until_revoked(stack: Stack) -> None:
    person = await _person(stack, Role.SAFETY_OFFICER)
    created = await stack.client.post(
        f"/api/v1/users/{person.user_id}/api-keys", json={"name": "재난 시스템 연동"}
    )
    assert created.status_code == 201
    key = created.json()["key"]
    listed = await stack.client.get(f"/api/v1/users/{person.user_id}/api-keys")
    assert "key" not in listed.json()[0], "a key is shown once, never listed"
    headers = bearer(key)
    me = await stack.client.get("/api/v1/auth/me", headers=headers)
    assert me.json() | {} == me.json()
    assert me.json()["role"] == "safety_officer"
    assert me.json()["via"] == "api_key"
    revoked = await stack.client.delete(f"/api/v1/api-keys/{created.json()['id']}")
    assert revoked.status_code == 200
    assert (await stack.client.get("/api/v1/auth/me", headers=headers)).status_code == 401


async def _send(
    stack: Stack, person: Person, recording: bytes, category: str, **form: Any
) -> httpx.Response:
    return await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": category, **form},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=person.headers,
    )


async def test_scopes_on_sending_reading_and_cancelling(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    districts, villages = await _layout(stack)
    mine, other = districts[0]["id"], districts[1]["id"]
    own_village = next(v["id"] for v in villages if v["district_id"] == mine)
    foreign_village = next(v["id"] for v in villages if v["district_id"] == other)
    officer = people[Role.DISTRICT_OFFICER]
    police = people[Role.POLICE_OFFICER]
    head = people[Role.VILLAGE_HEAD]
    safety = people[Role.SAFETY_OFFICER]
    auditor = people[Role.AUDITOR]

    ok = await _send(stack, officer, recording, "administrative", district_ids=[mine])
    assert ok.status_code == 201, ok.text
    for response in (
        await _send(stack, officer, recording, "administrative", district_ids=[other]),
        await _send(stack, officer, recording, "administrative", village_ids=[foreign_village]),
        await _send(stack, officer, recording, "administrative", all_villages="true"),
        await _send(stack, head, recording, "village_notice", village_ids=[foreign_village]),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "outside_scope"
    for person, category in (
        (police, "disaster"),
        (police, "administrative"),
        (safety, "village_notice"),
    ):
        response = await _send(stack, person, recording, category, village_ids=[own_village])
        assert response.status_code == 403
        assert response.json()["error"] == "category_not_allowed"
    assert (
        await _send(stack, auditor, recording, "administrative", village_ids=[own_village])
    ).status_code == 403

    crime = await _send(stack, police, recording, "crime_prevention", village_ids=[own_village])
    assert crime.status_code == 201, crime.text
    notice = await _send(stack, head, recording, "village_notice", village_ids=[own_village])
    assert notice.status_code == 201, notice.text
    alert = await _send(stack, safety, recording, "disaster", village_ids=[own_village])
    assert alert.status_code == 201, alert.text
    elsewhere = await _send(
        stack, people[Role.CITY_ADMIN], recording, "administrative", district_ids=[other]
    )
    assert elsewhere.status_code == 201

    # Reading: the village head sees what reaches the village, not the other district's.
    seen = await stack.client.get(f"/api/v1/broadcasts/{notice.json()['id']}", headers=head.headers)
    assert seen.status_code == 200
    hidden = await stack.client.get(
        f"/api/v1/broadcasts/{elsewhere.json()['id']}", headers=head.headers
    )
    assert hidden.status_code == 403
    listed = await stack.client.get("/api/v1/broadcasts", headers=head.headers)
    ids = {b["id"] for b in listed.json()["items"]}
    assert notice.json()["id"] in ids
    assert elsewhere.json()["id"] not in ids
    audited = await stack.client.get("/api/v1/broadcasts", headers=auditor.headers)
    assert audited.json()["total"] == 5

    # Police never stop a disaster alert; the safety office and the district can act on theirs.
    stop = await stack.client.post(
        f"/api/v1/broadcasts/{alert.json()['id']}/cancel", headers=police.headers
    )
    assert stop.status_code == 403
    cancel_crime = await stack.client.post(
        f"/api/v1/broadcasts/{crime.json()['id']}/cancel", headers=police.headers
    )
    assert cancel_crime.status_code == 200
    cancel_alert = await stack.client.post(
        f"/api/v1/broadcasts/{alert.json()['id']}/cancel", headers=safety.headers
    )
    assert cancel_alert.status_code == 200


async def test_rate_limits_people_but_never_disaster_alerts(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    head = people[Role.VILLAGE_HEAD]
    me = await stack.client.get("/api/v1/auth/me", headers=head.headers)
    village = me.json()["village_ids"][0]
    limit = stack.settings.rate_limit_village_notices_per_hour
    for _ in range(limit):
        sent = await _send(stack, head, recording, "village_notice", village_ids=[village])
        assert sent.status_code == 201, sent.text
    refused = await _send(stack, head, recording, "village_notice", village_ids=[village])
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited_village"
    # Room again when the first notice leaves the hour, and the wait counts down.
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3601
    stack.clock.advance(1200)
    head.token = await access_token(stack.client, head.username)
    later = await _send(stack, head, recording, "village_notice", village_ids=[village])
    assert 2390 <= int(later.headers["Retry-After"]) <= 2401
    alert = await _send(stack, head, recording, "disaster", village_ids=[village])
    assert alert.status_code == 201, "a disaster alert is never rate-limited"
    stack.clock.advance(2401)
    head.token = await access_token(stack.client, head.username)
    again = await _send(stack, head, recording, "village_notice", village_ids=[village])
    assert again.status_code == 201


async def test_account_administration_errors(stack: Stack) -> None:
    districts, _ = await _layout(stack)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"role": "district_officer"}, 422, "scope_required"),
        (
            {"role": "safety_officer", "district_ids": [districts[0]["id"]]},
            422,
            "scope_not_allowed",
        ),
        ({"role": "district_officer", "district_ids": [999999]}, 422, "unknown_district"),
        ({"role": "auditor", "password": "short"}, 422, "weak_password"),
        ({"role": "pope"}, 422, "invalid_request"),
    ]
    for extra, status, code in cases:
        response = await stack.client.post(
            "/api/v1/users", json={"username": "someone", "display_name": "누구", **extra}
        )
        assert response.status_code == status, (extra, response.text)
        assert response.json()["error"] == code
    first = await stack.client.post(
        "/api/v1/users", json={"username": "twice", "display_name": "a", "role": "auditor"}
    )
    assert first.status_code == 201
    second = await stack.client.post(
        "/api/v1/users", json={"username": "twice", "display_name": "b", "role": "auditor"}
    )
    assert second.status_code == 409
    assert second.json()["error"] == "username_taken"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer x.y.z", "Basic dXNlcjpwYXNz", "Bearer mk_nope"]
)
async def test_bad_credentials_are_401(stack: Stack, header: str) -> None:
    response = await stack.client.get("/api/v1/auth/me", headers={"Authorization": header})
    assert response.status_code == 401


async def test_mine_lists_only_what_the_caller_sent(stack: Stack) -> None:
    people = await _people(stack)
    head = people[Role.VILLAGE_HEAD]
    me = await stack.client.get("/api/v1/auth/me", headers=head.headers)
    village = me.json()["village_ids"][0]
    notice = {"category": "village_notice", "village_ids": [village], "text": "마을 알림입니다."}
    by_admin = await stack.client.post("/api/v1/broadcasts", data=notice)
    by_head = await stack.client.post("/api/v1/broadcasts", data=notice, headers=head.headers)
    assert (by_admin.status_code, by_head.status_code) == (201, 201)

    async def listed(**params: str) -> list[str]:
        page = await stack.client.get("/api/v1/broadcasts", params=params, headers=head.headers)
        assert page.status_code == 200, page.text
        return [b["id"] for b in page.json()["items"]]

    assert set(await listed()) == {by_admin.json()["id"], by_head.json()["id"]}
    assert await listed(mine="true") == [by_head.json()["id"]]
