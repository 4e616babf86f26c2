"""The people's pages end to end: office console, village head's phone page, residents' page."""

from __future__ import annotations

import io
import json
import math
import re
import struct
import time
import wave

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Stack, screenshot
from tests.support.axe import assert_accessible
from tests.support.people import bearer

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: generous bounds for a loaded machine; the tests wait for states, not time


def _log_in(page: Page, username: str, password: str, *, button: str) -> None:
    page.get_by_label("아이디").fill(username)
    page.get_by_label("비밀번호").fill(password)
    page.get_by_role("button", name=button).click()


def _wait_until_completed(stack: Stack, broadcast_id: str) -> None:
    """Poll the API until no delivery can change (a bound so that a broken run ends)."""
    for _ in range(600):
        body = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
        if body["state"] in ("completed", "cancelled"):
            assert body["speakers"]["played"] == body["speakers"]["total"], body
            return
        time.sleep(0.2)
    raise AssertionError(f"broadcast {broadcast_id} never completed")


def test_officer_sends_to_a_whole_district_and_watches_every_village_play(
    desktop: Page, stack: Stack
) -> None:
    page = desktop
    page.goto("/console")
    screenshot(page, "console-login")
    _log_in(page, stack.officer, stack.password, button="로그인")

    district_box = page.locator(f"[data-district-box='{stack.district_id}']")
    expect(district_box).to_be_visible()
    district_box.check()
    page.locator(".district").first.locator(".toggle").click()
    for village_id in stack.district_village_ids:
        expect(page.locator(f"[data-village-box='{village_id}']")).to_be_checked()
    expect(page.locator(f"[data-village-box='{stack.other_village_id}']")).to_have_count(0)
    page.get_by_label("제목 (선택)").fill("폭염 주의 안내")
    page.get_by_label("방송할 말").fill("오늘 낮 기온이 35도까지 오릅니다. 낮에는 밭일을 쉬세요.")
    expect(page.locator("#send-summary")).to_contain_text(
        f"마을 {len(stack.district_village_ids)}곳"
    )
    screenshot(page, "console-compose")
    page.get_by_role("button", name="방송 보내기", exact=True).click()

    page.wait_for_url(re.compile(r"#/board/[0-9a-f]{32}$"), timeout=LONG)
    tiles = page.locator(".tile")
    expect(tiles).to_have_count(len(stack.district_village_ids), timeout=LONG)
    expect(page.locator(".tile[data-state='played']")).to_have_count(
        len(stack.district_village_ids), timeout=LONG
    )
    expect(page.locator("[data-broadcast-state='completed']")).to_be_visible(timeout=LONG)
    expect(page.get_by_role("button", name="방송 취소")).to_be_disabled()
    expect(page.get_by_role("button", name="놓친 곳에 다시 보내기")).to_be_disabled()
    screenshot(page, "console-board")

    page.get_by_role("link", name="방송 기록").click()
    expect(page.locator("tr[data-id]").first).to_contain_text("폭염 주의 안내")
    screenshot(page, "console-history")
    page.get_by_role("link", name="장비 상태").click()
    expect(page.locator("#device-table tbody tr").first).to_be_visible()
    screenshot(page, "console-devices")
    page.get_by_role("link", name="승인 대기").click()
    expect(page.get_by_role("heading", name="승인 대기")).to_be_visible()


def _tone_wav(seconds: float = 2.0, rate: int = 16_000) -> bytes:
    samples = (
        int(12_000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", v) for v in samples))
    return buffer.getvalue()


def test_officer_uploads_a_test_broadcast_to_a_village_found_by_name(
    desktop: Page, stack: Stack
) -> None:
    page = desktop
    page.goto("/console")
    _log_in(page, stack.officer, stack.password, button="로그인")
    page.get_by_label("마을 이름 찾기").fill(stack.head_village_name)
    village_box = page.locator(f"[data-village-box='{stack.head_village_id}']")
    expect(village_box).to_be_visible()
    for other in set(stack.district_village_ids) - {stack.head_village_id}:
        expect(page.locator(f"[data-village-row='{other}']")).to_be_hidden()
    village_box.check()
    page.get_by_role("tab", name="파일 올리기").click()
    page.get_by_label(re.compile("음성 파일")).set_input_files(
        {"name": "tone.wav", "mimeType": "audio/wav", "buffer": _tone_wav()}
    )
    page.get_by_label("제목 (선택)").fill("시험 방송 점검")
    page.get_by_role("radio", name="시험 방송").check()
    expect(page.locator("#send-summary")).to_contain_text("시험 방송(실제 상황 아님)")
    page.get_by_role("button", name="방송 보내기", exact=True).click()

    page.wait_for_url(re.compile(r"#/board/[0-9a-f]{32}$"), timeout=LONG)
    broadcast_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#board-title .mode-test")).to_have_text("시험 방송")
    expect(page.locator(".tile")).to_have_count(1)
    expect(page.locator("[data-broadcast-state='completed']")).to_be_visible(timeout=LONG)
    expect(page.locator(".tile[data-state='played']")).to_have_count(1)
    body = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert (body["mode"], body["text"]) == ("test", None)

    page.get_by_role("link", name="방송 기록").click()
    page.get_by_label("구분").select_option("test")
    page.get_by_role("button", name="찾기").click()
    expect(page.locator("tr[data-id]")).to_have_count(1)
    expect(page.locator(f"tr[data-id='{broadcast_id}']")).to_contain_text("시험 방송 점검")

    public = httpx.get(f"{stack.url}/api/v1/notices/villages/{stack.head_village_id}", timeout=60)
    assert broadcast_id not in {n["id"] for n in public.json()["items"]}


def test_village_head_sends_from_a_phone_to_the_own_village_only(phone: Page, stack: Stack) -> None:
    page = phone
    page.goto("/phone")
    screenshot(page, "phone-login")
    _log_in(page, stack.head, stack.password, button="들어가기")

    expect(page.get_by_role("link", name=re.compile("녹음해서 보내기"))).to_be_visible()
    choices = page.locator("[data-village-choice]")
    expect(choices).to_have_count(1)
    expect(choices).to_contain_text(stack.head_village_name)
    expect(page.get_by_text(stack.other_village_name)).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("지금 바로 말하기"))).to_have_attribute(
        "href", "#/live"
    )
    screenshot(page, "phone-home")

    page.get_by_role("link", name=re.compile("글로 써서 보내기")).click()
    page.get_by_label("방송할 말").fill("내일 아침 7시에 마을회관 앞 청소를 합니다.")
    screenshot(page, "phone-text")
    page.get_by_role("button", name="마을에 방송하기").click()
    page.wait_for_url(re.compile(r"#/sent/[0-9a-f]{32}$"), timeout=LONG)
    count = page.locator("#played-count")
    expect(count).to_have_attribute("data-total", re.compile(r"[1-9]"), timeout=LONG)
    total = count.get_attribute("data-total")
    expect(page.locator("#played-of")).to_have_text(
        f"스피커 {total}대 중 {total}대 방송했습니다", timeout=LONG
    )
    expect(page.locator("#status-line")).to_have_text("모든 스피커가 방송했습니다.", timeout=LONG)
    screenshot(page, "phone-sent")

    # The API refuses what the page never offers: another village.
    refused = httpx.post(
        f"{stack.url}/api/v1/broadcasts",
        headers=bearer(stack.token(stack.head)),
        data={
            "category": "village_notice",
            "text": "다른 마을에 보내 봅니다.",
            "village_ids": [str(stack.other_village_id)],
        },
        timeout=60,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "outside_scope"


def test_village_head_records_on_the_phone_and_every_speaker_plays_it(
    phone_with_microphone: Page, stack: Stack
) -> None:
    page = phone_with_microphone
    page.goto("/phone")
    _log_in(page, stack.head, stack.password, button="들어가기")
    page.get_by_role("link", name=re.compile("녹음해서 보내기")).click()
    mic = page.get_by_role("button", name="녹음 시작")
    mic.click()
    # A few seconds of the fake microphone's beep: long enough to be a broadcast.
    expect(page.locator("#timer")).to_have_text(re.compile(r"0:0[3-9]"), timeout=LONG)
    page.get_by_role("button", name="녹음 끝").click()
    expect(page.locator("#playback")).to_be_visible()
    screenshot(page, "phone-record")
    page.get_by_role("button", name="마을에 방송하기").click()
    page.wait_for_url(re.compile(r"#/sent/[0-9a-f]{32}$"), timeout=LONG)
    expect(page.locator("#status-line")).to_have_text("모든 스피커가 방송했습니다.", timeout=LONG)
    sent_id = page.url.rsplit("/", 1)[1]
    body = stack.api.get(f"/api/v1/broadcasts/{sent_id}").json()
    assert body["text"] is None, "a recording, not typed text"
    assert body["target"]["village_ids"] == [stack.head_village_id]
    assert body["speakers"]["played"] == body["speakers"]["total"] > 0


def test_residents_read_and_hear_what_their_village_played(phone: Page, stack: Stack) -> None:
    page = phone
    text = "주민 여러분, 오늘 오후 2시에 예방 접종이 있습니다."
    translated = "Kính gửi bà con, chiều nay lúc 2 giờ có tiêm chủng."
    sent = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "title": "예방 접종 안내",
            "text": text,
            "texts": json.dumps({"vi": translated}),
            "village_ids": [str(stack.head_village_id)],
        },
    )
    assert sent.status_code == 201, sent.text
    _wait_until_completed(stack, sent.json()["id"])
    # An exercise right after, to the same village, played the same way: never shown to residents.
    exercise = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "mode": "exercise",
            "title": "대피 훈련",
            "text": "훈련 상황입니다. 실제 상황이 아닙니다.",
            "village_ids": [str(stack.head_village_id)],
        },
    )
    assert exercise.status_code == 201, exercise.text
    _wait_until_completed(stack, exercise.json()["id"])

    page.goto("/notices")
    page.get_by_label("마을 이름").fill(stack.head_village_name)
    page.get_by_role("button", name="찾기").click()
    page.get_by_role("link", name=re.compile(stack.head_village_name)).click()
    page.wait_for_url(f"**/notices/{stack.head_village_id}")

    notice = page.locator(f"[data-notice='{sent.json()['id']}']")
    expect(notice).to_contain_text(text)
    expect(notice).to_contain_text("예방 접종 안내")
    expect(notice).to_have_attribute("data-played", "true")  # no "not played" label on it
    expect(notice.locator(".unplayed")).to_have_count(0)
    expect(page.locator(f"[data-notice='{exercise.json()['id']}']")).to_have_count(0)
    expect(page.get_by_text("대피 훈련")).to_have_count(0)
    play = notice.locator("button.play")
    expect(play).to_have_text(re.compile("다시 듣기"))
    play.click()
    expect(play).to_have_attribute("aria-pressed", "true", timeout=LONG)
    screenshot(page, "notices-village")

    # In the resident's language, remembered for the next visit.
    page.get_by_label("언어 · Language").select_option("vi")
    page.wait_for_url("**lang=vi")
    expect(notice).to_contain_text(translated)
    expect(notice).to_have_attribute("lang", "vi")
    page.goto(f"/notices/{stack.head_village_id}")
    expect(notice).to_contain_text(translated)
    expect(page.get_by_label("언어 · Language")).to_have_value("vi")


def test_an_admin_manages_people_and_approves_a_city_wide_alert(
    desktop: Page, stack: Stack
) -> None:
    page = desktop
    # A disaster alert to the whole city waits for a second person.
    requested = stack.api.post(
        "/api/v1/broadcasts",
        headers=bearer(stack.token(stack.safety)),
        data={
            "category": "disaster",
            "title": "산불 대피",
            "text": "산불이 번지고 있습니다. 마을회관으로 대피하세요.",
            "all_villages": "true",
        },
    )
    assert requested.status_code == 202, requested.text
    approval_id = requested.json()["id"]

    page.goto("/console")
    _log_in(page, stack.admin, stack.password, button="로그인")
    page.get_by_role("link", name="사용자 관리").click()
    for username in (stack.officer, stack.head):
        expect(page.get_by_role("cell", name=username, exact=True)).to_be_visible()
    form = page.locator("#new-user")
    form.get_by_label("아이디").fill("police1")
    form.get_by_label("이름", exact=True).fill("가람면 파출소")
    form.get_by_label("역할").select_option("police_officer")
    form.get_by_label("처음 비밀번호").fill("maeul-police-1")
    form.get_by_label("담당 읍·면·동").select_option(str(stack.district_id))
    form.get_by_role("button", name="추가").click()
    expect(page.get_by_role("cell", name="police1", exact=True)).to_be_visible(timeout=LONG)
    screenshot(page, "console-users")

    page.get_by_role("link", name=re.compile("승인 대기")).click()
    request = page.locator(f"[data-approval='{approval_id}']")
    expect(request).to_contain_text("산불 대피")
    expect(request).to_contain_text("시 전체")
    # The recording that will go out can be heard first; approving signs its hash.
    sha256 = requested.json()["audio_sha256"]["opus"]
    expect(request).to_contain_text(f"음성 지문(SHA-256): {sha256[:12]}", timeout=LONG)
    heard = request.get_by_label("나갈 음성 듣기")
    expect(heard).to_have_attribute("src", re.compile("^blob:"))
    heard.evaluate("audio => audio.play()")
    expect(heard).to_have_js_property("paused", False, timeout=LONG)
    screenshot(page, "console-approvals")
    assert_accessible(page, "console approvals with a request")
    with page.expect_request(re.compile(r"/approve$")) as approving:
        request.get_by_role("button", name="승인하고 보내기").click()
    assert approving.value.post_data_json == {"audio_sha256": sha256}

    # The second person's approval sends it at once: every village plays the alert.
    page.wait_for_url(re.compile(r"#/board/[0-9a-f]{32}$"), timeout=LONG)
    expect(page.locator("[data-broadcast-state='completed']")).to_be_visible(timeout=LONG)
    expect(page.locator(".tile")).to_have_count(
        len(stack.api.get("/api/v1/villages").json()["items"])
    )
    expect(page.locator(".tile:not([data-state='played'])")).to_have_count(0)


def test_the_console_keeps_its_tokens_in_the_tab_and_logging_out_drops_them(
    desktop: Page, stack: Stack
) -> None:
    page = desktop
    page.goto("/console")
    _log_in(page, stack.officer, stack.password, button="로그인")
    expect(page.get_by_role("button", name="로그아웃")).to_be_visible()
    stored = page.evaluate("[sessionStorage.getItem('maeul.console'), localStorage.length]")
    assert stored[0] is not None
    assert "refresh" in stored[0]
    assert stored[1] == 0, "no token outlives the tab on a shared office PC"
    page.get_by_role("button", name="로그아웃").click()
    expect(page.get_by_role("button", name="로그인")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('maeul.console')") is None


def test_failures_are_told_in_korean(desktop: Page, stack: Stack) -> None:
    page = desktop
    page.goto("/console")
    _log_in(page, stack.officer, stack.password, button="로그인")
    # The gateway's own refusal: its Korean half.
    page.get_by_label("방송할 말").fill("!!! ???")
    page.get_by_role("button", name="미리 듣기").click()
    expect(page.locator("#compose-message .notice.error")).to_be_visible(timeout=LONG)
    message = page.locator("#compose-message .notice.error").inner_text()
    assert re.search("[가-힣]", message), message
    assert " / " not in message, "only the Korean half"
    # No answer at all: still a sentence, in Korean, never nothing.
    page.get_by_role("link", name="방송 기록").click()
    expect(page.get_by_role("heading", name="방송 기록")).to_be_visible()
    page.route("**/api/v1/broadcasts?*", lambda route: route.abort())
    page.get_by_role("button", name="찾기").click()
    expect(page.locator("#history-message .notice.error")).to_contain_text(
        "서버에 연결하지 못했습니다"
    )


def test_what_senders_typed_is_shown_as_text_never_run(
    desktop: Page, phone: Page, stack: Stack
) -> None:
    title = '<img src="/x" id="xss-title" onerror="window.hacked=1">'
    text = '</p><script>window.hacked=2</script><b id="xss-text">굵게</b> & "따옴표"'
    # Sent by the village head, so it is in the head's own history on the phone too.
    sent = stack.api.post(
        "/api/v1/broadcasts",
        headers=bearer(stack.token(stack.head)),
        data={
            "category": "administrative",
            "title": title,
            "text": text,
            "village_ids": [str(stack.head_village_id)],
        },
    )
    assert sent.status_code == 201, sent.text
    broadcast_id = sent.json()["id"]
    _wait_until_completed(stack, broadcast_id)

    desktop.goto("/console")
    _log_in(desktop, stack.officer, stack.password, button="로그인")
    desktop.get_by_role("link", name="방송 기록").click()
    expect(desktop.locator(f"tr[data-id='{broadcast_id}']")).to_contain_text(title)
    desktop.locator(f"tr[data-id='{broadcast_id}']").click()
    expect(desktop.locator("#board-title")).to_contain_text(title)
    expect(desktop.locator("#board-meta")).to_contain_text("<script>")

    phone.goto("/phone")
    _log_in(phone, stack.head, stack.password, button="들어가기")
    expect(phone.locator("#history")).to_contain_text(title)
    phone.goto(f"/notices/{stack.head_village_id}")
    notice = phone.locator(f"[data-notice='{broadcast_id}']")
    expect(notice).to_contain_text(title)
    expect(notice).to_contain_text(text)

    for page in (desktop, phone):
        assert page.locator("#xss-title, #xss-text").count() == 0
        assert page.evaluate("window.hacked") is None


def test_a_report_never_hands_a_spreadsheet_a_formula(desktop: Page) -> None:
    desktop.goto("/notices")
    text = desktop.evaluate(
        """csvText([["=HYPERLINK(\\"http://x\\")", "+1", "-2", "@A1", "보통, 글", 3, "a\\rb"]])"""
    )
    assert text == '"\'=HYPERLINK(""http://x"")",\'+1,\'-2,\'@A1,"보통, 글",3,"a\rb"'


def test_officer_schedules_a_repeated_exercise(desktop: Page, stack: Stack) -> None:
    page = desktop
    page.goto("/console")
    _log_in(page, stack.officer, stack.password, button="로그인")
    page.locator(f"[data-district-box='{stack.district_id}']").check()
    page.get_by_label("제목 (선택)").fill("대피 훈련 예약")
    page.get_by_label("방송할 말").fill("내일 대피 훈련이 있습니다.")
    # Village news has an hourly share per village that the tests before may have used up.
    page.get_by_role("radio", name="행정 안내").check()
    page.get_by_role("radio", name="훈련 방송").check()
    page.get_by_role("radio", name="예약해서 보내기").check()
    page.get_by_label("보낼 시각").fill("2099-01-02T09:30")
    page.get_by_label("모두 몇 번").fill("3")
    page.get_by_label("몇 분마다").fill("15")
    page.get_by_role("button", name="방송 보내기", exact=True).click()
    expect(page.locator("#compose-message .notice.ok")).to_contain_text(
        "예약했습니다", timeout=LONG
    )

    [schedule] = [
        s
        for s in stack.api.get("/api/v1/schedules", params={"limit": 200}).json()["items"]
        if s["title"] == "대피 훈련 예약"
    ]
    cancelled = stack.api.post(f"/api/v1/schedules/{schedule['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert schedule["mode"] == "exercise"
    assert schedule["send_at"].startswith("2099-01-02T09:30:00+09:00") or schedule[
        "send_at"
    ].startswith("2099-01-02T00:30:00")
    assert (schedule["recurrence"]["repeat_count"], schedule["recurrence"]["repeat_every_min"]) == (
        3,
        15,
    )


def test_a_view_still_loading_never_draws_over_the_next_one(desktop: Page, stack: Stack) -> None:
    page = desktop
    page.goto("/console")
    held: list[Route] = []
    page.route("**/api/v1/districts*", lambda route: held.append(route))
    _log_in(page, stack.officer, stack.password, button="로그인")
    # The compose view waits for the districts; meanwhile the officer opens the history.
    expect(page.locator("#main p.muted")).to_have_text("불러오는 중...")
    page.get_by_role("link", name="방송 기록").click()
    expect(page.get_by_role("heading", name="방송 기록")).to_be_visible()
    assert len(held) == 1
    held[0].continue_()
    # The compose view has its places now (its next step would draw, were it still current).
    for _ in range(600):
        if page.evaluate("places !== null"):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the districts never arrived")
    expect(page.get_by_role("heading", name="방송 기록")).to_be_visible()
    expect(page.locator("#compose")).to_have_count(0)
    expect(page.locator("#history-message .notice")).to_have_count(0)
