"""Enrollment codes over HTTP: issued by an administrator, redeemed once by the installer for the
speaker's broker password, provisioning and receipt key; reused, expired, wrong or replaced codes
refused with nothing changed."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from sqlalchemy import select

from gateway.auth import Role
from gateway.enrollment.models import EnrollmentCode
from gateway.speakers.models import Speaker
from tests.flow.conftest import Stack
from tests.flow.test_roles import _person
from wire import contract

REDEEM = "/api/v1/enrollment/redeem"


async def _speaker(stack: Stack, index: int = 0) -> dict[str, Any]:
    listed = (await stack.client.get("/api/v1/speakers", params={"limit": 100})).json()["items"]
    speaker: dict[str, Any] = sorted(listed, key=lambda s: s["code"])[index]
    return speaker


async def _issue(stack: Stack, speaker_id: int) -> str:
    response = await stack.client.post(f"/api/v1/speakers/{speaker_id}/enrollment")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    code: str = response.json()["code"]
    return code


async def _redeem(stack: Stack, code: str, **extra: Any) -> httpx.Response:
    # Nobody is logged in on the box being installed.
    return await stack.client.post(
        REDEEM, json={"code": code, **extra}, headers={"Authorization": ""}
    )


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def _receipt_key(stack: Stack, speaker_id: int) -> str | None:
    async with stack.app.state.sessions() as session:
        speaker = await session.get(Speaker, speaker_id)
        assert speaker is not None
        return speaker.receipt_public_key


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_code_is_redeemed_once_for_the_speakers_configuration(stack: Stack) -> None:
    speaker = await _speaker(stack)
    issued = (await stack.client.post(f"/api/v1/speakers/{speaker['id']}/enrollment")).json()
    assert issued["speaker_code"] == speaker["code"]
    code = issued["code"]
    assert len(code) == 19
    assert code.count("-") == 3
    private, public = contract.new_receipt_key()
    proof = contract.enrollment_key_proof(private, contract.normalize_enrollment_code(code) or "")

    # Typed the way people type: lower case, spaces for dashes.
    response = await _redeem(stack, code.lower().replace("-", " "), **proof)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["receipt_key_enrolled"] is True
    provisioning = contract.Provisioning.model_validate(body["provisioning"])
    assert provisioning.identity.speaker == speaker["code"]
    assert provisioning.keyring.keys, "the key ring comes along"
    # The password works for the speaker at once, and is the speaker's own.
    url = f"/api/v1/devices/{speaker['code']}/provisioning"
    own = await stack.client.get(url, headers=_basic(speaker["code"], body["password"]))
    assert own.status_code == 200, own.text
    assert await _receipt_key(stack, speaker["id"]) == base64.b64encode(public).decode()

    # A code works once; the second try changes nothing.
    _error(await _redeem(stack, code), 410, "enrollment_code_used")
    still = await stack.client.get(url, headers=_basic(speaker["code"], body["password"]))
    assert still.status_code == 200

    events = (await stack.client.get("/api/v1/audit-events", params={"limit": 100})).json()
    actions = [(e["action"], e["outcome"]) for e in events["items"]]
    assert ("issue_enrollment_code", "ok") in actions
    assert ("speaker_enrolled", "ok") in actions


async def test_expired_replaced_and_wrong_codes_are_refused(stack: Stack) -> None:
    speaker = await _speaker(stack)
    first = await _issue(stack, speaker["id"])
    second = await _issue(stack, speaker["id"])
    _error(await _redeem(stack, first), 410, "enrollment_code_expired")  # the second ended it

    stack.clock.advance(stack.settings.enrollment_code_ttl_s + 1)
    _error(await _redeem(stack, second), 410, "enrollment_code_expired")
    _error(await _redeem(stack, "not-a-code"), 401, "invalid_enrollment_code")
    # Failures from one address (the expired one counts), and it must wait, even with a good code.
    for _ in range(stack.settings.login_max_failures - 2):
        wrong = contract.new_enrollment_code()
        _error(await _redeem(stack, wrong), 401, "invalid_enrollment_code")
    fresh = await _issue(stack, speaker["id"])
    refused = await _redeem(stack, fresh)
    _error(refused, 429, "enrollment_throttled")
    assert int(refused.headers["retry-after"]) > 0
    stack.clock.advance(stack.settings.login_max_delay_s + 1)
    assert (await _redeem(stack, fresh)).status_code == 200


async def test_a_bad_receipt_key_proof_spends_nothing(stack: Stack) -> None:
    speaker = await _speaker(stack)
    code = await _issue(stack, speaker["id"])
    private, _ = contract.new_receipt_key()
    other = contract.new_enrollment_code()
    _error(
        await _redeem(stack, code, **contract.enrollment_key_proof(private, other)),
        422,
        "invalid_receipt_key_proof",
    )
    # Nothing was issued or enrolled: no password, no key; the code still works.
    assert await _receipt_key(stack, speaker["id"]) is None
    redeemed = await _redeem(stack, code)
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["receipt_key_enrolled"] is False


async def test_only_city_administrators_issue_codes(stack: Stack) -> None:
    speaker = await _speaker(stack)
    url = f"/api/v1/speakers/{speaker['id']}/enrollment"
    officer = await _person(stack, Role.DISTRICT_OFFICER, district_ids=[speaker["district_id"]])
    head = await _person(stack, Role.VILLAGE_HEAD, village_ids=[speaker["village_id"]])
    for person in (officer, head):
        _error(await stack.client.post(url, headers=person.headers), 403, "role_not_allowed")
    _error(await stack.client.post(url, headers={"Authorization": ""}), 401, "not_authenticated")
    _error(await stack.client.post("/api/v1/speakers/999999/enrollment"), 404, "speaker_not_found")


async def test_ended_codes_are_told_apart_for_a_month_then_deleted(stack: Stack) -> None:
    speaker = await _speaker(stack)
    used = await _issue(stack, speaker["id"])
    assert (await _redeem(stack, used)).status_code == 200
    lapsed = await _issue(stack, speaker["id"])
    await _issue(stack, speaker["id"])  # ends `lapsed` now; lapses itself in a day
    sweeper = stack.app.state.sweeper

    stack.clock.advance(29 * 86_400)
    await sweeper.purge_once()
    _error(await _redeem(stack, used), 410, "enrollment_code_used")
    _error(await _redeem(stack, lapsed), 410, "enrollment_code_expired")

    stack.clock.advance(86_400 + 12 * 3_600)  # a month and a half day after the first two ended
    await sweeper.purge_once()
    async with stack.app.state.sessions() as session:
        left = (await session.scalars(select(EnrollmentCode.expires_at))).all()
    assert len(left) == 1, "the two codes that ended a month ago are deleted; the last one is not"
    stack.clock.advance(86_400)
    await sweeper.purge_once()
    async with stack.app.state.sessions() as session:
        assert (await session.scalars(select(EnrollmentCode.id))).all() == []
