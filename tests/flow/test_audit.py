"""The audit log: every change is recorded, the chain detects an altered row, appends from
many transactions at once still form one chain."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from sqlalchemy import delete, update

from gateway.audit import service as audit
from gateway.audit.models import AuditEvent
from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _create, recording
from tests.flow.test_roles import PASSWORD, _login, _people, sign_up

__all__ = ["recording"]


async def _actions(stack: Stack) -> list[dict[str, object]]:
    response = await stack.client.get("/api/v1/audit-events", params={"limit": 500})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def test_changes_logins_and_refusals_are_recorded(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    auditor, head = people[Role.AUDITOR], people[Role.VILLAGE_HEAD]
    await _login(stack, auditor.username, "wrong-password-here")
    _, body = await _create(stack, recording, all_villages="true")
    await stack.client.post(f"/api/v1/broadcasts/{body['id']}/cancel")
    await stack.client.post("/api/v1/users/999999/suspend", json={"reason": "x"})
    await stack.client.get("/api/v1/users", headers={"X-Access-Reason": quote("정기 점검")})

    rows = await _actions(stack)
    seen = [(r["action"], r["outcome"]) for r in rows]
    for expected in [
        ("create_user", "ok"),
        ("login", "ok"),
        ("login_failed", "denied"),
        ("create_broadcast", "ok"),
        ("cancel_broadcast", "ok"),
        ("suspend_user", "rejected"),
        ("list_users", "ok"),
    ]:
        assert expected in seen, (expected, seen)
    failed = next(r for r in rows if r["action"] == "login_failed")
    assert failed["actor"] == auditor.username
    assert failed["details"] == {"why": "wrong_password"}
    cancel = next(r for r in rows if r["action"] == "cancel_broadcast")
    assert cancel["target"] == f"broadcast_id={body['id']}"
    listing = next(r for r in rows if r["action"] == "list_users")
    assert listing["reason"] == "정기 점검"
    assert PASSWORD not in str(rows), "no password ever reaches the audit log"

    # The auditor reads it; a village head may not.
    readable = await stack.client.get("/api/v1/audit-events", headers=auditor.headers)
    assert readable.status_code == 200
    refused = await stack.client.get("/api/v1/audit-events", headers=head.headers)
    assert refused.status_code == 403
    verified = await stack.client.get("/api/v1/audit-events/verify", headers=auditor.headers)
    assert verified.json()["ok"] is True
    # Each request is recorded after its response: the listing itself and the refusal since.
    assert verified.json()["rows"] == readable.json()["total"] + 2


async def test_rows_carry_the_address_a_trusted_proxy_vouches_for(stack: Stack) -> None:
    async def fail_login(forwarded_for: str) -> None:
        response = await stack.client.post(
            "/api/v1/auth/token",
            data={"username": "nobody-here", "password": "wrong-password-here"},
            headers={"Authorization": "", "X-Forwarded-For": forwarded_for},
        )
        assert response.status_code == 401

    # No proxy configured: the peer (this test's 127.0.0.1), whatever the header says.
    await fail_login("203.0.113.66")
    await stack.client.post(
        "/api/v1/users/999999/suspend",
        json={"reason": "x"},
        headers={"X-Forwarded-For": "203.0.113.66"},
    )
    # Behind a trusted proxy: the address it appended, not what the client wrote before it.
    trusting = stack.settings.model_copy(update={"trusted_proxies": "127.0.0.0/8"})
    stack.app.state.settings = trusting
    await fail_login("203.0.113.66, 198.51.100.7")

    rows = await _actions(stack)
    assert [
        (r["action"], r["source"]) for r in rows if r["action"] in ("login_failed", "suspend_user")
    ] == [
        ("login_failed", "127.0.0.1"),
        ("suspend_user", "127.0.0.1"),
        ("login_failed", "198.51.100.7"),
    ]


async def test_the_bootstrap_token_is_named_wherever_it_acts(stack: Stack) -> None:
    await stack.client.post("/api/v1/users/999999/suspend", json={"reason": "x"})
    await stack.client.get("/api/v1/users")
    rows = await _actions(stack)
    acted = [r for r in rows if r["action"] in ("suspend_user", "list_users")]
    assert [(r["actor"], r["role"]) for r in acted] == [("bootstrap-token", "city_admin")] * 2
    assert not [r for r in rows if r["actor"] == "anonymous"], rows


def _stranger(n: int) -> dict[str, str]:
    return {
        "Authorization": "",
        "X-Forwarded-For": "203.0.113.66",
        "X-Access-Reason": quote(f"made-up reason {n}"),
    }


async def test_strangers_cannot_fill_the_log_with_rows_of_their_own(stack: Stack) -> None:
    """Without a valid credential: a logout leaves nothing; a refusal or failed login leaves a
    row in the gateway's words only, and a source gets a bounded number of them a minute."""
    budget = stack.settings.audit_anonymous_per_minute
    before = len(await _actions(stack))
    for n in range(50):
        response = await stack.client.post(
            "/api/v1/auth/logout", json={"refresh_token": f"forged-token-{n}"}, headers=_stranger(n)
        )
        assert response.status_code == 204
    assert len(await _actions(stack)) == before + 1, "only the reading of the log itself"

    for n in range(budget + 30):
        await stack.client.post(f"/api/v1/broadcasts/chosen-text-{n}/cancel", headers=_stranger(n))
    stack.clock.advance(60)
    for n in range(budget + 30):
        await stack.client.post(
            "/api/v1/auth/token",
            data={"username": f"chosen text {n}", "password": "wrong-password-here"},
            headers=_stranger(n),
        )
    rows = (await _actions(stack))[before:]
    refused = [r for r in rows if r["action"] == "cancel_broadcast"]
    failed = [r for r in rows if r["action"] == "login_failed"]
    assert len(refused) == budget
    assert len(failed) == budget
    assert {(r["actor"], r["target"], r["reason"]) for r in refused} == {("anonymous", None, None)}
    assert {(r["actor"], r["reason"]) for r in failed} == {("unknown-account", None)}
    assert "chosen" not in str(rows)
    assert "made-up" not in str(rows)
    assert {r["source"] for r in refused + failed} == {"127.0.0.1"}

    # A logout with a refresh token that worked is recorded, in its owner's name.
    person = await sign_up(stack, "logout-person", Role.AUDITOR)
    out = await stack.client.post(
        "/api/v1/auth/logout", json={"refresh_token": person.refresh}, headers=_stranger(0)
    )
    assert out.status_code == 204
    logout = [r for r in await _actions(stack) if r["action"] == "logout"]
    assert [(r["actor"], r["reason"]) for r in logout] == [
        (f"logout-person#{person.user_id}", None)
    ]


async def _fill(stack: Stack, count: int) -> None:
    async with stack.app.state.sessions() as session:
        for n in range(count):
            await audit.append(
                session, at=stack.clock.now(), actor=f"tester{n}", action="test", outcome="ok"
            )
        await session.commit()


async def _verify(stack: Stack) -> audit.Verification:
    async with stack.app.state.sessions() as session:
        return await audit.verify(session)


async def test_an_altered_row_is_found(stack: Stack) -> None:
    await _fill(stack, 10)
    assert (await _verify(stack)).ok
    async with stack.app.state.sessions() as session:
        await session.execute(
            update(AuditEvent).where(AuditEvent.seq == 4).values(actor="someone-else")
        )
        await session.commit()
    result = await _verify(stack)
    assert not result.ok
    assert result.first_bad_seq == 4
    assert result.problem is not None
    assert "hash" in result.problem


async def test_a_removed_row_and_a_cut_tail_are_found(stack: Stack) -> None:
    await _fill(stack, 10)
    async with stack.app.state.sessions() as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.seq == 6))
        await session.commit()
    result = await _verify(stack)
    assert (result.ok, result.first_bad_seq) == (False, 6)

    async with stack.app.state.sessions() as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.seq >= 6))
        await session.commit()
    result = await _verify(stack)
    assert (result.ok, result.first_bad_seq) == (False, 6)


async def test_concurrent_appends_form_one_chain(stack: Stack) -> None:
    async def one(n: int) -> None:
        for attempt in range(50):
            try:
                async with stack.app.state.sessions() as session:
                    await audit.append(
                        session, at=stack.clock.now(), actor=f"w{n}", action="test", outcome="ok"
                    )
                    await session.commit()
                return
            except Exception:  # SQLite: busy while another writer holds the lock
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("could not append")

    await asyncio.gather(*(one(n) for n in range(20)))
    result = await _verify(stack)
    assert result.ok, result
    assert result.rows >= 20


async def test_the_verify_command_finds_an_altered_row(stack: Stack) -> None:
    from typer.testing import CliRunner

    from maeul.cli import app

    await _fill(stack, 5)
    runner = CliRunner()
    args = ["audit", "verify", "--database-url", stack.settings.database_url]
    intact = await asyncio.to_thread(runner.invoke, app, args)
    assert intact.exit_code == 0, intact.output
    assert "변조 없음" in intact.output
    async with stack.app.state.sessions() as session:
        await session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(outcome="ok2"))
        await session.commit()
    altered = await asyncio.to_thread(runner.invoke, app, args)
    assert altered.exit_code == 1
    assert "3" in altered.output
