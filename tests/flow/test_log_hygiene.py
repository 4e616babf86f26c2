"""No password, token, key or phone number ever reaches the logs."""

from __future__ import annotations

import logging
import re

import pytest

from gateway.auth import Role
from gateway.logs import configure_logging
from tests.flow.conftest import TOKEN, Stack
from tests.flow.test_roles import _people
from tests.support.people import PASSWORD, bearer, log_in

PHONE = "010-2345-6789"
_PHONE_LIKE = re.compile(r"01[016789][-. ]?\d{3,4}[-. ]?\d{4}")


async def test_logs_hold_no_secrets_or_phone_numbers(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("DEBUG")  # as the gateway process sets it up, at its most verbose
    caplog.set_level(logging.DEBUG)
    people = await _people(stack)
    admin = people[Role.CITY_ADMIN]
    await log_in(stack.client, admin.username, "a-wrong-password-1")
    key = (
        await stack.client.post(f"/api/v1/users/{admin.user_id}/api-keys", json={"name": "연동"})
    ).json()["key"]
    await stack.client.get("/api/v1/auth/me", headers=bearer(key))
    refreshed = await stack.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": admin.refresh}
    )
    spoken = await stack.client.post(
        "/api/v1/broadcasts",
        data={
            "category": "village_notice",
            "text": f"마을 회관 문의는 {PHONE} 으로 연락 주세요.",
            "village_ids": [1],
        },
        headers=people[Role.VILLAGE_HEAD].headers,
    )
    assert spoken.status_code in (201, 202, 403), spoken.text
    await stack.client.post(
        f"/api/v1/users/{admin.user_id}/password", json={"password": "another-long-secret-2"}
    )

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    secrets = [
        PASSWORD,
        "a-wrong-password-1",
        "another-long-secret-2",
        TOKEN,
        key,
        admin.token,
        admin.refresh,
        refreshed.json().get("access_token", "") or "unused-marker",
    ]
    for secret in secrets:
        assert secret not in logged
    assert not _PHONE_LIKE.search(logged), "a phone number reached the logs"
