"""Web push end to end against a push service on this machine: a notice arrives decrypted with
its text and its link, gone subscriptions are dropped, a busy service is asked again when it
says, bad subscriptions are refused, two workers never send one message twice, and neither an
endpoint nor a key reaches the logs."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from gateway.logs import configure_logging
from gateway.push import service
from gateway.push.keys import b64url
from gateway.push.models import PushSubscription
from gateway.push.states import PushStatus
from tests.push.conftest import PushStack
from tests.support.push_service import PushService
from wire.contract import Category

# What does not depend on the database's locking runs on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
NOTICE = "내일 오전 9시 마을회관에서 예방접종이 있습니다. 신분증을 가져오세요."


async def _enqueue(
    stack: PushStack, village_id: int, reference_id: str, **kwargs: object
) -> list[str]:
    async with stack.app.state.sessions() as session:
        ids = await service.enqueue_push(
            session,
            village_id=village_id,
            title=str(kwargs.pop("title", "예방접종 안내")),
            body=str(kwargs.pop("body", NOTICE)),
            url=service.notice_link(stack.settings.public_url, village_id, reference_id),
            reference_kind="broadcast",
            reference_id=reference_id,
            now=stack.clock.now(),
            **kwargs,  # type: ignore[arg-type]
        )
        await session.commit()
        return ids


async def _subscriptions(stack: PushStack) -> int:
    async with stack.app.state.sessions() as session:
        return len((await session.scalars(PushSubscription.__table__.select())).all())


async def test_a_notice_arrives_decrypted_with_its_text_and_link(
    push_stack: PushStack, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    village = await push_stack.village_id("d01-v001")
    other = await push_stack.village_id("d01-v002")
    mine = await push_stack.subscribe(village, language="ko")
    theirs = await push_stack.subscribe(other)

    ids = await _enqueue(push_stack, village, "b-flood", category=Category.DISASTER)
    assert len(ids) == 1
    # The same broadcast again (a retried fallback): nothing more to send.
    assert await _enqueue(push_stack, village, "b-flood", category=Category.DISASTER) == []

    assert await push_stack.worker.send_due() == Counter(sent=1)

    [got] = push_stack.service.received_by(mine["endpoint"])
    assert got.payload == {
        "title": "예방접종 안내",
        "body": NOTICE,
        "url": f"https://maeul.example.go.kr/notices/{village}#notice-b-flood",
        "broadcast_id": "b-flood",
        "category": "disaster",
    }
    assert (got.urgency, got.topic) == ("high", ids[0])
    assert 0 < got.ttl <= push_stack.settings.push_ttl_s
    assert push_stack.service.received_by(theirs["endpoint"]) == []
    message = await push_stack.message(ids[0])
    assert (message.status, message.attempts, message.reason) == (PushStatus.SENT, 1, None)
    assert message.sent_at is not None
    # A second pass finds nothing to send.
    assert await push_stack.worker.send_due() == Counter()
    assert push_stack.service.requests_to(mine["endpoint"]) == 1
    # Endpoints are capability URLs and the keys the browser's: none in the logs.
    for subscription in (mine, theirs):
        token = subscription["endpoint"].rsplit("/", 1)[1]
        assert token not in caplog.text
        assert subscription["keys"]["p256dh"] not in caplog.text
        assert subscription["keys"]["auth"] not in caplog.text


@SQLITE_ONLY
async def test_a_long_notice_is_cut_to_fit_one_push_message(push_stack: PushStack) -> None:
    village = await push_stack.village_id("d01-v001")
    endpoint = (await push_stack.subscribe(village))["endpoint"]
    await _enqueue(push_stack, village, "b-long", body="가" * 3000)

    assert await push_stack.worker.send_due() == Counter(sent=1)

    [got] = push_stack.service.received_by(endpoint)
    assert got.payload["body"].endswith("…")
    assert got.payload["url"].endswith("#notice-b-long")
    assert got.urgency == "normal"


async def test_gone_subscriptions_are_dropped(
    push_stack: PushStack, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    village = await push_stack.village_id("d01-v001")
    gone = (await push_stack.subscribe(village))["endpoint"]
    unknown = (await push_stack.subscribe(village))["endpoint"]
    kept = (await push_stack.subscribe(village))["endpoint"]
    push_stack.service.forget(gone, 410)
    push_stack.service.forget(unknown, 404)
    first = await _enqueue(push_stack, village, "b-1")
    second = await _enqueue(push_stack, village, "b-2")

    # One at a time, so that the second message of each dropped subscription is ended with it,
    # unsent (in flight together, both would meet the push service's 410).
    worker = push_stack.new_worker(push_concurrency=1)
    assert await worker.send_due() == Counter(sent=2, expired=2)

    assert await _subscriptions(push_stack) == 1
    assert len(push_stack.service.received_by(kept)) == 2
    for endpoint in (gone, unknown):
        assert push_stack.service.requests_to(endpoint) == 1
    messages = [await push_stack.message(m) for m in first + second]
    states = Counter((m.status, m.reason) for m in messages)
    assert states == Counter(
        {
            (PushStatus.SENT, None): 2,
            (PushStatus.EXPIRED, "push_http_410"): 1,
            (PushStatus.EXPIRED, "push_http_404"): 1,
            (PushStatus.EXPIRED, "unsubscribed"): 2,
        }
    )
    for endpoint in (gone, unknown, kept):
        assert endpoint.rsplit("/", 1)[1] not in caplog.text
    # A later notice goes to the one left.
    assert len(await _enqueue(push_stack, village, "b-3")) == 1


@SQLITE_ONLY
async def test_a_busy_push_service_is_asked_again_after_its_retry_after(
    push_stack: PushStack,
) -> None:
    village = await push_stack.village_id("d01-v001")
    endpoint = (await push_stack.subscribe(village))["endpoint"]
    push_stack.service.answer(endpoint, 429, retry_after="120")
    [message_id] = await _enqueue(push_stack, village, "b-busy")

    assert await push_stack.worker.send_due() == Counter(retry=1)
    waiting = await push_stack.message(message_id)
    assert (waiting.status, waiting.reason, waiting.attempts) == ("queued", "push_http_429", 1)
    # Retry-After (120 s), not the worker's own back-off (1 s).
    assert waiting.next_attempt_at == push_stack.clock.now() + timedelta(seconds=120)
    push_stack.clock.advance(60)
    assert await push_stack.worker.send_due() == Counter()
    push_stack.clock.advance(60)
    assert await push_stack.worker.send_due() == Counter(sent=1)
    assert (await push_stack.message(message_id)).attempts == 2
    assert [r.payload["broadcast_id"] for r in push_stack.service.received_by(endpoint)] == [
        "b-busy"
    ]

    # A service that keeps failing: given up after the attempts allowed, with the reason.
    push_stack.service.answer(endpoint, 500, 503)
    [failing] = await _enqueue(push_stack, village, "b-down")
    worker = push_stack.new_worker(push_max_attempts=2)
    assert await worker.send_due() == Counter(retry=1)
    push_stack.clock.advance(5)
    assert await worker.send_due() == Counter(failed=1)
    failed = await push_stack.message(failing)
    assert (failed.status, failed.reason, failed.attempts) == ("failed", "push_http_503", 2)


@SQLITE_ONLY
async def test_bad_subscriptions_are_refused(push_stack: PushStack) -> None:
    village = await push_stack.village_id("d01-v001")
    key = (await push_stack.client.get("/api/v1/push/vapid-public-key")).json()["public_key"]
    good = push_stack.service.subscribe(key)

    def with_(**changes: object) -> dict[str, Any]:
        subscription = {**good, "keys": dict(good["keys"])}
        for name, value in changes.items():
            if name in ("p256dh", "auth"):
                subscription["keys"][name] = value
            else:
                subscription[name] = value
        return {"village_id": village, "subscription": subscription}

    not_on_curve = "BA" + "A" * 85  # 0x04 then zeros: 65 bytes, but no point of P-256
    cases: dict[str, list[dict[str, Any]]] = {
        "push_endpoint_invalid": [
            with_(endpoint="http://push.example.com/x"),
            with_(endpoint="https://10.0.0.8/push/x"),
            with_(endpoint="https://localhost/push/x"),
            with_(endpoint="https://user:pw@push.example.com/x"),
            with_(endpoint="https://push.example.com/" + "x" * 1100),
            with_(endpoint="http://127.0.0.2:9/x"),
        ],
        "push_keys_invalid": [
            with_(p256dh=good["keys"]["p256dh"][:-4]),
            with_(p256dh=not_on_curve),
            with_(p256dh="not base64!"),
            with_(auth=good["keys"]["auth"] + "AAAA"),
        ],
        "village_not_found": [{**with_(), "village_id": 999_999}],
        "invalid_request": [
            {"village_id": village},
            {**with_(), "language": "한국어"},
            {**with_(), "extra": 1},
        ],
    }
    for code, bodies in cases.items():
        for body in bodies:
            response = await push_stack.client.post("/api/v1/push/subscriptions", json=body)
            assert response.status_code in (404, 422), (body, response.text)
            assert response.json()["error"] == code, body
    assert await _subscriptions(push_stack) == 0

    # The same browser again, from another village's page: moved, not doubled.
    other = await push_stack.village_id("d01-v002")
    for village_id in (village, other):
        body = {"village_id": village_id, "language": "vi", "subscription": good}
        answer = await push_stack.client.post("/api/v1/push/subscriptions", json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["village_id"] == village_id
    assert await _subscriptions(push_stack) == 1
    async with push_stack.app.state.sessions() as session:
        assert (
            await service.enqueue_push(
                session,
                village_id=village,
                title="t",
                body="b",
                url="https://maeul.example.go.kr/notices",
                reference_kind="broadcast",
                reference_id="b-moved",
                now=push_stack.clock.now(),
            )
            == []
        )
    response = await push_stack.client.request(
        "DELETE", "/api/v1/push/subscriptions", json={"endpoint": good["endpoint"]}
    )
    assert response.status_code == 204

    # Unsubscribing: by the endpoint, idempotent.
    await push_stack.subscribe(village)
    kept = await push_stack.subscribe(village)
    for _ in range(2):
        response = await push_stack.client.request(
            "DELETE", "/api/v1/push/subscriptions", json={"endpoint": kept["endpoint"]}
        )
        assert response.status_code == 204
    assert await _subscriptions(push_stack) == 1

    # Too many changes from one address in a minute, counted by every replica together.
    push_stack.clock.advance(60)
    push_stack.settings.push_subscriptions_per_minute = 2
    answers = [
        (
            await push_stack.client.post(
                "/api/v1/push/subscriptions",
                json={"village_id": village, "subscription": push_stack.service.subscribe(key)},
            )
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"] == "push_rate_limited"
    assert int(answers[2].headers["Retry-After"]) > 0


async def test_two_workers_never_send_one_message_twice(push_stack: PushStack) -> None:
    village = await push_stack.village_id("d01-v001")
    endpoints = [(await push_stack.subscribe(village))["endpoint"] for _ in range(12)]
    await _enqueue(push_stack, village, "b-shared")
    first, second = push_stack.new_worker(), push_stack.new_worker()

    outcomes = await asyncio.gather(first.send_due(), second.send_due())

    assert sum(outcomes, Counter()) == Counter(sent=12)
    for endpoint in endpoints:
        assert push_stack.service.requests_to(endpoint) == 1
        assert len(push_stack.service.received_by(endpoint)) == 1


def test_the_push_service_refuses_a_token_signed_by_another_key(
    push_service: PushService,
) -> None:
    """The receiver checks what a real push service checks, or the tests above prove little."""
    mine, other = Vapid(), Vapid()
    mine.generate_keys()
    other.generate_keys()
    public = mine.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    subscription = push_service.subscribe(b64url(public))
    claims = {"sub": "mailto:ops@maeul.example.go.kr"}
    with pytest.raises(WebPushException) as refused:
        webpush(subscription, data='{"title": "x"}', vapid_private_key=other, vapid_claims=claims)
    assert refused.value.response.status_code == 403
    webpush(subscription, data='{"title": "x"}', vapid_private_key=mine, vapid_claims=dict(claims))
    [got] = push_service.received_by(subscription["endpoint"])
    assert got.payload == {"title": "x"}


@SQLITE_ONLY
async def test_the_residents_page_installs_on_its_village(push_stack: PushStack) -> None:
    village = await push_stack.village_id("d01-v001")
    for path, start in (
        ("/notices.webmanifest", "/notices"),
        (f"/notices/{village}/manifest.webmanifest", f"/notices/{village}"),
    ):
        response = await push_stack.client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/manifest+json")
        manifest = response.json()
        assert (manifest["start_url"], manifest["scope"]) == (start, "/notices")
        assert manifest["display"] == "standalone"
    page = await push_stack.client.get(f"/notices/{village}")
    assert '<link rel="manifest" href="/notices.webmanifest">' in page.text
