"""Announcement text as spoken: numbers, counters, times, dates, phones, units, clauses."""

from __future__ import annotations

import pytest

from audio.speech.errors import EmptyText, TextTooLong, UnspeakableText
from audio.speech.normalize import (
    MAX_TEXT_CHARS,
    native_korean,
    normalize,
    sino_korean,
    split_clauses,
    validate_text,
)

CASES = [
    # native-Korean counters
    ("3시", "세 시"),
    ("2개", "두 개"),
    ("15명", "열다섯 명"),
    ("1마리", "한 마리"),
    ("20살", "스무 살"),
    ("21살", "스물한 살"),
    ("3번째", "세 번째"),
    ("1번째", "첫 번째"),
    ("2시간", "두 시간"),
    ("24시간 운영", "스물네 시간 운영"),
    ("차량 2대", "차량 두 대"),
    ("20대 남성", "이십 대 남성"),
    ("2차례", "두 차례"),
    ("100명", "백 명"),
    # Sino-Korean counters
    ("10분", "십 분"),
    ("3분", "삼 분"),
    ("25도", "이십오 도"),
    ("5월 3일", "오 월 삼 일"),
    ("6월 10일", "유월 십 일"),
    ("10월", "시월"),
    ("2026년", "이천이십육 년"),
    ("1,500원", "천오백 원"),
    ("30%", "삼십 퍼센트"),
    ("65세 이상", "육십오 세 이상"),
    ("3개월", "삼 개월"),
    ("10000원", "만 원"),
    # clock times
    ("07:00", "오전 일곱 시"),
    ("14:30", "오후 두 시 삼십 분"),
    ("오전 9시", "오전 아홉 시"),
    ("오후 2시", "오후 두 시"),
    ("14시", "오후 두 시"),
    ("12시", "열두 시"),
    # dates
    ("2026-11-23", "이천이십육 년 십일 월 이십삼 일"),
    ("11월 23일", "십일 월 이십삼 일"),
    ("11/23", "십일 월 이십삼 일"),
    ("11월 23일(월)", "십일 월 이십삼 일 월요일"),
    # phone numbers
    ("010-1234-5678", "공일공 일이삼사 오육칠팔"),
    ("055-749-2114", "공오오 칠사구 이일일사"),
    ("112", "일일이"),
    ("119에 신고", "일일구에 신고"),
    ("119 안전센터", "일일구 안전센터"),
    ("119명", "백십구 명"),
    ("☎ 055-749-2114", "전화 공오오 칠사구 이일일사"),
    # units and symbols
    ("10mm", "십 밀리미터"),
    ("15℃", "십오 도"),
    ("3km", "삼 킬로미터"),
    ("5kg", "오 킬로그램"),
    ("2.5mm", "이 점 오 밀리미터"),
    ("15m/s", "초속 십오 미터"),
    ("60km/h", "시속 육십 킬로미터"),
    ("CCTV 설치", "씨씨티비 설치"),
    # ranges
    ("3~5일", "삼 일부터 오 일까지"),
    ("9시~12시", "아홉 시부터 열두 시까지"),
    ("09:00~18:00", "오전 아홉 시부터 오후 여섯 시까지"),
    ("10~20mm", "십에서 이십 밀리미터"),
    # markup and emoji
    ("<b>안녕하세요</b> 😀", "안녕하세요"),
    ("**주의** 🚨 ※ 대피하세요!!", "주의 대피하세요!"),
    ("ｆｕｌｌ ３개", "full 세 개"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_whole_announcement() -> None:
    text = "11월 23일(월) 14:30, 마을회관에서 주민 15명이 모입니다. 문의 010-1234-5678"
    assert normalize(text) == (
        "십일 월 이십삼 일 월요일 오후 두 시 삼십 분, 마을회관에서 주민 열다섯 명이 모입니다. "
        "문의 공일공 일이삼사 오육칠팔"
    )


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "영"),
        (10, "십"),
        (11, "십일"),
        (1500, "천오백"),
        (2026, "이천이십육"),
        (10000, "만"),
        (110000, "십일만"),
        (100_000_000, "일억"),
    ],
)
def test_sino_korean(n: int, words: str) -> None:
    assert sino_korean(n) == words


def test_native_korean_range() -> None:
    assert [native_korean(n) for n in (1, 2, 3, 4, 20, 99)] == [
        "한", "두", "세", "네", "스무", "아흔아홉",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="1 to 99"):
        native_korean(100)


def test_split_keeps_short_sentences_whole() -> None:
    assert split_clauses("안녕하세요. 회의가 있습니다! 오세요?") == [
        "안녕하세요.",
        "회의가 있습니다!",
        "오세요?",
    ]


def test_split_long_sentence_at_commas_and_connectives() -> None:
    text = (
        "오늘 오후 세 시부터 마을회관 앞 도로에서 상수도 공사를 진행하고 "
        "공사 차량이 드나들며 소음이 발생하니까 "
        "주민 여러분께서는 통행에 각별히 주의해 주시기 바랍니다."
    )
    clauses = split_clauses(text)
    assert len(clauses) > 1
    assert all(len(c) <= 40 for c in clauses)
    assert " ".join(clauses) == text
    assert any(c.endswith(("진행하고", "드나들며", "발생하니까")) for c in clauses)


def test_split_at_line_breaks_and_commas() -> None:
    text = (
        "알립니다\n"
        + "내일은 비가 많이 오겠습니다, 외출을 삼가시고, 배수로를 미리 점검해 주십시오."
    )
    clauses = split_clauses(text)
    assert clauses[0] == "알립니다"
    assert all(len(c) <= 40 for c in clauses)
    assert clauses[-1].endswith("주십시오.")


def test_split_unbroken_text_between_words() -> None:
    text = " ".join(["마을"] * 40)
    clauses = split_clauses(text)
    assert all(len(c) <= 40 for c in clauses)
    assert " ".join(clauses) == text


@pytest.mark.parametrize(
    ("text", "error", "code"),
    [
        ("", EmptyText, "empty_text"),
        ("  \n\t ", EmptyText, "empty_text"),
        ("가" * (MAX_TEXT_CHARS + 1), TextTooLong, "text_too_long"),
        ("!!! ~~~ ***", UnspeakableText, "unspeakable_text"),
        ("<br/> 😀🎉", UnspeakableText, "unspeakable_text"),
    ],
)
def test_validate_text_rejects(text: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as raised:
        validate_text(text)
    assert getattr(raised.value, "code", None) == code
    assert getattr(raised.value, "status", None) == 422


def test_validate_text_messages_are_bilingual() -> None:
    with pytest.raises(TextTooLong) as raised:
        validate_text("가" * (MAX_TEXT_CHARS + 1))
    assert "2000자" in raised.value.detail
    assert "2000 characters" in raised.value.detail


def test_validate_text_accepts_and_strips() -> None:
    assert validate_text("  안녕하세요  ") == "안녕하세요"
    assert validate_text("119") == "119"
    assert validate_text("가" * MAX_TEXT_CHARS) == "가" * MAX_TEXT_CHARS
