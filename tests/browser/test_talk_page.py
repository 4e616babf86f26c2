"""The talk page in headless Chromium with a fake microphone: hold to talk, speakers play it."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from tests.browser.conftest import Stack, _watch_policy, screenshot
from tests.support.axe import assert_accessible
from tests.support.chromium import CHROMIUM_ARGS, FAKE_MICROPHONE, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: a bound for a loaded machine; the test waits for states, not time


def _speech_wav(path: Path) -> Path:
    """A few seconds of a voice-like tone, as the fake microphone's input."""
    rate = 48000
    t = np.arange(rate * 4) / rate
    wave_ = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((wave_ * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def talk_browser(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    chromium = require_chromium()
    wav = _speech_wav(tmp_path_factory.mktemp("talk") / "speech.wav")
    launched = playwright.chromium.launch(
        executable_path=chromium,
        args=[
            *CHROMIUM_ARGS,
            *FAKE_MICROPHONE,
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield launched
    launched.close()


@pytest.fixture
def talk_page(talk_browser: Browser, stack: Stack) -> Iterator[Page]:
    context = talk_browser.new_context(
        base_url=stack.url,
        viewport={"width": 412, "height": 915},
        locale="ko-KR",
        permissions=["microphone"],
    )
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the talk page broke its own Content-Security-Policy"


def test_an_officer_talks_live_to_a_district_from_the_talk_page(
    talk_page: Page, stack: Stack
) -> None:
    page = talk_page
    page.goto("/talk")
    page.get_by_label("아이디").fill(stack.officer)
    page.get_by_label("비밀번호").fill(stack.password)
    page.get_by_role("button", name="로그인").click()

    page.locator("#category").select_option("administrative")
    page.locator("#district").select_option(str(stack.district_id))
    expect(page.get_by_role("button", name="마이크 켜기")).to_be_visible(timeout=LONG)
    assert_accessible(page, "talk page")
    page.get_by_role("button", name="마이크 켜기").click()
    expect(page.get_by_role("button", name="방송 시작")).to_be_enabled(timeout=LONG)
    # The level meter follows the microphone.
    page.wait_for_function(
        "() => parseFloat(document.getElementById('level').style.width) > 0", timeout=LONG
    )
    page.get_by_role("button", name="방송 시작").click()
    page.wait_for_function(
        "() => ['말씀하세요', '연결이 끊겼습니다']"
        ".includes(document.getElementById('state').textContent)",
        timeout=LONG,
    )
    assert page.locator("#state").inner_text() == "말씀하세요", page.locator(
        "#message"
    ).inner_text()

    talk = page.locator("#ptt")
    talk.hover()
    page.mouse.down()
    expect(page.locator("#state")).to_have_text("방송 중")
    # Every speaker of the district plays it, and the gateway has had a second of speech.
    speakers = int(page.locator("#speakers").inner_text())
    assert speakers > 0
    expect(page.locator("#playing")).to_have_text(str(speakers), timeout=LONG)
    page.wait_for_function(
        "() => parseFloat(document.getElementById('sent').textContent) >= 1.0", timeout=LONG
    )
    screenshot(page, "talk-live")
    page.mouse.up()
    expect(page.locator("#state")).to_have_text("잠시 멈춤")
    page.get_by_role("button", name="방송 끝내기").click()
    expect(page.locator("#state")).to_have_text("방송이 끝났습니다", timeout=LONG)
    expect(page.locator("#message")).to_contain_text("녹음되어 보관")

    # The speakers answer "played" after the session has ended: the page follows the broadcast
    # to the final count, which is every speaker of the district, as in the record.
    expect(page.locator("main")).to_have_attribute("data-settled", "true", timeout=LONG)
    expect(page.locator("#played")).to_have_text(str(speakers))
    broadcast_id = page.locator("main").get_attribute("data-broadcast")
    assert broadcast_id
    body = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert body["speakers"]["played"] == speakers, body
