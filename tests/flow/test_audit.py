"""The audit log: every change is recorded, the chain detects an altered row, appends from
many transactions at once still form one chain."""

from __future__ import annotations

import asyncio
import json
import stat
from urllib.parse import quote

from sqlalchemy import delete, select, update

from gateway.app import create_app
from gateway.audit import checkpoints as signed
from gateway.audit import service as audit
from gateway.audit.budget import AnonymousBudget
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.models import AuditEvent, AuditHead
from gateway.auth import Role
from gateway.bus import FakeBus
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _create, recording
from tests.flow.test_roles import _people
from tests.support.people import PASSWORD, log_in, sign_up

__all__ = ["recording"]


async def _actions(stack: Stack) -> list[dict[str, object]]:
    response = await stack.client.get("/api/v1/audit-events", params={"limit": 500})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def test_changes_logins_and_refusals_are_recorded(stack: Stack, recording: bytes) -> None:
    people = await _people(stack)
    auditor, head = people[Role.AUDITOR], people[Role.VILLAGE_HEAD]
    await log_in(stack.client, auditor.username, "wrong-password-here")
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
        response = await log_in(
            stack.client, "nobody-here", "wrong-password-here", forwarded_for=forwarded_for
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
    budget = 3  # small, so that going past it costs few password checks
    stack.app.state.audit_budget = AnonymousBudget(budget)
    before = len(await _actions(stack))
    for n in range(50):
        response = await stack.client.post(
            "/api/v1/auth/logout", json={"refresh_token": f"forged-token-{n}"}, headers=_stranger(n)
        )
        assert response.status_code == 204
    assert len(await _actions(stack)) == before + 1, "only the reading of the log itself"

    for n in range(budget + 5):
        await stack.client.post(f"/api/v1/broadcasts/chosen-text-{n}/cancel", headers=_stranger(n))
    stack.clock.advance(60)
    for n in range(budget + 5):
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
    person = await sign_up(stack.client, "logout-person", Role.AUDITOR)
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


async def test_the_first_rows_at_once_both_join_the_chain(stack: Stack) -> None:
    """Two requests finishing at once on a new database each write the chain's first row:
    neither is lost to the other's making the chain's head."""
    async with stack.app.state.sessions() as session:
        assert await session.get(AuditHead, 1) is None, "a new chain"

    async def one(n: int) -> None:
        async with stack.app.state.sessions() as session:
            await audit.append(
                session, at=stack.clock.now(), actor=f"w{n}", action="test", outcome="ok"
            )
            await session.commit()

    await asyncio.gather(one(1), one(2))
    result = await _verify(stack)
    assert (result.ok, result.rows) == (True, 2), result


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


async def test_the_verify_command_takes_plain_database_urls(stack: Stack) -> None:
    from typer.testing import CliRunner

    from maeul.cli import app

    await _fill(stack, 2)
    runner = CliRunner()
    plain = stack.settings.database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    assert plain.startswith(("sqlite:///", "postgresql://"))
    args = ["audit", "verify", "--database-url", plain]
    intact = await asyncio.to_thread(runner.invoke, app, args)
    assert intact.exit_code == 0, intact.output
    assert "변조 없음" in intact.output

    other = await asyncio.to_thread(
        runner.invoke, app, ["audit", "verify", "--database-url", "mysql://host/db"]
    )
    assert other.exit_code == 2, other.output
    assert isinstance(other.exception, SystemExit), other.exception
    assert "Traceback" not in other.output
    assert "sqlite:///" in other.output
    assert "postgresql://" in other.output
    assert len(other.output.strip().splitlines()) == 1


async def _reseal(stack: Stack, *, actor_of: int | None = None, drop_last: bool = False) -> None:
    """What someone who can write the database does: change rows, then seal the chain again."""
    async with stack.app.state.sessions() as session:
        rows = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        if drop_last:
            await session.delete(rows.pop())
        prev = audit.GENESIS
        for row in rows:
            if row.seq == actor_of:
                row.actor = "someone-else"
            row.prev_hash = prev
            row.hash = audit.seal(prev, audit._fields(row))
            prev = row.hash
        await session.execute(update(AuditHead).values(seq=rows[-1].seq, hash=prev))
        await session.commit()


async def test_a_resealed_chain_fails_its_signed_checkpoints(stack: Stack) -> None:
    from typer.testing import CliRunner

    from maeul.cli import app

    writer = Checkpointer(stack.app.state.sessions, stack.settings, stack.clock)
    await _fill(stack, 3)
    assert await writer.write() is not None
    await _fill(stack, 3)
    last = await writer.write()
    assert last is not None
    assert (last.seq, last.count) == (6, 6)
    assert await writer.write() is None, "an unchanged end is not signed again"
    path = stack.settings.checkpoint_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    key = (await stack.client.get("/api/v1/audit-events/checkpoint-key")).json()["public_key"]
    runner = CliRunner()
    args = ["audit", "verify", "--database-url", stack.settings.database_url]
    args += ["--checkpoints", str(path), "--public-key", key]
    intact = await asyncio.to_thread(runner.invoke, app, args)
    assert intact.exit_code == 0, intact.output
    assert "2 checkpoint(s) matched" in intact.output

    # An actor altered and the hashes computed again: the chain alone looks intact...
    await _reseal(stack, actor_of=5)
    assert (await _verify(stack)).ok
    # ...but not against the checkpoints: the rows since the last one that still matches.
    anchors = signed.read_file(path, signed.parse_public_key(key)).valid
    async with stack.app.state.sessions() as session:
        result = await audit.verify(session, checkpoints=anchors)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem is not None
    assert "rewritten" in result.problem

    # The last row deleted as well, and sealed again: shorter than a checkpoint.
    await _reseal(stack, drop_last=True)
    assert (await _verify(stack)).ok
    async with stack.app.state.sessions() as session:
        result = await audit.verify(session, checkpoints=anchors[1:])
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert result.problem is not None
    assert "removed" in result.problem
    api = (await stack.client.get("/api/v1/audit-events/verify")).json()
    assert api["ok"] is False
    cli = await asyncio.to_thread(runner.invoke, app, args)
    assert cli.exit_code == 1, cli.output

    # A checkpoint line forged without the key is refused, not trusted.
    forged = json.loads(path.read_text().splitlines()[-1]) | {"seq": 5, "count": 5}
    path.write_text(path.read_text() + json.dumps(forged) + "\n")
    assert signed.read_file(path, signed.parse_public_key(key)).forged == 1
    refused = await asyncio.to_thread(runner.invoke, app, args)
    assert refused.exit_code == 1, refused.output
    assert "signature" in refused.output


async def test_a_replica_signs_the_chains_end_when_it_stops(stack: Stack) -> None:
    """A replica with the background workers signs the end it leaves behind as it stops (the
    flow stack runs without them, so a second app is started here)."""
    settings = stack.settings.model_copy(
        update={"background_workers": True, "shutdown_drain_s": 0, "audit_checkpoint_s": 3600}
    )
    await _fill(stack, 2)
    replica = create_app(settings, bus=FakeBus(), clock=stack.clock)
    async with replica.router.lifespan_context(replica):
        await _fill(stack, 3)
    key = signed.signing_key(settings).public_key()
    ends = [(c.seq, c.count) for c in signed.read_file(settings.checkpoint_file, key).valid]
    assert ends[-1] == (5, 5), ends


async def test_without_its_key_a_replica_says_so(stack: Stack) -> None:
    stack.app.state.settings = stack.settings.model_copy(update={"environment": "production"})
    response = await stack.client.get("/api/v1/audit-events/checkpoint-key")
    assert response.status_code == 503
    assert response.json()["error"] == "checkpoint_key_missing"


async def test_creations_name_what_they_created_and_never_a_secret(stack: Stack) -> None:
    people = await _people(stack)
    officer = people[Role.DISTRICT_OFFICER]
    account = await stack.client.post(
        "/api/v1/broker/accounts", json={"username": "health-probe", "role": "monitor"}
    )
    assert account.status_code == 201, account.text
    key = await stack.client.post(
        f"/api/v1/users/{officer.user_id}/api-keys", json={"name": "siren-bridge"}
    )
    assert key.status_code == 201, key.text
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1})).json()["items"]
    speaker = await stack.client.post(
        "/api/v1/speakers", json={"code": "d01-v001-s99", "village_id": fleet[0]["village_id"]}
    )
    assert speaker.status_code == 201, speaker.text

    targets = {r["action"]: r["target"] for r in await _actions(stack) if r["outcome"] == "ok"}
    assert targets["create_broker_account"] == "role=monitor,username=health-probe"
    assert targets["create_user"].startswith("role=")
    assert f"username={officer.username}" in [
        r["target"].split(",")[1]
        for r in await _actions(stack)
        if r["action"] == "create_user" and r["target"]
    ]
    assert targets["create_api_key"] == f"name=siren-bridge,user_id={officer.user_id}"
    assert targets["create_speaker"] == "code=d01-v001-s99"
    rows = str(await _actions(stack))
    assert account.json()["password"] not in rows
    assert key.json()["key"] not in rows
