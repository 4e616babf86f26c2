"""Residents signing themselves up: consent, a code by SMS through the outbox, five minutes and
five tries, limits per number and per source, and a second sign-up renewing consent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gateway.residents.models import PhoneVerification
from gateway.sms.models import SmsMessage
from gateway.sms.service import open_recipient
from tests.flow.conftest import Stack
from tests.residents.conftest import CONSENT, sent_code, villages

# The first test on both databases (a try counted in a transaction of its own); the rest on SQLite.
ON_SQLITE = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)

API = "/api/v1/residents"
PUBLIC = {"Authorization": ""}  # residents have no login


async def _start(stack: Stack, phone: str, vid: int, **more: Any) -> Any:
    body = {"village_id": vid, "phone": phone, "channels": ["sms"], "language": "ko", **CONSENT}
    return await stack.client.post(f"{API}/signup", json={**body, **more}, headers=PUBLIC)


async def _verify(stack: Stack, signup_id: str, code: str) -> Any:
    return await stack.client.post(
        f"{API}/signup/verify", json={"signup_id": signup_id, "code": code}, headers=PUBLIC
    )


async def test_sign_up_with_a_code_and_sign_up_again_to_renew(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    consent = await stack.client.get(f"{API}/consent", headers=PUBLIC)
    assert consent.status_code == 200
    terms = [section["heading"] for section in consent.json()["sections"]]
    assert {"수집·이용 목적", "수집 항목", "보유·이용 기간", "동의를 거부할 권리"} <= set(terms)

    started = await _start(stack, "+82 10-5555-0101", vid, channels=["sms", "web_push"])
    assert started.status_code == 202, started.text
    assert started.json()["phone"] == "010-****-0101"
    signup_id = started.json()["signup_id"]
    # The SMS waits in the outbox for the transport, its recipient sealed, never in the clear.
    async with stack.app.state.sessions() as session:
        message = await session.scalar(select(SmsMessage))
        assert message is not None
        assert (message.status, message.reference_kind, message.reference_id) == (
            "queued",
            "signup",
            signup_id,
        )
        assert message.forget_text  # the code goes once the message is sent
        assert b"5555" not in message.to_sealed
        assert open_recipient(stack.app.state.phone_cipher, message.id, message.to_sealed) == (
            "01055550101"
        )
    code = await sent_code(stack, signup_id)
    wrong = "000000" if code != "000000" else "111111"
    missed = await _verify(stack, signup_id, wrong)
    assert missed.status_code == 422
    assert missed.json()["error"] == "invalid_verification_code"
    assert "4" in missed.json()["detail"]  # tries left
    done = await _verify(stack, signup_id, code)
    assert done.status_code == 201, done.text
    assert (done.json()["phone"], done.json()["renewed"]) == ("010-****-0101", False)
    assert done.json()["channels"] == ["sms", "web_push"]
    # Used: the same code again finds nothing waiting.
    assert (await _verify(stack, signup_id, code)).json()["error"] == "signup_not_found"
    resident = await stack.client.get(f"{API}/{done.json()['resident_id']}")
    assert (resident.json()["consent_source"], resident.json()["consent_version"]) == (
        "signup",
        CONSENT["consent_version"],
    )

    # The same number again (a year on): consent renewed, no second resident, nothing told
    # before the code proves the number is theirs.
    stack.clock.advance(365 * 86400)
    again = await _start(stack, "010-5555-0101", vid, channels=["indoor_receiver"])
    renewed = await _verify(
        stack, again.json()["signup_id"], await sent_code(stack, again.json()["signup_id"])
    )
    assert renewed.json()["renewed"] is True
    assert renewed.json()["resident_id"] == done.json()["resident_id"]
    assert renewed.json()["channels"] == ["indoor_receiver"]
    # Withdrawing is as easy: a code to the number, and everything personal goes at once.
    leaving = await stack.client.post(
        f"{API}/withdrawal", json={"phone": "01055550101"}, headers=PUBLIC
    )
    assert leaving.status_code == 202, leaving.text
    leaving_id = leaving.json()["signup_id"]
    leaving_code = await sent_code(stack, leaving_id)
    # A withdrawal's code does not sign anyone up, nor a sign-up's withdraw anyone.
    assert (await _verify(stack, leaving_id, leaving_code)).json()["error"] == "signup_not_found"
    withdrawal = {"signup_id": leaving_id, "code": leaving_code}
    gone = await stack.client.post(f"{API}/withdrawal/verify", json=withdrawal, headers=PUBLIC)
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"withdrawn": True}
    after = (await stack.client.get(f"{API}/{done.json()['resident_id']}")).json()
    assert (after["state"], after["phone"], after["channels"]) == ("withdrawn", None, [])
    # Once verified, a sign-up keeps neither the number nor the code.
    async with stack.app.state.sessions() as session:
        for verification in await session.scalars(select(PhoneVerification)):
            assert verification.phone_ciphertext is None
            assert verification.code_hash is None


@ON_SQLITE
async def test_codes_expire_tries_run_out_and_sources_are_limited(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    started = (await _start(stack, "010-5555-0202", vid)).json()
    stack.clock.advance(5 * 60 + 1)
    code = await sent_code(stack, started["signup_id"])
    late = await _verify(stack, started["signup_id"], code)
    assert late.status_code == 409
    assert late.json()["error"] == "verification_expired"

    started = (await _start(stack, "010-5555-0202", vid)).json()
    code = await sent_code(stack, started["signup_id"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert (await _verify(stack, started["signup_id"], wrong)).json()["error"] == (
            "invalid_verification_code"
        )
    spent = await _verify(stack, started["signup_id"], code)  # right, but too late
    assert spent.json()["error"] == "verification_expired"
    assert (await _verify(stack, "0" * 32, "123456")).json()["error"] == "signup_not_found"

    # Three codes an hour per number (spelt any way), then 429 with Retry-After.
    await _start(stack, "01055550202", vid)
    limited = await _start(stack, "+821055550202", vid)
    assert limited.status_code == 429
    assert limited.json()["error"] == "signup_rate_limited"
    assert int(limited.headers["retry-after"]) > 0
    # Ten an hour per source, whatever the numbers.
    statuses = [(await _start(stack, f"010-6666-{n:04d}", vid)).status_code for n in range(8)]
    assert statuses == [202] * 7 + [429]
    stack.clock.advance(3601)
    assert (await _start(stack, "010-6666-0009", vid)).status_code == 202


@ON_SQLITE
async def test_bad_sign_ups(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    cases: tuple[tuple[dict[str, Any], int, str], ...] = (
        ({"phone": "02-123-4567"}, 422, "invalid_phone_number"),
        ({"consent": False}, 422, "consent_required"),
        ({"consent_version": "2020-01"}, 422, "outdated_consent"),
        ({"village_id": 999999}, 404, "village_not_found"),
        ({"channels": ["fax"]}, 422, "invalid_request"),
        ({"channels": []}, 422, "invalid_request"),
    )
    for more, status, code in cases:
        phone = str(more.pop("phone", "010-7777-0001"))
        refused = await _start(stack, phone, vid, **more)
        assert refused.status_code == status, (more, refused.text)
        assert refused.json()["error"] == code
        assert "7777" not in refused.text
        assert "123-4567" not in refused.text
    async with stack.app.state.sessions() as session:
        assert list(await session.scalars(select(SmsMessage))) == []
