"""The village head's phone page and the residents' page on small phones (360 px),
in Korean: what a 65-year-old head runs into at night, offline and when a tap would lose work;
axe-core on every screen they pass through."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import VILLAGE_NOTICES_PER_HOUR, Stack, screenshot
from tests.support.axe import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: a bound for a loaded machine; the tests wait for states, not time
SEOUL = ZoneInfo("Asia/Seoul")

# What a page must hold to on a phone: every target a thumb can hit (48 CSS px each way, the
# label around a radio button being its target) and no text under 16 px.
_TOO_SMALL = """() => {
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden";
  };
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !shown(el) || el.closest("svg")) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < 16) found.push(`${size}px text: ${node.textContent.trim().slice(0, 24)}`);
  }
  for (const el of document.querySelectorAll("a[href], button, input, select, textarea")) {
    if (!shown(el)) continue;
    const target = ["radio", "checkbox"].includes(el.type) && el.closest("label") || el;
    const r = target.getBoundingClientRect();
    if (r.width < 48 || r.height < 48) {
      const name = (target.textContent || target.id || target.tagName).trim().slice(0, 24);
      found.push(`${Math.round(r.width)}x${Math.round(r.height)} target: ${name}`);
    }
  }
  return found;
}"""


def _check(page: Page, state: str) -> None:
    """axe-core finds nothing serious, and targets and text are big enough for a phone."""
    assert_accessible(page, state)
    assert page.evaluate(_TOO_SMALL) == [], state


def _log_in(page: Page, stack: Stack) -> None:
    page.get_by_label("아이디").fill(stack.head)
    page.get_by_label("비밀번호").fill(stack.password)
    page.get_by_role("button", name="들어가기").click()
    expect(page.get_by_role("link", name=re.compile("녹음해서 보내기"))).to_be_visible(timeout=LONG)


def _head_fits(page: Page) -> None:
    """The header says the village's name on one line, whole; Korean words are never broken."""
    title = page.locator("#bar-title")
    box = title.bounding_box()
    assert box is not None
    line = float(title.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
    assert box["height"] <= line * 1.2, "the header's title wraps"
    assert title.evaluate("el => el.scrollWidth <= el.clientWidth"), "the title is cut"
    assert page.evaluate("getComputedStyle(document.body).wordBreak") == "keep-all"


# Words split across two lines, in the text under `selector`: each run between ordinary spaces
# (a no-break space keeps "오후 6:00" one run) must sit on one line.
_BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const root of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent;
      for (const m of text.matchAll(/[^ \\t\\n]+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0)
          .map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""


def _fits_360(page: Page, text: str) -> None:
    """No sideways scroll at 360 px, and no word under `text` broken across lines."""
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate(_BROKEN_WORDS, text) == [], text


def _korean_clock(moment: datetime) -> str:
    """As the phone says a time of day: 오후 3:42."""
    local = moment.astimezone(SEOUL)
    half = "오전" if local.hour < 12 else "오후"
    return f"{half}\u00a0{(local.hour - 1) % 12 + 1}:{local.minute:02d}"


@contextmanager
def _quiet_hours_now(stack: Stack) -> Iterator[datetime]:
    """The head's district in quiet hours from half an hour ago to three hours from now; the
    district follows the city's (none, in the tests) again afterwards, and what the head left
    waiting is cancelled."""
    now = datetime.now(SEOUL)
    end = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    window = f"{now - timedelta(minutes=30):%H:%M}-{end:%H:%M}"
    path = f"/api/v1/quiet-hours/districts/{stack.district_id}"
    answer = stack.api.put(path, json={"window": window})
    assert answer.status_code == 200, answer.text
    try:
        yield end
    finally:
        stack.api.delete(path)
        for schedule in _waiting(stack):
            stack.api.post(f"/api/v1/schedules/{schedule['id']}/cancel")


def _waiting(stack: Stack) -> list[dict[str, object]]:
    page = stack.api.get("/api/v1/schedules", params={"state": "active", "limit": 200}).json()
    return [s for s in page["items"] if str(s["created_by"]).startswith(stack.head)]


def test_a_night_send_says_when_it_goes_is_listed_and_cancelled_at_360(
    phone_360: Page, stack: Stack
) -> None:
    page = phone_360
    page.goto("/phone")
    _check(page, "phone login")
    _log_in(page, stack)
    _check(page, "phone home")

    # The empty box's error goes once there is text, and shows where the head is looking.
    page.get_by_role("link", name=re.compile("글로 써서 보내기")).click()
    _head_fits(page)
    send = page.get_by_role("button", name="마을에 방송하기")
    send.click()
    error = page.get_by_text("방송할 말을 써 주세요.")
    expect(error).to_be_in_viewport()
    _check(page, "phone text, error shown")
    text = "오늘 밤 10시부터 마을 상수도 공사로 물이 끊깁니다."
    page.get_by_label("방송할 말").fill(text)
    expect(error).to_have_count(0)
    _check(page, "phone text compose")

    # The spoken preview shows that it plays, and stops when asked.
    page.get_by_role("button", name="미리 들어 보기").click()
    expect(page.get_by_text("미리 듣기 소리가 나오고 있습니다")).to_be_visible(timeout=LONG)
    stop = page.get_by_role("button", name="■ 듣기 멈추기")
    _check(page, "phone text, preview playing")
    stop.click()
    expect(page.get_by_text("미리 듣기 소리가 나오고 있습니다")).to_be_hidden()
    expect(page.get_by_role("button", name="미리 들어 보기")).to_be_visible()

    with _quiet_hours_now(stack) as end:
        send.click()
        held = page.locator("#message .notice.ok")
        expect(held).to_contain_text("나가도록 예약했습니다", timeout=LONG)
        [schedule] = _waiting(stack)
        goes = page.evaluate("iso => when(iso)", schedule["next_fire_at"])
        assert f"{end.month}월 {end.day}일" in goes
        expect(held).to_contain_text(f"{goes}에 나가도록 예약했습니다")
        expect(held).to_be_in_viewport()
        screenshot(page, "phone-deferred")

        # The home screen lists it, with when it goes.
        page.get_by_role("button", name="처음으로").click()
        waiting = page.locator(f"[data-schedule='{schedule['id']}']")
        expect(waiting).to_contain_text(text[:20])
        expect(waiting).to_contain_text(f"{goes}에 나갑니다")
        expect(page.locator("#history")).not_to_contain_text("아직 보낸 방송이 없습니다.")
        _check(page, "phone home, a send waiting")
        screenshot(page, "phone-home-waiting")

        # The same words again, while they wait: the head is asked first, and nothing is made.
        page.get_by_role("link", name=re.compile("글로 써서 보내기")).click()
        page.get_by_label("방송할 말").fill(text)
        page.get_by_role("button", name="마을에 방송하기").click()
        question = page.get_by_role("dialog", name="같은 방송이 이미 예약되어 있습니다")
        expect(question).to_contain_text(f"{goes}에 나갈 예정")
        _check(page, "phone text, duplicate question")
        question.get_by_role("button", name="보내지 않기").click()
        expect(page.locator("#message")).to_contain_text("보내지 않았습니다")
        assert len(_waiting(stack)) == 1

        # Cancelling asks first, saying what will not go out.
        page.get_by_role("button", name="처음으로").click()
        waiting.get_by_role("button", name="예약 취소").click()
        question = page.get_by_role("dialog", name="이 예약 방송을 취소할까요?")
        expect(question).to_contain_text(f"{goes}에 나갈")
        question.get_by_role("button", name="그대로 두기").click()
        expect(waiting).to_be_visible()
        waiting.get_by_role("button", name="예약 취소").click()
        question.get_by_role("button", name="예약 취소하기").click()
        expect(page.locator("#waiting")).to_be_hidden()
        expect(page.locator("#message")).to_contain_text("예약을 취소했습니다")
        expect(page.locator("#history")).not_to_contain_text("위에 있습니다")
        _check(page, "phone home, a send cancelled")
        cancelled = stack.api.get(f"/api/v1/schedules/{schedule['id']}").json()
        assert cancelled["state"] == "cancelled"

    # Talking live stays in the phone page, with the login it has (test_phone_live.py talks).
    page.get_by_role("link", name=re.compile("지금 바로 말하기")).click()
    page.wait_for_url(re.compile(r"/phone#/live$"))
    expect(page.get_by_role("button", name="말하기 시작")).to_be_visible()
    _check(page, "phone live talk")


def test_the_phone_home_fits_a_393_px_phone(phone_393: Page, stack: Stack) -> None:
    phone_393.goto("/phone")
    _log_in(phone_393, stack)
    _head_fits(phone_393)
    _check(phone_393, "phone home at 393 px")


def test_recording_again_asks_before_the_recording_is_lost_at_360(
    phone_360_with_microphone: Page, stack: Stack
) -> None:
    page = phone_360_with_microphone
    page.goto("/phone")
    _log_in(page, stack)
    page.get_by_role("link", name=re.compile("녹음해서 보내기")).click()
    _check(page, "phone record")
    page.get_by_role("button", name="녹음 시작").click()
    expect(page.locator("#timer")).to_have_text(re.compile(r"0:0[2-9]"), timeout=LONG)
    page.get_by_role("button", name="녹음 끝").click()
    playback = page.locator("#playback")
    expect(playback).to_have_attribute("src", re.compile("^blob:"))
    first = playback.get_attribute("src")
    _check(page, "phone recorded")

    page.get_by_role("button", name="다시 녹음").click()
    question = page.get_by_role("dialog", name="녹음을 지우고 다시 할까요?")
    expect(question).to_contain_text(re.compile(r"방금 녹음한 말씀\(\d+초\)이 지워집니다"))
    _check(page, "phone record, discard question")
    question.get_by_role("button", name="그대로 두기").click()
    expect(question).to_have_count(0)
    expect(playback).to_have_attribute("src", first or "")
    expect(page.get_by_role("button", name="마을에 방송하기")).to_be_visible()

    page.get_by_role("button", name="다시 녹음").click()
    page.get_by_role("button", name="지우고 다시 녹음").click()
    expect(page.get_by_role("button", name="녹음 끝")).to_be_visible()
    expect(page.get_by_role("button", name="마을에 방송하기")).to_be_hidden()
    expect(page.locator("#timer")).to_have_text(re.compile(r"0:0[2-9]"), timeout=LONG)
    page.get_by_role("button", name="녹음 끝").click()
    page.get_by_role("button", name="마을에 방송하기").click()
    page.wait_for_url(re.compile(r"#/sent/[0-9a-f]{32}$"), timeout=LONG)
    expect(page.locator("#status-line")).to_have_text("모든 스피커가 방송했습니다.", timeout=LONG)
    _head_fits(page)
    _check(page, "phone sent and played")


def test_offline_is_said_as_offline_and_the_login_survives_at_360(
    phone_360: Page, stack: Stack
) -> None:
    page = phone_360
    page.goto("/phone")
    _log_in(page, stack)
    # The page's service worker keeps the shell for a start without a network.
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=LONG)
    page.get_by_role("link", name=re.compile("글로 써서 보내기")).click()
    page.get_by_label("방송할 말").fill("내일 아침 마을 총회가 있습니다.")

    page.context.set_offline(True)
    page.get_by_role("button", name="마을에 방송하기").click()
    error = page.locator("#message .notice.error")
    expect(error).to_contain_text("서버에 연결하지 못했습니다", timeout=LONG)
    expect(error).to_be_in_viewport()
    expect(page.get_by_role("button", name="다시 보내기")).to_be_visible()
    _check(page, "phone send failed offline")
    screenshot(page, "phone-offline-send")

    page.reload()
    expect(page.get_by_role("heading", name="인터넷에 연결되어 있지 않습니다")).to_be_visible(
        timeout=LONG
    )
    expect(page.get_by_label("비밀번호")).to_have_count(0)
    _check(page, "phone opened offline")
    page.context.set_offline(False)
    # Back online, the head is still logged in and the screen they were on comes by itself.
    expect(page.get_by_label("방송할 말")).to_be_visible(timeout=LONG)
    page.get_by_role("button", name="처음으로").click()
    expect(page.get_by_role("link", name=re.compile("녹음해서 보내기"))).to_be_visible()


def test_residents_pages_read_large_and_pass_axe_at_360(phone_360: Page, stack: Stack) -> None:
    sent = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "title": "경로당 난방 점검",
            "text": "이번 주 목요일에 경로당 난방기를 점검합니다.",
            "village_ids": [str(stack.head_village_id)],
        },
    )
    assert sent.status_code == 201, sent.text
    for _ in range(600):
        if stack.api.get(f"/api/v1/broadcasts/{sent.json()['id']}").json()["state"] in (
            "completed",
            "cancelled",
        ):
            break
        time.sleep(0.2)
    page = phone_360
    page.goto("/notices")
    page.get_by_label("마을 이름").fill(stack.head_village_name)
    page.get_by_role("button", name="찾기").click()
    expect(page.get_by_role("link", name=re.compile(stack.head_village_name))).to_have_count(1)
    # Read out as "상촌리 문산읍", never as one word; the search fits the width.
    expect(
        page.get_by_role("link", name=f"{stack.head_village_name} {stack.district_name}")
    ).to_have_count(1)
    _fits_360(page, "main")
    signup = page.get_by_role("link", name="마을 방송 알림 신청")
    expect(signup).to_have_attribute("href", "/notices/signup")
    _check(page, "residents' village list")
    page.get_by_role("link", name=re.compile(stack.head_village_name)).click()
    notice = page.locator(f"[data-notice='{sent.json()['id']}']")
    expect(notice).to_contain_text("경로당 난방 점검")
    for part in (notice.locator(".badge"), notice.locator("time")):
        assert float(part.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")) >= 16
    other = page.get_by_role("link", name="다른 마을 보기")
    box = other.bounding_box()
    assert box is not None
    assert min(box["height"], box["width"]) >= 48, box
    expect(signup).to_be_visible()
    _check(page, "residents' village page")


def test_the_sign_up_page_fits_a_360_phone_reads_large_and_passes_axe(
    phone_360: Page, stack: Stack
) -> None:
    page = phone_360
    page.goto("/notices/signup")
    expect(page.locator("#consent-text dt").first).to_be_visible(timeout=LONG)
    page.get_by_label("사는 마을").fill(stack.head_village_name)
    page.get_by_role("button", name="찾기").click()
    expect(page.get_by_label("찾은 마을 중에서 고르기")).to_contain_text(stack.head_village_name)
    _check(page, "sign-up")
    _fits_360(page, "main")
    assert page.evaluate("getComputedStyle(document.body).wordBreak") == "keep-all"
    # The example in the empty search box is read whole.
    assert page.locator("#village-q").evaluate(
        """el => {
          const style = getComputedStyle(el);
          const pen = document.createElement("canvas").getContext("2d");
          pen.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
          const pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
          const room = el.clientWidth - pad;
          return pen.measureText(el.placeholder).width <= room;
        }"""
    )


@contextmanager
def _village_full(stack: Stack, broadcast_id: str) -> Iterator[None]:
    """The head's village has had its hour's share of village notices: copies of one sent to
    it, written to the database beside it, removed afterwards."""
    path = stack.database_url.split("///", 1)[1]
    made: list[str] = []
    with closing(sqlite3.connect(path, timeout=60)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(broadcasts)")]
        names = ", ".join(columns)
        row = db.execute(f"SELECT {names} FROM broadcasts WHERE id = ?", (broadcast_id,)).fetchone()
        for _ in range(VILLAGE_NOTICES_PER_HOUR - 1):
            copy = dict(zip(columns, row, strict=True))
            copy.update(id=uuid.uuid4().hex, command_id=uuid.uuid4().hex, idempotency_key=None)
            made.append(copy["id"])
            db.execute(
                f"INSERT INTO broadcasts ({names}) VALUES ({', '.join('?' * len(columns))})",
                [copy[c] for c in columns],
            )
        db.commit()
        try:
            yield
        finally:
            db.executemany("DELETE FROM broadcasts WHERE id = ?", [(m,) for m in made])
            db.commit()


def test_a_full_village_is_named_with_when_sending_works_again_at_360(
    phone_360: Page, stack: Stack
) -> None:
    sent = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "village_notice",
            "title": "마을 대청소",
            "text": "이번 토요일 아침 7시에 마을 대청소를 합니다.",
            "village_ids": [str(stack.head_village_id)],
        },
    )
    assert sent.status_code == 201, sent.text
    frees_at = datetime.fromisoformat(sent.json()["created_at"]) + timedelta(hours=1)
    page = phone_360
    page.goto("/phone")
    _log_in(page, stack)
    with _village_full(stack, sent.json()["id"]):
        page.get_by_role("link", name=re.compile("글로 써서 보내기")).click()
        page.get_by_label("방송할 말").fill("내일 아침 마을 회관에서 회의가 있습니다.")
        page.get_by_role("button", name="마을에 방송하기").click()
        refused = page.locator("#message .notice.error")
        expect(refused).to_contain_text(stack.head_village_name, timeout=LONG)
        expect(refused).not_to_contain_text("[")
        again = "|".join(_korean_clock(frees_at + timedelta(minutes=m)) for m in (0, 1))
        expect(refused).to_contain_text(re.compile(f"({again})부터 다시 보낼 수 있습니다"))
        # Sending again cannot work yet: the way home is offered instead.
        expect(page.get_by_role("button", name=re.compile("보내기|방송하기"))).to_have_count(0)
        home = page.get_by_role("link", name="처음으로")
        expect(home).to_be_visible()
        _fits_360(page, "#message")
        _check(page, "phone text, the village's hour full")
        home.click()
        expect(page.get_by_role("link", name=re.compile("녹음해서 보내기"))).to_be_visible()
