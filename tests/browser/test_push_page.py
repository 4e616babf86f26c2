"""The residents' page turns web push on: "알림 받기" asks for permission, subscribes with the
gateway's VAPID key and hands the subscription to the gateway, whose worker then pushes a
notice to it; the service worker shows it as a notification that opens the notice.

Chromium subscribes through Google's push service (FCM), which a closed network cannot reach,
so ``PushManager.subscribe`` (and ``getSubscription`` after it) is what this test answers
itself: with a subscription of the push service on this machine
(tests/support/push_service.py), after checking the key the page asked with. Everything before
it (permission, key, service worker) and after it (the gateway storing it, encrypting, signing,
sending; unsubscribing; the service worker's notification) is the real thing; the push reaches
the service worker through Chromium's own DevTools delivery, as FCM would hand it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import func, select

from gateway.db import create_engine, create_sessions
from gateway.push import service
from gateway.push.models import PushSubscription
from tests.browser.conftest import Stack, _phone_context, _watch_policy, screenshot
from tests.browser.test_phone_pages import _check
from tests.support.push_service import PushService
from wire.contract import Category

LONG = 60_000  # ms
T = TypeVar("T")


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as running:
        yield running


def _stand_in_for_fcm(subscription: dict[str, object]) -> str:
    return f"""
    (() => {{
      const local = {json.dumps(subscription)};
      let held = null;
      PushManager.prototype.subscribe = async function (options) {{
        const key = new Uint8Array(options.applicationServerKey);
        window.subscribedWith = btoa(String.fromCharCode(...key))
          .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
        window.subscribedVisibly = options.userVisibleOnly;
        held = {{
          endpoint: local.endpoint,
          toJSON: () => local,
          unsubscribe: async () => {{ held = null; return true; }},
        }};
        return held;
      }};
      PushManager.prototype.getSubscription = async function () {{ return held; }};
    }})();"""


async def _subscribed(database_url: str, village_id: int) -> int:
    """How many browsers the gateway's database holds for the village."""
    engine = create_engine(database_url)
    try:
        async with create_sessions(engine)() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(PushSubscription)
                .where(PushSubscription.village_id == village_id)
            )
            return int(count or 0)
    finally:
        await engine.dispose()


async def _enqueue(database_url: str, village_id: int, broadcast_id: str) -> None:
    """A notice for the village, as the fallback will queue it (the link names another host
    on purpose: the service worker opens it on its own origin)."""
    engine = create_engine(database_url)
    try:
        async with create_sessions(engine)() as session:
            await service.enqueue_push(
                session,
                village_id=village_id,
                title="정전 안내",
                body="오늘 오후 2시부터 4시까지 마을 전체가 정전됩니다.",
                url=service.notice_link("https://maeul.example.go.kr", village_id, broadcast_id),
                reference_kind="broadcast",
                reference_id=broadcast_id,
                now=datetime.now(UTC),
                category=Category.ADMINISTRATIVE,
            )
            await session.commit()
    finally:
        await engine.dispose()


def _off_the_page_loop(work: Coroutine[Any, Any, T]) -> T:
    """Playwright's own loop runs in this thread: database work runs in another."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result(60)


def test_a_resident_turns_on_notices_and_one_arrives(
    browser: Browser, stack: Stack, push_service: PushService
) -> None:
    key = stack.api.get("/api/v1/push/vapid-public-key").json()["public_key"]
    subscription = push_service.subscribe(key)
    context = _phone_context(browser, stack, 360, permissions=["notifications"])
    context.add_init_script(script=_stand_in_for_fcm(subscription))
    page = context.new_page()
    refused = _watch_policy(page)
    try:
        page.goto(f"/notices/{stack.head_village_id}")
        button = page.get_by_role("button", name="알림 받기")
        expect(button).to_be_visible(timeout=LONG)
        _check(page, "residents' page with the push button")
        button.click()
        expect(page.get_by_role("status")).to_contain_text("알림을 받습니다", timeout=LONG)
        expect(page.get_by_role("button", name="알림 끄기")).to_have_attribute(
            "aria-pressed", "true"
        )
        assert page.evaluate("window.subscribedWith") == key
        assert page.evaluate("window.subscribedVisibly") is True
        _check(page, "residents' page with push on")
        screenshot(page, "notices-push-on")

        # The gateway kept it, and its worker pushes a notice there, encrypted and signed.
        assert _off_the_page_loop(_subscribed(stack.database_url, stack.head_village_id)) == 1
        _off_the_page_loop(_enqueue(stack.database_url, stack.head_village_id, "b-outage"))
        deadline = time.monotonic() + 30
        while not push_service.received_by(subscription["endpoint"]):
            assert time.monotonic() < deadline, push_service.refused
            time.sleep(0.1)
        [got] = push_service.received_by(subscription["endpoint"])
        assert got.payload["title"] == "정전 안내"
        assert got.payload["url"].endswith(f"/notices/{stack.head_village_id}#notice-b-outage")

        # The service worker shows it, and opens the notice on this origin when tapped.
        cdp = context.new_cdp_session(page)
        registrations: list[dict[str, object]] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda e: registrations.extend(e["registrations"]),
        )
        cdp.send("ServiceWorker.enable")
        deadline = time.monotonic() + 10
        while not registrations:
            assert time.monotonic() < deadline
            page.wait_for_timeout(50)
        registration = next(r for r in registrations if not r.get("isDeleted"))
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": stack.url,
                "registrationId": registration["registrationId"],
                "data": json.dumps(got.payload, ensure_ascii=False),
            },
        )
        shown = page.wait_for_function(
            """async () => {
              const registration = await navigator.serviceWorker.ready;
              const [n] = await registration.getNotifications();
              return n && { title: n.title, body: n.body, url: n.data.url };
            }""",
            timeout=LONG,
        ).json_value()
        assert shown == {
            "title": "정전 안내",
            "body": "오늘 오후 2시부터 4시까지 마을 전체가 정전됩니다.",
            "url": f"{stack.url}/notices/{stack.head_village_id}#notice-b-outage",
        }

        # Turning it off forgets the subscription at the gateway.
        page.get_by_role("button", name="알림 끄기").click()
        expect(page.get_by_role("status")).to_contain_text("알림을 껐습니다", timeout=LONG)
        assert _off_the_page_loop(_subscribed(stack.database_url, stack.head_village_id)) == 0
    finally:
        context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"
