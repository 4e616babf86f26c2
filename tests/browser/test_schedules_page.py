"""The console's schedules page: a suspended person's schedule shows as paused, in Korean, and
cannot be resumed while they are suspended."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack
from tests.support.people import bearer

LONG = 120_000  # ms: a bound for a loaded machine; the test waits for states, not time


def test_a_suspended_persons_schedule_shows_as_paused(desktop: Page, stack: Stack) -> None:
    created = stack.api.post(
        "/api/v1/users",
        json={
            "username": "officer-suspended",
            "display_name": "정지될 담당자",
            "role": "district_officer",
            "password": stack.password,
            "district_ids": [stack.district_id],
        },
    )
    assert created.status_code == 201, created.text
    made = httpx.post(
        f"{stack.url}/api/v1/schedules",
        data={
            "category": "disaster",
            "mode": "exercise",
            "title": "정지 전 예약",
            "text": "대피 훈련 안내입니다.",
            "district_ids": [str(stack.district_id)],
            "send_at": "2099-03-01T09:00",
        },
        headers=bearer(stack.token("officer-suspended")),
        timeout=60,
    )
    assert made.status_code == 201, made.text
    schedule_id = made.json()["id"]
    suspended = stack.api.post(
        f"/api/v1/users/{created.json()['id']}/suspend", json={"reason": "계정 도용 의심"}
    )
    assert suspended.status_code == 200, suspended.text

    page = desktop
    page.goto("/console")
    page.get_by_label("아이디").fill(stack.admin)
    page.get_by_label("비밀번호").fill(stack.password)
    page.get_by_role("button", name="로그인").click()
    page.get_by_role("link", name="예약 방송").click()
    row = page.locator(f"tr[data-schedule='{schedule_id}']")
    expect(row).to_contain_text("일시 중지", timeout=LONG)
    expect(row).to_contain_text("만든 사람의 계정 정지")
    row.get_by_role("button", name="다시 시작").click()
    expect(page.locator("#schedule-message .notice.error")).to_contain_text("계정이 정지")

    row.get_by_role("button", name="취소").click()
    page.get_by_role("dialog", name="이 예약을 취소할까요?").get_by_role(
        "button", name="예약 취소하기"
    ).click()
    expect(page.locator(f"tr[data-schedule='{schedule_id}']")).to_contain_text(
        "취소됨", timeout=LONG
    )
