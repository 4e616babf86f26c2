"""What a speaker fetches over HTTP: resumable audio, and its provisioning (broker, session,
heartbeat, topics, key ring), as the AsyncAPI document promises."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from gateway.auth import Role
from gateway.broadcasts.models import AudioAsset
from gateway.broadcasts.ranges import ByteRange, Unsatisfiable, parse_range
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _ack, _commands, _create, _everyone_online, recording
from tests.flow.test_roles import _person
from tests.support.people import sign_up
from wire import contract
from wire.contract import AckStatus

__all__ = ["recording"]

BODY = secrets.token_bytes(10_000)
SHA = hashlib.sha256(BODY).hexdigest()


async def _store_audio(stack: Stack) -> str:
    async with stack.app.state.sessions() as session:
        session.add(
            AudioAsset(
                sha256=SHA,
                codec="opus",
                mime_type="audio/ogg",
                size=len(BODY),
                duration_ms=1000,
                data=BODY,
                created_at=datetime.now(UTC),
            )
        )
        await session.commit()
    # What a speaker's command carries: a link signed until the command expires.
    links = stack.app.state.audio_links
    return str(links.path(SHA, stack.clock.now() + timedelta(hours=1)))


def test_range_headers_are_parsed_as_rfc_9110_says() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == ByteRange(0, 9)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 99)
    assert parse_range("bytes=90-500", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-500", 100) == ByteRange(0, 99)
    for ignored in ("bytes=0-1,5-9", "items=0-9", "bytes=9-3", "bytes=-", "nonsense"):
        assert parse_range(ignored, 100) is None, ignored
    for unsatisfiable in ("bytes=100-", "bytes=500-600", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, 100)


async def test_audio_downloads_resume_with_byte_ranges(stack: Stack) -> None:
    url = await _store_audio(stack)
    anonymous = {"Authorization": ""}
    whole = await stack.client.get(url, headers=anonymous)
    assert whole.status_code == 200
    assert whole.content == BODY
    assert whole.headers["accept-ranges"] == "bytes"
    etag = whole.headers["etag"]

    part = await stack.client.get(url, headers={**anonymous, "Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == BODY[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(BODY)}"
    assert part.headers["content-length"] == "1000"
    # A download broken off at 4,000 bytes goes on from there.
    rest = await stack.client.get(url, headers={**anonymous, "Range": "bytes=4000-"})
    assert rest.status_code == 206
    assert BODY[:4000] + rest.content == BODY
    tail = await stack.client.get(url, headers={**anonymous, "Range": "bytes=-16"})
    assert tail.content == BODY[-16:]

    beyond = await stack.client.get(url, headers={**anonymous, "Range": f"bytes={len(BODY)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(BODY)}"
    assert beyond.json()["error"] == "range_not_satisfiable"

    # If-Range with another version: the whole body, not a piece of something else.
    stale = await stack.client.get(
        url, headers={**anonymous, "Range": "bytes=0-9", "If-Range": '"other"'}
    )
    assert stale.status_code == 200
    assert stale.content == BODY
    same = await stack.client.get(
        url, headers={**anonymous, "Range": "bytes=0-9", "If-Range": etag}
    )
    assert same.status_code == 206

    head = await stack.client.head(url, headers=anonymous)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(BODY))
    assert head.headers["accept-ranges"] == "bytes"
    assert (await stack.client.head(f"/api/v1/audio/{'0' * 64}")).status_code == 404


async def _speaker(stack: Stack, index: int = 0) -> dict[str, object]:
    listed = (await stack.client.get("/api/v1/speakers", params={"limit": 100})).json()["items"]
    speaker: dict[str, object] = sorted(listed, key=lambda s: s["code"])[index]
    return speaker


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_a_speaker_fetches_its_provisioning_with_its_broker_password(stack: Stack) -> None:
    speaker = await _speaker(stack)
    code = str(speaker["code"])
    issued = await stack.client.post(f"/api/v1/speakers/{speaker['id']}/credentials")
    assert issued.status_code == 201, issued.text
    password = issued.json()["password"]
    url = f"/api/v1/devices/{code}/provisioning"

    response = await stack.client.get(url, headers=_basic(code, password))
    assert response.status_code == 200, response.text
    body = contract.Provisioning.model_validate_json(response.content)
    settings = stack.settings
    identity = body.identity
    assert identity.speaker == code
    assert identity.city == settings.city_code
    assert body.client_id == contract.speaker_client_id(code)
    assert body.username == code
    assert body.broker_url == "mqtt://127.0.0.1:1883"  # the gateway's broker, no credentials
    assert body.heartbeat_s == settings.heartbeat_s
    assert body.offline_after_s == 3 * settings.heartbeat_s
    assert body.session_expiry_s == settings.speaker_session_expiry_s
    assert body.keepalive_s == settings.speaker_keepalive_s
    assert list(body.subscriptions) == identity.subscriptions()
    assert body.ack_topic == contract.ack_topic(identity.city, code)
    assert body.presence_topic == contract.presence_topic(identity.city, code)
    assert body.keyring.city == settings.city_code
    keys = (await stack.client.get("/api/v1/keys")).json()
    assert [k.key_id for k in body.keyring.keys] == [k["key_id"] for k in keys]
    assert body.audio_url.endswith("/api/v1/audio/{sha256}")

    wrong = await stack.client.get(url, headers=_basic(code, password + "x"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_credentials"
    other = str((await _speaker(stack, 1))["code"])
    elsewhere = await stack.client.get(
        f"/api/v1/devices/{other}/provisioning", headers=_basic(code, password)
    )
    assert elsewhere.status_code == 401, "a speaker reads only its own"
    anonymous = await stack.client.get(url, headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_installers_fetch_provisioning_within_their_area(stack: Stack) -> None:
    speaker = await _speaker(stack)
    code = str(speaker["code"])
    url = f"/api/v1/devices/{code}/provisioning"
    admin = await stack.client.get(url)  # the bootstrap token: a city administrator
    assert admin.status_code == 200, admin.text
    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    own = next(d["id"] for d in districts if d["id"] == speaker["district_id"])
    other = next(d["id"] for d in districts if d["id"] != own)
    inside = await _person(stack, Role.DISTRICT_OFFICER, district_ids=[own])
    assert (await stack.client.get(url, headers=inside.headers)).status_code == 200
    stranger = await sign_up(
        stack.client, "officer-far", Role.DISTRICT_OFFICER, district_ids=[other]
    )
    far = stranger.headers
    refused = await stack.client.get(url, headers=far)
    assert refused.status_code == 403
    assert refused.json()["error"] == "outside_scope"
    auditor = await _person(stack, Role.AUDITOR)
    assert (await stack.client.get(url, headers=auditor.headers)).status_code == 403
    missing = await stack.client.get("/api/v1/devices/nobody/provisioning")
    assert missing.status_code == 404


async def test_a_refused_copy_does_not_undo_an_accepted_command(
    stack: Stack, recording: bytes
) -> None:
    """A speaker refuses a forged copy of a command it already accepted (bad_signature,
    unsigned, unknown_key, replayed, malformed): that is about the copy, so the delivery stays
    as the speaker left it, and a refusal of a command it never accepted still ends it."""
    codes = await _everyone_online(stack)
    status, body = await _create(stack, recording, all_villages="true")
    assert status == 201, body
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    accepted, refused = codes[0], codes[1]
    _ack(stack, command, accepted, AckStatus.RECEIVED)
    for reason in contract.COPY_REFUSALS:
        _ack(stack, command, accepted, AckStatus.REJECTED, reason=reason.value)
    _ack(stack, command, refused, AckStatus.REJECTED, reason="bad_signature")
    await stack.deliver()
    detail = (await stack.client.get(f"/api/v1/broadcasts/{body['id']}")).json()
    states = {s["code"]: s["state"] for v in detail["village_deliveries"] for s in v["speakers"]}
    assert states[accepted] == "received"
    assert states[refused] == "failed"
