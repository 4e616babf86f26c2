"""The board follows the speakers: while a recording plays, the console's tile and the phone page
say it is playing before they say it played."""

from __future__ import annotations

import io
import json
import math
import re
import struct
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

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


def _speaker(speaker_id: int, state: str, attempts: int, at: str) -> dict[str, object]:
    return {
        "speaker_id": speaker_id,
        "code": f"spk-{speaker_id}",
        "state": state,
        "online": True,
        "reason": None,
        "attempts": attempts,
        "updated_at": at,
        "played_at": at if state.startswith("played") else None,
    }


def _silent_detail(broadcast_id: str) -> dict[str, object]:
    """A broadcast 45 s old: one village's speaker never answered (asked three times), one
    village live with its latency, one played late."""
    now = datetime.now(UTC)
    sent = (now - timedelta(seconds=45)).isoformat()
    counts = {"total": 3, "sent": 1, "played": 1, "played_late": 1}
    return {
        "id": broadcast_id,
        "state": "in_progress",
        "category": "disaster",
        "mode": "live",
        "priority": 100,
        "title": "산불 대피",
        "text": None,
        "created_at": sent,
        "expires_at": (now + timedelta(hours=1)).isoformat(),
        "cancelled_at": None,
        "finished_at": None,
        "duration_ms": 30_000,
        "target": {"village_ids": [1, 2, 3]},
        "villages": {"total": 3, "played": 2, "in_progress": 1},
        "speakers": {
            **dict.fromkeys(("queued", "received", "playing", "preempted", "failed", "expired"), 0),
            "cancelled": 0,
            "offline": 0,
            **counts,
        },
        "village_deliveries": [
            {
                "village_id": 1,
                "code": "v1",
                "name": "윗마을",
                "outcome": "in_progress",
                "speakers": [_speaker(1, "sent", 3, sent)],
            },
            {
                "village_id": 2,
                "code": "v2",
                "name": "가운데마을",
                "outcome": "played",
                "live_latency_ms": 1200,
                "live_frames_lost": 3,
                "live_mouth_p95_ms": 1340,
                "speakers": [_speaker(2, "played", 0, sent)],
            },
            {
                "village_id": 3,
                "code": "v3",
                "name": "아랫마을",
                "outcome": "played",
                "speakers": [_speaker(3, "played_late", 0, sent)],
            },
        ],
    }


def _serve(page: Page, detail: dict[str, object]) -> None:
    """Answer the page's reads of one broadcast with `detail`, as the API and its stream would."""
    body = json.dumps(detail, ensure_ascii=False)
    base = re.escape(f"/api/v1/broadcasts/{detail['id']}")
    page.route(
        re.compile(base + r"(\?.*)?$"),
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    page.route(
        re.compile(base + r"/events(\?.*)?$"),
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=f"event: summary\ndata: {body}\n\n"
        ),
    )


def test_speakers_that_do_not_answer_are_told_not_left_grey(
    desktop: Page, phone: Page, stack: Stack
) -> None:
    detail = _silent_detail("f" * 32)
    for page in (desktop, phone):
        _serve(page, detail)
    desktop.goto("/console")
    _log_in(desktop, stack.officer, stack.password, button="로그인")
    expect(desktop.get_by_role("button", name="로그아웃")).to_be_visible()
    desktop.goto(f"/console#/board/{detail['id']}")

    silence = desktop.locator("#board-silence")
    expect(silence).to_be_visible(timeout=LONG)
    expect(silence).to_contain_text(re.compile(r"^스피커 응답 없음 \(1곳, [4-9]\d초째\)"))
    silent = desktop.locator(".tile[data-village='1']")
    expect(silent).to_have_attribute("data-state", "unanswered")
    expect(silent.locator(".st")).to_have_text("응답 없음")
    expect(desktop.locator("[data-count='unanswered'] b")).to_have_text("1")
    expect(desktop.locator(".tile[data-village='2'] .note")).to_have_text(
        "지연 1.2초 · 입에서 스피커까지 p95 1340ms, 손실 3"
    )
    late = desktop.locator(".tile[data-village='3']")
    expect(late).to_have_attribute("data-state", "played_late")
    expect(late.locator(".st")).to_have_text("늦게 방송됨")
    expect(desktop.locator("[data-count='played_late'] b")).to_have_text("1")
    screenshot(desktop, "console-board-unanswered")

    phone.goto("/phone")
    _log_in(phone, stack.head, stack.password, button="들어가기")
    expect(phone.get_by_role("link", name=re.compile("지금 바로 말하기"))).to_be_visible()
    phone.goto(f"/phone#/sent/{detail['id']}")
    expect(phone.locator("#silence")).to_contain_text(
        re.compile(r"스피커 1대가 응답하지 않습니다 \([4-9]\d초째\)"), timeout=LONG
    )
    expect(phone.locator("#played-of")).to_have_text("스피커 3대 중 2대 방송했습니다 (늦게 1대)")
    screenshot(phone, "phone-sent-unanswered")
