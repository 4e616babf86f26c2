"""The board follows the speakers: while a recording plays, the console's tile and the phone page
say it is playing before they say it played."""

from __future__ import annotations

import io
import math
import re
import struct
import time
import wave
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SPEED, Stack, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: a bound for a loaded machine; the test waits for states, not time
# The speakers play the recording for about this long (the fleet plays SPEED times faster),
# after a first message of BUSY_S seconds.
PLAY_S = 20
BUSY_S = 10


def _tone_wav(seconds: float, rate: int = 8_000) -> bytes:
    period = [int(9_000 * math.sin(2 * math.pi * 400 * i / rate)) for i in range(rate // 400)]
    samples = (period * (int(seconds * rate) // len(period) + 1))[: int(seconds * rate)]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buffer.getvalue()


def _log_in(page: Page, username: str, password: str, *, button: str) -> None:
    page.get_by_label("아이디").fill(username)
    page.get_by_label("비밀번호").fill(password)
    page.get_by_role("button", name=button).click()


def _phone_state(page: Page) -> str | None:
    return page.locator("#progress").get_attribute("data-state")


def _tile_state(page: Page, village_id: int) -> str | None:
    return page.locator(f".tile[data-village='{village_id}']").get_attribute("data-state")


def _watch(readers: dict[str, Callable[[], str | None]], until: str) -> dict[str, list[str]]:
    """Poll each page until every one shows `until`: the states each showed, in order."""
    seen: dict[str, list[str]] = {name: [] for name in readers}
    deadline = time.monotonic() + LONG / 1000
    while time.monotonic() < deadline:
        for name, read in readers.items():
            state = read()
            if state and (not seen[name] or seen[name][-1] != state):
                seen[name].append(state)
        if all(states and states[-1] == until for states in seen.values()):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the pages never all showed {until!r}: {seen}")


def _send(stack: Stack, title: str, play_s: float) -> str:
    sent = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "title": title,
            "village_ids": [str(stack.head_village_id)],
        },
        files={"file": ("tone.wav", _tone_wav(play_s * SPEED), "audio/wav")},
    )
    assert sent.status_code == 201, sent.text
    broadcast_id: str = sent.json()["id"]
    return broadcast_id


def _wait_until_playing(stack: Stack, broadcast_id: str) -> None:
    for _ in range(600):
        speakers = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()["speakers"]
        if speakers["playing"] == speakers["total"] > 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"broadcast {broadcast_id} never played on every speaker")


def test_board_and_phone_show_received_then_playing_then_played(
    desktop: Page, phone: Page, stack: Stack
) -> None:
    desktop.goto("/console")
    _log_in(desktop, stack.officer, stack.password, button="로그인")
    expect(desktop.get_by_role("button", name="로그아웃")).to_be_visible()
    phone.goto("/phone")
    _log_in(phone, stack.head, stack.password, button="들어가기")
    expect(phone.get_by_role("link", name=re.compile("지금 바로 말하기"))).to_be_visible()

    # The village's speakers are busy with a first message when the officer sends the second:
    # they have the second (received) for a while before they play it for PLAY_S seconds.
    _wait_until_playing(stack, _send(stack, "먼저 나가는 안내", BUSY_S))
    desktop.get_by_label("마을 이름 찾기").fill(stack.head_village_name)
    desktop.locator(f"[data-village-box='{stack.head_village_id}']").check()
    desktop.get_by_role("tab", name="파일 올리기").click()
    desktop.get_by_label(re.compile("음성 파일")).set_input_files(
        {"name": "long.wav", "mimeType": "audio/wav", "buffer": _tone_wav(PLAY_S * SPEED)}
    )
    desktop.get_by_label("제목 (선택)").fill("긴 안내 방송")
    desktop.get_by_role("radio", name="행정 안내").check()
    desktop.get_by_role("button", name="방송 보내기", exact=True).click()
    desktop.wait_for_url(re.compile(r"#/board/[0-9a-f]{32}$"), timeout=LONG)
    broadcast_id = desktop.url.rsplit("/", 1)[1]
    phone.goto(f"/phone#/sent/{broadcast_id}")

    seen = _watch(
        {
            "console": lambda: _tile_state(desktop, stack.head_village_id),
            "phone": lambda: _phone_state(phone),
        },
        until="played",
    )
    for name, states in seen.items():
        shown = [s for s in states if s in ("received", "playing", "played")]
        assert shown == ["received", "playing", "played"], f"{name} showed {states}"
    tile = desktop.locator(f".tile[data-village='{stack.head_village_id}']")
    expect(tile.locator(".st")).to_have_text("방송 완료")
    expect(phone.locator("#status-line")).to_have_text("모든 스피커가 방송했습니다.")
    screenshot(desktop, "console-board-followed")
    screenshot(phone, "phone-sent-followed")
