"""Tokens and logins under attack: forged tokens, raced and stolen refresh tokens, password
guessing from one address, unknown usernames."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.auth import Role
from gateway.bus import FakeBus
from gateway.keyfiles import SecretError
from gateway.settings import Settings
from gateway.users import logins as users_service
from gateway.users.models import LoginThrottle
from tests.flow.conftest import TOKEN, Stack
from tests.support.people import PASSWORD, Person, bearer, log_in, sign_up

STRANGER = "203.0.113.7"
OFFICE = "198.51.100.20"


def _behind_proxy(stack: Stack) -> None:
    """The test client plays a trusted proxy, so each request names its own source; two
    failures are let through, not five (each costs a real password hash)."""
    stack.settings.trusted_proxies = "127.0.0.1"
    stack.settings.login_max_failures = 2


async def _login(
    stack: Stack, username: str, password: str = PASSWORD, *, source: str = OFFICE
) -> httpx.Response:
    return await log_in(stack.client, username, password, forwarded_for=source)


async def _me(stack: Stack, token: str) -> int:
    return (await stack.client.get("/api/v1/auth/me", headers=bearer(token))).status_code


async def _refresh(stack: Stack, token: str) -> httpx.Response:
    return await stack.client.post("/api/v1/auth/refresh", json={"refresh_token": token})


# --- the key that signs access tokens ------------------------------------------------------


def _forged(stack: Stack, key: bytes, user_id: int) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "city": stack.settings.city_code,
        "ver": 1,
        "typ": "access",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, key, algorithm="HS256")


async def test_tokens_signed_with_a_derivable_key_are_refused(stack: Stack) -> None:
    admin = await sign_up(stack.client, "admin-forged", Role.CITY_ADMIN)
    assert await _me(stack, admin.token) == 200
    # What the key used to be without GATEWAY_JWT_SECRET: derived from the bootstrap token, or
    # from an empty string when there was none.
    for seed in (TOKEN, ""):
        key = hmac.new(seed.encode(), b"maeul-access-token-v1", hashlib.sha256).digest()
        forged = _forged(stack, key, admin.user_id)
        listed = await stack.client.get("/api/v1/users", headers=bearer(forged))
        assert listed.status_code == 401, seed
        assert listed.json()["error"] == "invalid_token"


async def test_a_second_app_on_the_same_data_directory_accepts_the_tokens(stack: Stack) -> None:
    person = await sign_up(stack.client, "two-replicas", Role.AUDITOR)
    other = create_app(stack.settings, bus=FakeBus(), clock=stack.clock)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            me = await client.get("/api/v1/auth/me", headers=person.headers)
    assert me.status_code == 200, me.text


@pytest.mark.parametrize("secret", [None, "x", "a" * 40])
async def test_production_refuses_to_start_without_a_strong_jwt_secret(
    tmp_path: Any, secret: str | None
) -> None:
    settings = Settings(
        environment="production",
        database_url="sqlite+aiosqlite://",
        data_dir=tmp_path,
        api_token="production-bootstrap-token-0123456789",
        jwt_secret=secret,
    )
    with pytest.raises(SecretError, match="GATEWAY_JWT_SECRET"):
        create_app(settings)


# --- refresh tokens ------------------------------------------------------------------------


async def test_of_concurrent_refreshes_of_one_token_exactly_one_wins(stack: Stack) -> None:
    person = await sign_up(stack.client, "racer", Role.AUDITOR)
    answers = await asyncio.gather(*(_refresh(stack, person.refresh) for _ in range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [401] * 5, [a.text for a in answers]
    assert all(a.json()["error"] == "invalid_token" for a in answers if a.status_code == 401)
    # The losers presented a spent token: taken as theft, so the winner's pair dies too.
    won = next(a.json() for a in answers if a.status_code == 200)
    assert await _me(stack, won["access_token"]) == 401
    assert (await _refresh(stack, won["refresh_token"])).status_code == 401
    assert await _me(stack, person.token) == 401


async def test_reuse_ends_every_session_of_the_person_access_tokens_included(
    stack: Stack,
) -> None:
    phone = await sign_up(stack.client, "two-devices", Role.SAFETY_OFFICER)
    pc = (await _login(stack, phone.username)).json()
    renewed = await _refresh(stack, phone.refresh)
    assert renewed.status_code == 200
    fresh = renewed.json()
    for token in (fresh["access_token"], pc["access_token"], phone.token):
        assert await _me(stack, token) == 200

    stolen = await _refresh(stack, phone.refresh)  # the old one, presented by a thief
    assert stolen.status_code == 401

    for token in (fresh["access_token"], pc["access_token"], phone.token):
        assert await _me(stack, token) == 401
    for refresh in (fresh["refresh_token"], pc["refresh_token"]):
        assert (await _refresh(stack, refresh)).status_code == 401
    # The owner logs in again and carries on.
    again = await _login(stack, phone.username)
    assert again.status_code == 200
    assert await _me(stack, again.json()["access_token"]) == 200


# --- password guessing -----------------------------------------------------------------------


async def _guess(stack: Stack, person: Person, times: int, *, source: str = STRANGER) -> None:
    for _ in range(times):
        wrong = await _login(stack, person.username, "not-the-password", source=source)
        assert wrong.status_code == 401, wrong.text
        assert wrong.json()["error"] == "invalid_credentials"


async def test_a_stranger_cannot_lock_an_officer_out(stack: Stack) -> None:
    _behind_proxy(stack)
    officer = await sign_up(stack.client, "safety-on-duty", Role.SAFETY_OFFICER)
    await _guess(stack, officer, stack.settings.login_max_failures)

    refused = await _login(stack, officer.username, source=STRANGER)
    assert refused.status_code == 429
    assert refused.json()["error"] == "login_throttled"
    assert refused.headers["retry-after"] == str(stack.settings.login_delay_s)
    # Plain words for the person at the keyboard: which device, and what to do.
    korean = refused.json()["detail"].split(" / ")[0]
    assert korean.startswith("이 기기(인터넷 연결)에서 로그인 실패가 여러 번 있었습니다.")
    assert "주소" not in korean
    # The count is per connection address: the same office network is blocked too, so the
    # way out it names is another connection, not another device.
    assert "다른 인터넷 연결(예: 휴대폰 데이터)로는 바로 로그인할 수 있습니다" in korean
    assert "다른 기기" not in korean

    # The officer, from their own office, during the emergency:
    assert (await _login(stack, officer.username, source=OFFICE)).status_code == 200


async def test_delays_double_with_each_failure_up_to_the_cap(stack: Stack) -> None:
    _behind_proxy(stack)
    settings = stack.settings
    person = await sign_up(stack.client, "patient", Role.AUDITOR)
    await _guess(stack, person, settings.login_max_failures)
    settings.login_max_delay_s = 4 * settings.login_delay_s
    waits = []
    for _ in range(4):
        refused = await _login(stack, person.username, "not-the-password", source=STRANGER)
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        waits.append(wait)
        stack.clock.advance(wait)
        await _guess(stack, person, 1)
    base = settings.login_delay_s
    assert waits == [base, 2 * base, 4 * base, 4 * base]

    # After the wait, the right password works and the count starts again.
    stack.clock.advance(settings.login_max_delay_s)
    assert (await _login(stack, person.username, source=STRANGER)).status_code == 200
    await _guess(stack, person, settings.login_max_failures - 1)


async def test_unknown_usernames_are_throttled_and_cost_a_hash_like_known_ones(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _behind_proxy(stack)
    person = await sign_up(stack.client, "known-name", Role.AUDITOR)
    checked: list[str] = []
    verify = users_service._verify

    async def counting(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return await verify(password_hash, password)

    monkeypatch.setattr(users_service, "_verify", counting)
    for name in ("no-such-person", person.username):
        checked.clear()
        for _ in range(stack.settings.login_max_failures):
            wrong = await _login(stack, name, "not-the-password", source=STRANGER)
            assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_credentials")
        assert len(checked) == stack.settings.login_max_failures, name
        refused = await _login(stack, name, "not-the-password", source=STRANGER)
        assert (refused.status_code, refused.json()["error"]) == (429, "login_throttled")
        assert len(checked) == stack.settings.login_max_failures, "a refused try is not hashed"


async def test_one_source_trying_many_usernames_is_throttled(stack: Stack) -> None:
    _behind_proxy(stack)
    stack.settings.login_source_max_failures = 3
    officer = await sign_up(stack.client, "sprayed", Role.SAFETY_OFFICER)
    for n in range(stack.settings.login_source_max_failures):
        wrong = await _login(stack, f"guess-{n}", "not-the-password", source=STRANGER)
        assert wrong.status_code == 401
    refused = await _login(stack, officer.username, source=STRANGER)
    assert (refused.status_code, refused.json()["error"]) == (429, "login_throttled")
    assert (await _login(stack, officer.username, source=OFFICE)).status_code == 200


async def test_an_ipv6_client_counts_as_its_block(stack: Stack) -> None:
    _behind_proxy(stack)
    person = await sign_up(stack.client, "v6-target", Role.AUDITOR)
    for n in range(stack.settings.login_max_failures):
        wrong = await _login(stack, person.username, "wrong-password", source=f"2001:db8::{n + 1}")
        assert wrong.status_code == 401
    refused = await _login(stack, person.username, source="2001:db8::ffff")
    assert refused.status_code == 429
    assert (await _login(stack, person.username, source="2001:db8:1::1")).status_code == 200


async def test_failure_counts_are_forgotten_and_purged_after_a_day(
    stack: Stack,
) -> None:
    _behind_proxy(stack)
    person = await sign_up(stack.client, "forgotten", Role.AUDITOR)
    await _guess(stack, person, stack.settings.login_max_failures)

    async def rows() -> int:
        async with stack.app.state.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(LoginThrottle)) or 0)

    assert await rows() == 2  # the source at that name, and the source at every name
    stack.clock.advance(3600)
    await stack.app.state.sweeper.purge_once()
    assert await rows() == 2
    stack.clock.advance(86400)
    await stack.app.state.sweeper.purge_once()
    assert await rows() == 0
