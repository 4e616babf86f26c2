"""A clustered broker's questions (EMQX's http authenticator and authorizer) through the
in-process gateway: the bindings of Mosquitto's files, decided per connect, publish and
subscribe from the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.devicesec.broker_hooks import HEADER, STAMP_ATTRIBUTE
from gateway.keyfiles import load_secret
from gateway.settings import Settings
from tests.flow.conftest import TOKEN, Stack
from tests.support.people import bearer
from wire import contract

AUTHN = "/api/v1/broker/hooks/emqx/authenticate"
AUTHZ = "/api/v1/broker/hooks/emqx/authorize"
A, B = "d01-v001-s1", "d02-v002-s2"  # different districts and villages of the tiny preset


def _secret(stack: Stack) -> str:
    return load_secret(stack.settings, "broker_hook_secret").decode()


async def _ask(stack: Stack, path: str, body: dict[str, str]) -> dict[str, Any]:
    response = await stack.client.post(path, json=body, headers={HEADER: _secret(stack)})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _connect(stack: Stack, username: str, password: str, client_id: str) -> dict[str, Any]:
    body = {"username": username, "password": password, "clientid": client_id}
    return await _ask(stack, AUTHN, body)


async def _may(
    stack: Stack, username: str, stamp: str, action: str, topic: str, *, client_id: str = ""
) -> bool:
    body = {
        "username": username,
        "clientid": client_id or contract.speaker_client_id(username),
        "stamp": stamp,
        "action": action,
        "topic": topic,
    }
    result = (await _ask(stack, AUTHZ, body))["result"]
    assert result in ("allow", "deny")
    return bool(result == "allow")


async def _speaker_id(stack: Stack, code: str) -> int:
    response = await stack.client.get("/api/v1/speakers", params={"limit": 1000})
    found: int = next(s["id"] for s in response.json()["items"] if s["code"] == code)
    return found


async def _issue(stack: Stack, code: str) -> str:
    response = await stack.client.post(
        f"/api/v1/speakers/{await _speaker_id(stack, code)}/credentials"
    )
    assert response.status_code == 201, response.text
    password: str = response.json()["password"]
    return password


async def _stamp(stack: Stack, code: str, password: str) -> str:
    answer = await _connect(stack, code, password, contract.speaker_client_id(code))
    assert answer["result"] == "allow", answer
    stamp: str = answer["client_attrs"][STAMP_ATTRIBUTE]
    return stamp


async def _audit_rows(stack: Stack) -> int:
    async with stack.app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_a_speaker_connects_only_with_its_password_and_its_own_client_id(
    stack: Stack,
) -> None:
    password = await _issue(stack, A)
    await _issue(stack, B)
    audited = await _audit_rows(stack)

    own = await _connect(stack, A, password, contract.speaker_client_id(A))
    assert own["result"] == "allow"
    assert own["is_superuser"] is False
    assert own["client_attrs"][STAMP_ATTRIBUTE]

    for client_id in (contract.speaker_client_id(B), "anything", "", "maeul-gw-1"):
        answer = await _connect(stack, A, password, client_id)
        assert answer == {"result": "deny", "is_superuser": False}, client_id
    assert (await _connect(stack, A, password + "x", contract.speaker_client_id(A)))[
        "result"
    ] == "deny"
    assert (await _connect(stack, A, "", contract.speaker_client_id(A)))["result"] == "deny"
    unknown = await _connect(stack, "d01-v001-s2", password, "spk-d01-v001-s2")  # no password
    assert unknown["result"] == "deny"
    assert (await _connect(stack, "nobody", password, "spk-nobody"))["result"] == "deny"
    assert await _audit_rows(stack) == audited, "the broker's questions are not audited"


async def test_a_speaker_reads_and_writes_only_its_own_topics(stack: Stack) -> None:
    stamp = await _stamp(stack, A, await _issue(stack, A))
    await _issue(stack, B)
    city = stack.settings.city_code

    allowed = [
        ("publish", contract.ack_topic(city, A)),
        ("publish", contract.presence_topic(city, A)),
        ("subscribe", contract.command_topic_speaker(city, A)),
        *(("subscribe", t) for t in contract.speaker_subscriptions(city, "d01", "d01-v001", A)),
        *(("subscribe", t) for t in contract.live_subscriptions(city, "d01", "d01-v001")),
    ]
    denied = [
        ("publish", contract.ack_topic(city, B)),  # speaking for another speaker
        ("publish", contract.presence_topic(city, B)),
        ("publish", contract.command_topic_speaker(city, A)),  # commands come from gateways
        ("publish", contract.command_topic_all(city)),
        ("publish", f"{contract.TOPIC_ROOT}/{city}/ack/+"),
        ("subscribe", contract.command_topic_speaker(city, B)),
        ("subscribe", contract.command_topic_village(city, "d02-v002")),  # another village
        ("subscribe", contract.command_topic_district(city, "d02")),
        ("subscribe", contract.live_topic_village(city, "d02-v002")),
        ("subscribe", contract.ack_topic(city, A)),  # its own acks are written, not read
        ("subscribe", f"{contract.TOPIC_ROOT}/{city}/cmd/#"),
        ("subscribe", f"{contract.TOPIC_ROOT}/{city}/cmd/village/+"),
        ("subscribe", f"$share/g/{contract.command_topic_village(city, 'd02-v002')}"),
        ("subscribe", "#"),
        ("subscribe", "$SYS/#"),
        ("subscribe", contract.command_topic_speaker("othercity", A)),
        ("retain", contract.ack_topic(city, A)),  # no such action
    ]
    for action, topic in allowed:
        assert await _may(stack, A, stamp, action, topic), (action, topic)
    for action, topic in denied:
        assert not await _may(stack, A, stamp, action, topic), (action, topic)
    # The same question from a client id that is not the speaker's is denied too.
    own_ack = contract.ack_topic(city, A)
    assert not await _may(stack, A, stamp, "publish", own_ack, client_id="spk-" + B)


async def test_a_revoked_speaker_is_denied_at_once(stack: Stack) -> None:
    city = stack.settings.city_code
    old = await _issue(stack, A)
    old_stamp = await _stamp(stack, A, old)
    ack = contract.ack_topic(city, A)
    assert await _may(stack, A, old_stamp, "publish", ack)

    new = await _issue(stack, A)  # a new password: the old one and its connection stop
    assert (await _connect(stack, A, old, contract.speaker_client_id(A)))["result"] == "deny"
    assert not await _may(stack, A, old_stamp, "publish", ack)
    new_stamp = await _stamp(stack, A, new)
    assert await _may(stack, A, new_stamp, "publish", ack)

    response = await stack.client.delete(f"/api/v1/speakers/{await _speaker_id(stack, A)}")
    assert response.status_code == 204, response.text
    assert (await _connect(stack, A, new, contract.speaker_client_id(A)))["result"] == "deny"
    assert not await _may(stack, A, new_stamp, "publish", ack)
    assert not await _may(stack, A, new_stamp, "subscribe", contract.command_topic_all(city))


async def test_gateway_and_monitor_accounts_keep_to_their_ids_and_topics(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    city = stack.settings.city_code
    accounts = {}
    for name, role in (("gw-east", "gateway"), ("healthcheck", "monitor")):
        response = await stack.client.post(
            "/api/v1/broker/accounts", json={"username": name, "role": role}
        )
        assert response.status_code == 201, response.text
        accounts[name] = response.json()["password"]

    gateway_id = f"{stack.settings.mqtt_client_prefix}-r1"
    gateway = await _connect(stack, "gw-east", accounts["gw-east"], gateway_id)
    assert gateway["result"] == "allow"
    assert gateway["is_superuser"] is False
    spoofed = await _connect(stack, "gw-east", accounts["gw-east"], contract.speaker_client_id(A))
    assert spoofed["result"] == "deny", "a speaker's session is its own"
    monitor_as_gateway = await _connect(stack, "healthcheck", accounts["healthcheck"], gateway_id)
    assert monitor_as_gateway["result"] == "deny", "gateway client ids are the gateways'"
    elsewhere = await _connect(stack, "healthcheck", accounts["healthcheck"], "probe-1")
    assert elsewhere["result"] == "deny", "a monitor is bound to its own client id"
    as_speaker = await _connect(
        stack, "healthcheck", accounts["healthcheck"], contract.speaker_client_id(A)
    )
    assert as_speaker["result"] == "deny", "a speaker's session is its own"
    monitor = await _connect(stack, "healthcheck", accounts["healthcheck"], "healthcheck")
    assert monitor["result"] == "allow"

    g, m = gateway["client_attrs"][STAMP_ATTRIBUTE], monitor["client_attrs"][STAMP_ATTRIBUTE]
    assert await _may(
        stack, "gw-east", g, "subscribe", contract.ack_subscription(), client_id=gateway_id
    )
    assert await _may(
        stack,
        "gw-east",
        g,
        "publish",
        contract.command_topic_village(city, "d02-v002"),
        client_id=gateway_id,
    )
    assert not await _may(stack, "gw-east", g, "subscribe", "$SYS/#", client_id=gateway_id)
    assert not await _may(stack, "gw-east", g, "subscribe", "#", client_id=gateway_id)
    assert await _may(
        stack, "healthcheck", m, "subscribe", "$SYS/broker/uptime", client_id="healthcheck"
    )
    assert not await _may(
        stack, "healthcheck", m, "subscribe", f"{contract.TOPIC_ROOT}/#", client_id="healthcheck"
    )
    assert not await _may(
        stack,
        "healthcheck",
        m,
        "publish",
        contract.command_topic_all(city),
        client_id="healthcheck",
    )

    deleted = await stack.client.delete("/api/v1/broker/accounts/gw-east")
    assert deleted.status_code == 204
    assert not await _may(
        stack, "gw-east", g, "subscribe", contract.ack_subscription(), client_id=gateway_id
    )

    # The gateway's own user, from its MQTT URL, is a gateway too.
    secret = "own-" + "p" * 30
    monkeypatch.setattr(stack.settings, "mqtt_url", f"mqtt://gateway:{secret}@broker:1883")

    own = await _connect(stack, "gateway", secret, gateway_id)
    assert own["result"] == "allow"
    assert (await _connect(stack, "gateway", secret + "x", gateway_id))["result"] == "deny"
    assert (await _connect(stack, "gateway", secret, "spk-" + A))["result"] == "deny"
    stamp = own["client_attrs"][STAMP_ATTRIBUTE]
    command = contract.command_topic_all(stack.settings.city_code)
    assert await _may(stack, "gateway", stamp, "publish", command, client_id=gateway_id)

    monkeypatch.setattr(stack.settings, "mqtt_url", f"mqtt://gateway:{secret}2@broker:1883")
    assert not await _may(stack, "gateway", stamp, "publish", command, client_id=gateway_id)


def _bare_app(tmp_path: Path, **settings: Any) -> httpx.AsyncClient:
    """The app without its lifespan: a request refused before the database is ever reached."""
    app = create_app(Settings(database_url="sqlite+aiosqlite://", data_dir=tmp_path, **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_only_the_broker_may_ask(tmp_path: Path) -> None:
    body = {"username": A, "password": "x", "clientid": contract.speaker_client_id(A)}
    refused = [
        ({}, 401, "broker_hook_secret_missing"),
        ({HEADER: ""}, 401, "broker_hook_secret_missing"),
        (bearer(TOKEN), 401, "broker_hook_secret_missing"),
        ({HEADER: "not-the-secret-" + "x" * 40}, 403, "broker_hook_secret_wrong"),
    ]
    async with _bare_app(tmp_path, environment="test", api_token=TOKEN) as client:
        for headers, status, code in refused:
            for path in (AUTHN, AUTHZ):
                response = await client.post(path, json=body, headers=headers)
                assert response.status_code == status, response.text
                assert response.json()["error"] == code
                assert " / " in response.json()["detail"]  # Korean / English


async def test_without_a_usable_secret_the_hooks_refuse(tmp_path: Path) -> None:
    strong = "prod-" + "0123456789abcdef" * 2
    production = {
        "environment": "production",
        "background_workers": False,
        **dict.fromkeys(
            ("api_token", "jwt_secret", "key_encryption_key", "audio_url_key", "phone_key"),
            strong,
        ),
    }
    unusable = [
        production,  # none given in production: nothing is made up
        {"environment": "test", "broker_hook_secret": "short"},  # too weak
    ]
    for settings in unusable:
        async with _bare_app(tmp_path, **settings) as client:
            response = await client.post(AUTHN, json={}, headers={HEADER: "x" * 43})
        assert response.status_code == 503, settings
        assert response.json()["error"] == "broker_hooks_unconfigured"


def test_the_hooks_are_internal(tmp_path: Path) -> None:
    app = create_app(Settings(environment="test", database_url="sqlite+aiosqlite://"))
    assert not [path for path in app.openapi()["paths"] if "/broker/hooks" in path]
