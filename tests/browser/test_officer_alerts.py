"""The officer's console tells at once of a village head's disaster alert, until 확인."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack, screenshot
from tests.browser.test_pages import LONG, _log_in, _wait_until_completed
from tests.support.people import bearer

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]


def test_an_officer_sees_a_village_heads_disaster_alert_and_acknowledges_it(
    desktop: Page, stack: Stack
) -> None:
    page = desktop
    page.goto("/console")
    _log_in(page, stack.officer, stack.password, button="로그인")
    expect(page.get_by_role("link", name="방송 기록")).to_be_visible()
    banner = page.locator("#officer-alerts")
    expect(banner).to_be_hidden()

    # The head warns the village from the phone, at once.
    sent = httpx.post(
        f"{stack.url}/api/v1/broadcasts",
        headers=bearer(stack.token(stack.head)),
        data={
            "category": "disaster",
            "text": "계곡 물이 불어나고 있습니다. 계곡에서 바로 나오세요.",
            "village_ids": [str(stack.head_village_id)],
        },
        timeout=60,
    )
    assert sent.status_code == 201, sent.text

    # The console was open all along: the banner comes without reloading the page.
    message = f"{stack.head_village_name} 이장이 재난 방송을 보냈습니다"
    expect(banner).to_be_visible(timeout=LONG)
    expect(banner).to_contain_text(message)
    screenshot(page, "console-officer-alert")
    banner.get_by_role("link", name="방송 보기").click()
    page.wait_for_url(f"**#/board/{sent.json()['id']}", timeout=LONG)
    expect(banner).to_be_visible()

    banner.get_by_role("button", name="확인").click()
    expect(banner).to_be_hidden(timeout=LONG)
    officer = bearer(stack.token(stack.officer))
    alerts = httpx.get(f"{stack.url}/api/v1/officer-alerts", headers=officer).json()
    assert alerts["unacknowledged"] == 0
    assert alerts["items"][0]["broadcast_id"] == sent.json()["id"]
    assert alerts["items"][0]["acknowledged_at"] is not None
    # The safety office was told too; its copy waits for its own 확인 (then cleared, so that
    # the banner covers no other test's console).
    safety = bearer(stack.token(stack.safety))
    waiting = httpx.get(f"{stack.url}/api/v1/officer-alerts", headers=safety).json()["items"]
    assert [a["broadcast_id"] for a in waiting] == [sent.json()["id"]]
    for alert in waiting:
        httpx.post(f"{stack.url}/api/v1/officer-alerts/{alert['id']}/ack", headers=safety)
    _wait_until_completed(stack, sent.json()["id"])
