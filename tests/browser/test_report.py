"""The board's CSV report carries each speaker's proof of play and live reception, and each
village's speakers played, households confirmed and residents told by SMS."""

from __future__ import annotations

import csv
import io
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack
from tests.support.axe import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000


def test_the_report_shows_what_each_speaker_proved_it_played(desktop: Page, stack: Stack) -> None:
    response = stack.api.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "text": "재생 증명 보고서 시험입니다.",
            "title": "재생 증명 보고서",
            "village_ids": stack.district_village_ids,
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    broadcast_id = response.json()["id"]
    for _ in range(600):
        detail = stack.api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
        if detail["state"] == "completed":
            break
        time.sleep(0.2)
    speakers = {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}
    assert all(s["state"] == "played" for s in speakers.values()), speakers

    page = desktop
    page.goto(f"/console#/board/{broadcast_id}")
    page.get_by_label("아이디").fill(stack.admin)
    page.get_by_label("비밀번호").fill(stack.password)
    page.get_by_role("button", name="로그인").click()
    expect(page.locator("[data-broadcast-state='completed']")).to_be_visible(timeout=LONG)
    with page.expect_download() as download:
        page.get_by_role("button", name="보고서 내려받기 (CSV)").click()
    assert_accessible(page, "console board after its report")
    text = download.value.path().read_text(encoding="utf-8-sig")
    header, *rows = list(csv.reader(io.StringIO(text)))
    proof_at = header.index("재생한 오디오 (sha256)")
    assert header[proof_at : proof_at + 8] == [
        "재생한 오디오 (sha256)",
        "재생 시간 (ms)",
        "출력 레벨 (dBFS)",
        "재생 증명 서명",
        "실시간 지연 (ms)",
        "실시간 손실 프레임",
        "입에서 스피커까지 p50 (ms)",
        "입에서 스피커까지 p95 (ms)",
    ]
    assert header[proof_at + 8 :] == [
        "마을 스피커 방송 완료",
        "마을 확인한 가구",
        "마을 문자로 알린 주민",
        "마을 문자 도착",
        "마을 문자 실패",
        "마을 입에서 스피커까지 p95 (ms, 가장 느린 스피커)",
        "마을 실시간 손실 프레임",
    ]
    played = {v["code"]: v["speakers_played"] for v in detail["village_deliveries"]}
    assert len(rows) == len(speakers)
    attempts = header.index("시도 횟수")
    for row in rows:
        # Every speaker here played after the gateway sent it the command: at least one send.
        assert int(row[attempts]) == speakers[row[2]]["sends"] >= 1, row
        proof = speakers[row[2]]["proof"]
        sha, played_ms, level, signed = row[proof_at : proof_at + 4]
        assert (sha, int(played_ms), signed) == (
            proof["audio_sha256"],
            proof["played_ms"],
            "검증됨",
        ), row
        assert float(level) == proof["level_dbfs"]
        assert row[proof_at + 4 : proof_at + 8] == ["", "", "", ""]  # not a live broadcast
        # Every speaker played: no village told by SMS.
        assert row[proof_at + 8 :] == [str(played[row[1]]), "0", "0", "0", "0", "", ""], row
