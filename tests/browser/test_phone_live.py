"""The village head talks live from the phone page at 360 px: logged in once, the own village only,
one big button tapped to start and to end, the played count that the speakers report, and home;
axe-core and the phone's sizes on every screen."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack, screenshot
from tests.browser.test_phone_pages import (
    _check,
    _fits_360,
    _korean_clock,
    _log_in,
    _quiet_hours_now,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: a bound for a loaded machine; the test waits for states, not time


def test_village_head_talks_live_from_the_phone_page_at_360(
    phone_360_with_microphone: Page, stack: Stack
) -> None:
    page = phone_360_with_microphone
    speakers = stack.api.get(f"/api/v1/villages/{stack.head_village_id}").json()["speaker_count"]
    assert speakers > 0
    page.goto("/phone")
    _log_in(page, stack)

    # No second login and no choice to make: the head's one village is named, no other offered.
    page.get_by_role("link", name=re.compile("지금 바로 말하기")).click()
    page.wait_for_url(re.compile(r"/phone#/live$"))
    place = page.locator("[data-village-choice]")
    expect(place).to_have_count(1)
    expect(place).to_contain_text(stack.head_village_name)
    expect(page.locator("input[name=village]")).to_have_count(0)
    expect(page.get_by_text(stack.other_village_name)).to_have_count(0)
    expect(page.get_by_label("아이디")).to_have_count(0)
    _check(page, "phone live, before talking")

    # Tap to start: the chime plays first, then the screen says to speak; tap again to end.
    page.get_by_role("button", name="말하기 시작").click()
    expect(page.locator("#live-state")).to_have_text("말씀하세요", timeout=LONG)
    expect(page.locator("#live-count")).to_have_text(
        f"스피커 {speakers}대 중 {speakers}대에서 나오고 있습니다", timeout=LONG
    )
    _check(page, "phone live, talking")
    screenshot(page, "phone-live")
    page.get_by_role("button", name="말 끝내기").click()

    # The result counts what the speakers reported playing, once they all have.
    page.wait_for_url(re.compile(r"#/sent/[0-9a-f]{32}$"), timeout=LONG)
    broadcast_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#progress")).to_have_attribute("data-state", "played", timeout=LONG)
    count = page.locator("#played-count")
    expect(count).to_have_attribute("data-played", str(speakers))
    expect(count).to_have_attribute("data-total", str(speakers))
    expect(page.locator("#played-of")).to_have_text(
        f"스피커 {speakers}대 중 {speakers}대 방송했습니다"
    )
    expect(page.locator("#sent-title")).to_have_text("실시간 방송")
    _check(page, "phone live, played")
    screenshot(page, "phone-live-played")
    body = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert body["speakers"]["played"] == speakers, body
    assert body["target"]["village_ids"] == [stack.head_village_id], body

    # And home, where the talk is listed with its count.
    page.get_by_role("link", name="처음으로").click()
    expect(page.locator("#history")).to_contain_text(
        f"스피커 {speakers}대 중 {speakers}대 방송", timeout=LONG
    )
    _check(page, "phone home after a live talk")


def test_a_refused_microphone_says_what_to_do_at_360(phone_360: Page, stack: Stack) -> None:
    """No microphone allowed (a phone's prompt answered no): plain Korean, nothing sent."""
    page = phone_360
    page.goto("/phone")
    _log_in(page, stack)
    page.get_by_role("link", name=re.compile("지금 바로 말하기")).click()
    page.get_by_role("button", name="말하기 시작").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("마이크", timeout=LONG)
    expect(page.get_by_role("button", name="말하기 시작")).to_be_enabled()
    _check(page, "phone live, microphone refused")


def test_quiet_hours_are_named_and_timed_as_on_every_phone_screen_at_360(
    phone_360_with_microphone: Page, stack: Stack
) -> None:
    page = phone_360_with_microphone
    page.goto("/phone")
    _log_in(page, stack)
    with _quiet_hours_now(stack) as end:
        page.get_by_role("link", name=re.compile("지금 바로 말하기")).click()
        page.get_by_role("button", name="말하기 시작").click()
        refused = page.locator("#message .notice.error")
        # The held send's words ("방송 금지 시간", "오후 6:00"), a time range kept on one line.
        expect(refused).to_contain_text("지금은 방송 금지 시간입니다", timeout=LONG)
        expect(refused).to_contain_text(f"{end.month}월 {end.day}일 {_korean_clock(end)}")
        expect(refused).not_to_contain_text("조용한")
        # Not the raw 24-hour range ("22:00~06:00"): its end is named too ("~오전 6:00").
        expect(refused).not_to_contain_text(re.compile(r"~\u2060?\d"))
        _fits_360(page, "#message")
        _check(page, "phone live, quiet hours")
