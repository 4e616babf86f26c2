"""Credentials and security events through the in-process gateway (real database, fake bus)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.bus import Incoming
from gateway.devicesec.dynsec import to_hash
from gateway.devicesec.models import SpeakerCredential
from gateway.devicesec.mosquitto import verify_password
from tests.flow.conftest import Stack
from tests.media import make_recording
from wire import contract
from wire.contract import AckStatus, RejectReason


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


async def _speaker_ids(stack: Stack) -> dict[str, int]:
    response = await stack.client.get("/api/v1/speakers", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {s["code"]: s["id"] for s in response.json()["items"]}


async def _issue(stack: Stack, speaker_id: int) -> dict[str, Any]:
    response = await stack.client.post(f"/api/v1/speakers/{speaker_id}/credentials")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def _stored_hash(stack: Stack, speaker_id: int) -> str:
    async with stack.app.state.sessions() as session:
        row = await session.get(SpeakerCredential, speaker_id)
    assert row is not None
    return row.password_hash


def _users(passwd: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in passwd.splitlines())


async def test_a_password_is_shown_once_stored_as_a_hash_and_rotated(stack: Stack) -> None:
    ids = await _speaker_ids(stack)
    speaker_id = ids["d01-v001-s1"]

    first = await _issue(stack, speaker_id)
    assert first["username"] == "d01-v001-s1"
    assert first["client_id"] == contract.speaker_client_id("d01-v001-s1")
    stored = await _stored_hash(stack, speaker_id)
    assert first["password"] not in stored
    assert verify_password(first["password"], stored)

    response = await stack.client.get("/api/v1/broker/passwd")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert _users(response.text) == {"d01-v001-s1": stored}  # speakers without one: absent
    assert first["password"] not in response.text

    dynamic = await stack.client.get("/api/v1/broker/dynamic-security")
    assert dynamic.status_code == 200
    assert dynamic.headers["cache-control"] == "no-store"
    assert first["password"] not in dynamic.text
    entry = next(c for c in dynamic.json()["clients"] if c["username"] == "d01-v001-s1")
    assert entry["clientid"] == first["client_id"]
    assert to_hash(entry) == stored

    second = await _issue(stack, speaker_id)
    assert second["password"] != first["password"]
    rotated = _users((await stack.client.get("/api/v1/broker/passwd")).text)["d01-v001-s1"]
    assert rotated == await _stored_hash(stack, speaker_id)
    assert verify_password(second["password"], rotated)
    assert not verify_password(first["password"], rotated), "the old password no longer works"


async def test_the_acl_names_each_speaker_with_its_own_groups(stack: Stack) -> None:
    ids = await _speaker_ids(stack)
    for code in ("d01-v001-s1", "d02-v002-s2"):
        await _issue(stack, ids[code])

    response = await stack.client.get("/api/v1/broker/acl")
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    city = stack.settings.city_code
    start = lines.index("user d02-v002-s2")
    assert lines[start : start + 7] == [
        "user d02-v002-s2",
        f"topic read {contract.command_topic_all(city)}",
        f"topic read {contract.command_topic_district(city, 'd02')}",
        f"topic read {contract.command_topic_village(city, 'd02-v002')}",
        *(f"topic read {t}" for t in contract.live_subscriptions(city, "d02", "d02-v002")),
    ]
    assert "user d01-v001-s1" in lines
    assert "user d01-v001-s2" not in lines  # no password, no access
    assert f"pattern write {contract.ack_topic(city, 'x')[:-1]}%u" in lines


async def test_credentials_for_a_missing_speaker_are_404(stack: Stack) -> None:
    response = await stack.client.post("/api/v1/speakers/999999/credentials")
    assert response.status_code == 404
    assert response.json()["error"] == "speaker_not_found"


async def test_broker_accounts_share_the_files_but_never_a_name(stack: Stack) -> None:
    created = await stack.client.post(
        "/api/v1/broker/accounts", json={"username": "healthcheck", "role": "monitor"}
    )
    assert created.status_code == 201, created.text
    password = created.json()["password"]
    assert password

    listed = (await stack.client.get("/api/v1/broker/accounts")).json()
    assert listed == [
        {
            "username": "healthcheck",
            "role": "monitor",
            "client_id": "healthcheck",
            "issued_at": created.json()["issued_at"],
        }
    ]
    users = _users((await stack.client.get("/api/v1/broker/passwd")).text)
    assert verify_password(password, users["healthcheck"])
    acl = (await stack.client.get("/api/v1/broker/acl")).text
    assert "user healthcheck\ntopic read $SYS/#\n" in acl

    chosen = await stack.client.post(
        "/api/v1/broker/accounts",
        json={"username": "gateway", "role": "gateway", "password": "g" * 32},
    )
    assert chosen.status_code == 201
    assert chosen.json()["password"] is None  # the caller's own password is never echoed
    assert verify_password(
        "g" * 32, _users((await stack.client.get("/api/v1/broker/passwd")).text)["gateway"]
    )

    short = await stack.client.post(
        "/api/v1/broker/accounts",
        json={"username": "weak", "role": "gateway", "password": "short"},
    )
    assert short.status_code == 422
    taken = await stack.client.post(
        "/api/v1/broker/accounts", json={"username": "d01-v001-s1", "role": "monitor"}
    )
    assert taken.status_code == 409
    assert taken.json()["error"] == "username_taken"

    villages = (await stack.client.get("/api/v1/villages", params={"limit": 1})).json()["items"]
    clash = await stack.client.post(
        "/api/v1/speakers", json={"code": "healthcheck", "village_id": villages[0]["id"]}
    )
    assert clash.status_code == 201, clash.text
    refused = await stack.client.post(f"/api/v1/speakers/{clash.json()['id']}/credentials")
    assert refused.status_code == 409
    assert refused.json()["error"] == "username_taken"

    assert (await stack.client.delete("/api/v1/broker/accounts/healthcheck")).status_code == 204
    gone = await stack.client.delete("/api/v1/broker/accounts/healthcheck")
    assert gone.status_code == 404
    assert gone.json()["error"] == "account_not_found"


def _ack_message(
    stack: Stack, topic_speaker: str, *, speaker: str | None = None, **fields: Any
) -> Incoming:
    ack = contract.Ack(
        command_id=fields.pop("command_id", contract.new_id()),
        broadcast_id=fields.pop("broadcast_id", contract.new_id()),
        speaker=speaker or topic_speaker,
        at_ms=contract.now_ms(),
        **fields,
    )
    return Incoming(
        contract.ack_topic(stack.settings.city_code, topic_speaker), contract.encode_ack(ack)
    )


async def _events(stack: Stack, **params: Any) -> dict[str, Any]:
    response = await stack.client.get("/api/v1/security-events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_refusals_and_untrusted_acks_are_recorded_once(
    stack: Stack, recording: bytes
) -> None:
    created = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert created.status_code == 201, created.text
    await stack.publish_pending()
    real = contract.decode_command(stack.bus.published[0][1])
    city = stack.settings.city_code
    rejected = AckStatus.REJECTED

    forged = _ack_message(stack, "d01-v001-s1", status=rejected, reason="bad_signature")
    batch = [
        forged,
        forged,  # the same report twice (a QoS 1 duplicate) is one event
        _ack_message(
            stack,
            "d01-v001-s2",
            status=rejected,
            reason=RejectReason.EXPIRED,
            command_id=real.id,
            broadcast_id=real.broadcast_id,
        ),
        _ack_message(stack, "d01-v002-s1", status=rejected, reason=RejectReason.OUT_OF_SCOPE),
        _ack_message(stack, "d02-v002-s2", status=rejected, reason="unsupported_codec"),
        _ack_message(stack, "d01-v003-s1", status=AckStatus.RECEIVED),
        _ack_message(stack, "ghost-1", status=AckStatus.PLAYED),
        Incoming(contract.ack_topic(city, "d01-v003-s2"), b'{"status": "played"}'),
        _ack_message(stack, "d02-v001-s1", speaker="d01-v001-s1", status=AckStatus.FAILED),
        Incoming(contract.presence_topic(city, "ghost-2"), b"{}"),
    ]
    for message in batch:
        stack.bus.incoming.put_nowait(message)
    await stack.deliver()

    page = await _events(stack)
    assert page["total"] == 6
    found = {(e["kind"], e["speaker_code"], e["reason"]) for e in page["items"]}
    assert found == {
        ("command_rejected", "d01-v001-s1", "bad_signature"),
        ("command_rejected", "d01-v001-s2", "expired"),
        ("command_rejected", "d01-v002-s1", "out_of_scope"),
        ("unknown_speaker_ack", "ghost-1", "unknown_speaker"),
        ("bad_ack", "d01-v003-s2", "malformed"),
        ("bad_ack", "d02-v001-s1", "speaker_mismatch"),
    }
    expired = next(e for e in page["items"] if e["reason"] == "expired")
    assert (expired["command_id"], expired["broadcast_id"]) == (real.id, real.broadcast_id)
    assert expired["details"]["status"] == "rejected"
    mismatch = next(e for e in page["items"] if e["reason"] == "speaker_mismatch")
    assert mismatch["details"]["claimed_speaker"] == "d01-v001-s1"
    malformed = next(e for e in page["items"] if e["reason"] == "malformed")
    assert malformed["command_id"] is None

    # A batch the intake must retry is examined again without recording anything twice.
    await stack.app.state.intake.process(batch)
    assert (await _events(stack))["total"] == 6
    assert stack.app.state.intake.counts["security_events"] == 6
    metrics = (await stack.client.get("/metrics")).text
    assert 'maeul_intake_total{kind="security_events"} 6' in metrics

    rejected_only = await _events(stack, kind="command_rejected")
    assert rejected_only["total"] == 3
    by_speaker = await _events(stack, speaker="ghost-1")
    assert [e["kind"] for e in by_speaker["items"]] == ["unknown_speaker_ack"]
    later = (stack.clock.now() + timedelta(seconds=1)).isoformat()
    assert (await _events(stack, since=later))["total"] == 0
    first_page = await _events(stack, limit=4)
    second_page = await _events(stack, limit=4, offset=4)
    assert len(first_page["items"]) == 4
    assert len(second_page["items"]) == 2
    ids = [e["id"] for e in first_page["items"] + second_page["items"]]
    assert len(set(ids)) == 6
    naive = await stack.client.get("/api/v1/security-events", params={"since": "2024-01-01T00:00"})
    assert naive.status_code == 422


async def test_a_batch_of_nothing_but_garbage_is_still_recorded(stack: Stack) -> None:
    city = stack.settings.city_code
    stack.bus.incoming.put_nowait(Incoming(contract.ack_topic(city, "d01-v001-s1"), b"\x00\xff"))
    await stack.deliver()

    page = await _events(stack, kind="bad_ack")
    assert [(e["speaker_code"], e["reason"]) for e in page["items"]] == [
        ("d01-v001-s1", "malformed")
    ]
