"""Web push as a fallback channel, in process: a village whose speakers are all offline is told
on both channels of its rule, the browsers subscribed to its residents' page by a real push
message (decrypted at the push service on this machine) and its residents by SMS; a second pass
tells nobody twice; the broadcast's record counts both, `phone` and `push`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fallback.conftest import add_resident, fallback_messages
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _create, _detail, _presence, recording
from tests.support.push_service import PushService

__all__ = ["recording"]

ON_SQLITE = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """A gateway that sends SMS (its outbox is what the test reads: the SMS worker is not run)
    and web push (sent for real to the local push service)."""
    return {
        "sms_sendsms_url": "http://127.0.0.1:9/cgi-bin/sendsms",
        "sms_sender": "1588",
        "public_url": "https://maeul.example.go.kr",
        "push_vapid_subject": "mailto:ops@maeul.example.go.kr",
        "push_allow_loopback_endpoints": True,
    }


@ON_SQLITE
async def test_an_offline_village_is_told_by_push_and_sms(
    stack: Stack, recording: bytes, push_service: PushService
) -> None:
    client = stack.client
    rule = await client.put(
        "/api/v1/fallback-rules/administrative",
        json={"after_s": 60, "channels": ["sms", "web_push"]},
    )
    assert rule.status_code == 200, rule.text
    assert rule.json()["channels"] == ["sms", "web_push"]
    fleet = (await client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    by_village: dict[int, list[str]] = {}
    for speaker in fleet:
        by_village.setdefault(speaker["village_id"], []).append(speaker["code"])
    dark, lit = sorted(by_village)[:2]
    for code in by_village[lit]:
        _presence(stack, code, "online")
    await stack.deliver()
    now = stack.clock.now().isoformat()
    await add_resident(client, dark, "010-3000-0001", now)
    key = (await client.get("/api/v1/push/vapid-public-key")).json()["public_key"]
    subscriptions = {v: push_service.subscribe(key) for v in (dark, lit)}
    for village, subscription in subscriptions.items():
        answer = await client.post(
            "/api/v1/push/subscriptions", json={"village_id": village, "subscription": subscription}
        )
        assert answer.status_code == 201, answer.text

    status, body = await _create(
        stack, recording, village_ids=[dark, lit], text="내일 오전 9시 단수 예정입니다."
    )
    assert status == 201, body
    await stack.publish_pending()
    worker = stack.app.state.fallback_worker
    await worker.run_once()
    # A second pass (another replica) tells nobody twice.
    await worker.run_once()
    assert len(await fallback_messages(stack.app.state.sessions)) == 1
    assert await stack.app.state.push_worker.send_due() == Counter(sent=1)

    [got] = push_service.received_by(subscriptions[dark]["endpoint"])
    village = {v["village_id"]: v for v in (await _detail(stack, body["id"]))["village_deliveries"]}
    assert got.payload == {
        "title": f"[마을방송] {village[dark]['name']}",
        "body": "내일 오전 9시 단수 예정입니다.",
        "url": f"https://maeul.example.go.kr/notices/{dark}#notice-{body['id']}",
        "broadcast_id": body["id"],
        "category": "administrative",
    }
    # The village whose speakers are online waits for the rule's time: no push yet.
    assert push_service.received_by(subscriptions[lit]["endpoint"]) == []
    assert village[dark]["fallback"]["channels"] == ["sms", "web_push"]
    assert (village[dark]["fallback"]["state"], village[dark]["fallback"]["reason"]) == (
        "notified",
        "offline",
    )
    assert village[dark]["phone"]["queued"] == 1
    assert village[dark]["push"] == {"queued": 0, "sent": 1, "failed": 0, "expired": 0}
    assert sum(village[lit]["push"].values()) == 0
    detail = await _detail(stack, body["id"])
    assert (detail["phone"]["queued"], detail["push"]["sent"]) == (1, 1)
