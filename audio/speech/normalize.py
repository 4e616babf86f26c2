"""Announcement text as it will be spoken: numbers, times, dates, phones, units and clauses.

espeak-ng's Korean voice reads every digit string as a Sino-Korean number ("3시" as "삼 시")
and clips long unpunctuated sentences, so the text is rewritten in words first and then cut
into clauses short enough to be read whole.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from audio.speech.errors import EmptyText, TextTooLong, UnspeakableText

__all__ = [
    "MAX_CLAUSE_CHARS",
    "MAX_TEXT_CHARS",
    "native_korean",
    "normalize",
    "sino_korean",
    "split_clauses",
    "strip_markup",
    "validate_text",
]

MAX_TEXT_CHARS: Final = 2000
MAX_CLAUSE_CHARS: Final = 40

_SINO_DIGITS: Final = "영일이삼사오육칠팔구"
_SINO_PLACES: Final = ("천", "백", "십", "")
_SINO_GROUPS: Final = ("", "만", "억", "조", "경")
_PHONE_DIGITS: Final = "공일이삼사오육칠팔구"
_NATIVE_ONES: Final = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_NATIVE_TENS: Final = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")
_DAY_PERIODS: Final = ("오전", "오후", "새벽", "아침", "낮", "저녁", "밤")
_WEEKDAYS: Final = "월화수목금토일"


def sino_korean(n: int) -> str:
    """12345 -> 만이천삼백사십오 (the reading of a number with no counter)."""
    if n == 0:
        return "영"
    words: list[str] = []
    group = 0
    while n:
        n, chunk = divmod(n, 10_000)
        if chunk:
            head = "" if chunk == 1 and group == 1 else _sino_chunk(chunk)
            words.append(head + _SINO_GROUPS[group])
        group += 1
    return "".join(reversed(words))


def _sino_chunk(n: int) -> str:
    out = []
    for digit, place in zip(f"{n:04d}", _SINO_PLACES, strict=True):
        d = int(digit)
        if d:
            out.append(place if d == 1 and place else _SINO_DIGITS[d] + place)
    return "".join(out)


def native_korean(n: int) -> str:
    """1..99 in the form used before a counter: 1 -> 한, 20 -> 스무, 21 -> 스물한."""
    if not 1 <= n <= 99:
        raise ValueError("native Korean numbers run from 1 to 99")
    tens, ones = divmod(n, 10)
    if n == 20:
        return "스무"
    return _NATIVE_TENS[tens] + _NATIVE_ONES[ones]


class _Kind(Enum):
    NATIVE = "native"  # 두 개, 스무 살; Sino-Korean above 99
    SINO = "sino"  # 삼 분, 이십오 도
    HOUR = "hour"  # 1-12 native, 13-23 as afternoon hours
    MEASURE = "measure"  # Sino-Korean units read "A에서 B unit" in ranges


@dataclass(frozen=True)
class _Counter:
    kind: _Kind
    spoken: str  # "{n}" stands for the number


def _counters(kind: _Kind, *words: str) -> dict[str, _Counter]:
    return {word: _Counter(kind, "{n} " + word) for word in words}


_HANGUL_COUNTERS: Final[dict[str, _Counter]] = {
    **_counters(
        _Kind.NATIVE,
        "시간", "개", "명", "마리", "살", "번째", "번", "대", "곳", "잔", "병", "권", "장",
        "가지", "그루", "송이", "켤레", "벌", "채", "척", "포기", "그릇", "봉지", "상자",
        "자루", "바퀴", "군데", "사람", "달", "차례", "배", "줄", "쌍", "분기",
    ),
    **_counters(
        _Kind.SINO,
        "분", "초", "원", "일", "월", "년", "층", "세", "호", "동", "리", "통", "반", "회",
        "차", "주년", "주", "개월", "단계", "번지", "세대", "가구", "인분", "년도", "학년",
        "등", "위", "박", "명분", "호실", "시군",
    ),
    **_counters(
        _Kind.MEASURE,
        "도", "퍼센트", "미터", "킬로미터", "센티미터", "밀리미터", "킬로그램", "그램",
        "리터", "톤", "평", "헥타르",
    ),
    "시": _Counter(_Kind.HOUR, "{n} 시"),
}  # fmt: skip
# Sino-Korean counters whose 1-word reading differs, and native ones with a special first.
_SPECIAL_READINGS: Final[dict[tuple[str, int], str]] = {
    ("월", 6): "유월",
    ("월", 10): "시월",
    ("번째", 1): "첫 번째",
}
_LATIN_UNITS: Final[dict[str, _Counter]] = {
    "km/h": _Counter(_Kind.MEASURE, "시속 {n} 킬로미터"),
    "m/s": _Counter(_Kind.MEASURE, "초속 {n} 미터"),
    "mm": _Counter(_Kind.MEASURE, "{n} 밀리미터"),
    "cm": _Counter(_Kind.MEASURE, "{n} 센티미터"),
    "km": _Counter(_Kind.MEASURE, "{n} 킬로미터"),
    "kg": _Counter(_Kind.MEASURE, "{n} 킬로그램"),
    "mg": _Counter(_Kind.MEASURE, "{n} 밀리그램"),
    "ml": _Counter(_Kind.MEASURE, "{n} 밀리리터"),
    "mL": _Counter(_Kind.MEASURE, "{n} 밀리리터"),
    "ha": _Counter(_Kind.MEASURE, "{n} 헥타르"),
    "kW": _Counter(_Kind.MEASURE, "{n} 킬로와트"),
    "g": _Counter(_Kind.MEASURE, "{n} 그램"),
    "m": _Counter(_Kind.MEASURE, "{n} 미터"),
    "L": _Counter(_Kind.MEASURE, "{n} 리터"),
    "t": _Counter(_Kind.MEASURE, "{n} 톤"),
    "°C": _Counter(_Kind.MEASURE, "{n} 도"),
    "°": _Counter(_Kind.MEASURE, "{n} 도"),
    "%": _Counter(_Kind.MEASURE, "{n} 퍼센트"),
}
_ABBREVIATIONS: Final[dict[str, str]] = {
    "CCTV": "씨씨티비",
    "KTX": "케이티엑스",
    "SRT": "에스알티",
    "LPG": "엘피지",
    "LED": "엘이디",
    "GPS": "지피에스",
    "ARS": "에이알에스",
    "ATM": "에이티엠",
    "SMS": "문자",
    "KT": "케이티",
    "LH": "엘에이치",
    "TV": "티비",
    "PC": "피씨",
    "QR": "큐알",
    "AI": "에이아이",
}
# Numbers read digit by digit even with no hyphen: emergency and public-service lines.
_SERVICE_NUMBERS: Final = ("1339", "1330", "112", "119", "114", "110", "120", "182", "128")

_NUM: Final = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_HANGUL_COUNTER_RE: Final = _alternation(list(_HANGUL_COUNTERS))
_LATIN_UNIT_RE: Final = rf"(?:{_alternation(list(_LATIN_UNITS))})(?![A-Za-z])"
_ANY_COUNTER: Final = rf"(?:{_HANGUL_COUNTER_RE})|{_LATIN_UNIT_RE}"

_TAG: Final = re.compile(r"<[^>\n]{0,200}>")
_MARKDOWN: Final = re.compile(r"[*_`#>|]+|^\s*[-•·▶▷►■□●○◆◇※★☆]+\s*", re.MULTILINE)
_EMOJI: Final = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2190-\u21ff\u25a0-\u25ff"
    "\ufe0f\u200d\u20e3\u203b\u2022\U000e0020-\U000e007f]"
)
_PHONE_SIGN: Final = re.compile(r"(?:☎|📞|☏|Tel\.?|TEL\.?|tel\.?)\s*:?\s*")
_WEEKDAY: Final = re.compile(rf"\s*\(([{_WEEKDAYS}])\)")
_PHONE: Final = re.compile(
    r"(?<![\d-])(?:(0\d{1,2})[-.\s)](\d{3,4})[-.\s](\d{4})|(1[5-9]\d{2})-(\d{4}))(?![\d-])"
)
_SERVICE: Final = re.compile(
    rf"(?<![\d.,:/-])({'|'.join(_SERVICE_NUMBERS)})(?![\d.,:/%-])"
    rf"(?!\s?(?:(?!번)(?:{_ANY_COUNTER})))"
)
_FULL_DATE: Final = re.compile(r"(?<![\d.])(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?![\d])\.?")
_SHORT_DATE: Final = re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?![\d/])")
_TIME: Final = r"(?:([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?)"
_TIME_RE: Final = re.compile(rf"(?<![\d:]){_TIME}(?![\d:])")
_TIME_RANGE: Final = re.compile(rf"(?<![\d:]){_TIME}\s*[~∼〜]\s*{_TIME}(?![\d:])")
_QTY_RANGE: Final = re.compile(
    rf"(?<![\d.,])({_NUM})\s?({_ANY_COUNTER})?\s*[~∼〜]\s*({_NUM})\s?({_ANY_COUNTER})"
)
_QTY: Final = re.compile(rf"(?<![\d.,])({_NUM})(?:({_HANGUL_COUNTER_RE})|\s?({_LATIN_UNIT_RE}))")
_BARE_NUMBER: Final = re.compile(rf"(?<![\d.,])({_NUM})(?![\d])")
_ABBREVIATION: Final = re.compile(
    rf"(?<![A-Za-z])({_alternation(list(_ABBREVIATIONS))})(?![A-Za-z])"
)
_SPEAKABLE: Final = re.compile(r"[0-9A-Za-z\uac00-\ud7a3\u3131-\u318e\u1100-\u11ff]")


def strip_markup(text: str) -> str:
    """Drop HTML tags and entities, Markdown marks, bullets and emoji; fold full-width forms."""
    text = html.unescape(_TAG.sub(" ", text))
    text = text.replace("㎡", "제곱미터").replace("m²", "제곱미터")
    text = _PHONE_SIGN.sub("전화 ", text)
    text = unicodedata.normalize("NFKC", text)
    text = _EMOJI.sub(" ", text)
    return _MARKDOWN.sub(" ", text)


def validate_text(text: str) -> str:
    """The text stripped of outer whitespace, or a typed error saying why it cannot be read."""
    stripped = text.strip()
    if not stripped:
        raise EmptyText()
    if len(stripped) > MAX_TEXT_CHARS:
        raise TextTooLong(
            f"방송 문구는 {MAX_TEXT_CHARS}자까지 가능합니다 (현재 {len(stripped)}자). / "
            f"Announcement text is limited to {MAX_TEXT_CHARS} characters "
            f"(got {len(stripped)})."
        )
    if not _SPEAKABLE.search(strip_markup(stripped)):
        raise UnspeakableText()
    return stripped


def normalize(text: str) -> str:
    """Rewrite `text` the way an announcer would read it: every number in words."""
    text = strip_markup(text)
    text = _WEEKDAY.sub(lambda m: f" {m[1]}요일", text)
    text = _PHONE.sub(_speak_phone, text)
    text = _SERVICE.sub(lambda m: _digits(m[1]), text)
    text = _FULL_DATE.sub(_speak_full_date, text)
    text = _SHORT_DATE.sub(_speak_short_date, text)
    text = _TIME_RANGE.sub(_speak_time_range, text)
    text = _TIME_RE.sub(lambda m: _speak_time(m, m.start()), text)
    text = _QTY_RANGE.sub(_speak_quantity_range, text)
    text = _QTY.sub(_speak_quantity, text)
    text = _BARE_NUMBER.sub(lambda m: _speak_number(m[1]), text)
    text = _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m[1]], text)
    return _tidy(text)


def _digits(digits: str) -> str:
    return "".join(_PHONE_DIGITS[int(d)] for d in digits)


def _speak_phone(m: re.Match[str]) -> str:
    return " ".join(_digits(group) for group in m.groups() if group)


def _month(n: int) -> str:
    return _SPECIAL_READINGS.get(("월", n), f"{sino_korean(n)} 월")


def _speak_full_date(m: re.Match[str]) -> str:
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    return f"{sino_korean(year)} 년 {_month(month)} {sino_korean(day)} 일"


def _speak_short_date(m: re.Match[str]) -> str:
    month, day = int(m[1]), int(m[2])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    return f"{_month(month)} {sino_korean(day)} 일"


def _has_day_period(text: str, start: int) -> bool:
    return text[:start].rstrip().endswith(_DAY_PERIODS)


def _spoken_hour(hour: int, *, with_period: bool) -> str:
    """13 -> 오후 한 시; the period word is left out when the text already says it."""
    if hour in (0, 24):
        period, hour = "밤", 12
    elif hour < 12:
        period = "오전"
    else:
        period, hour = "오후", hour - 12 if hour > 12 else hour
    word = f"{native_korean(hour)} 시" if hour else "영 시"
    return f"{period} {word}" if with_period else word


def _clock(hour: str, minute: str, second: str | None, *, with_period: bool) -> str:
    parts = [_spoken_hour(int(hour), with_period=with_period)]
    if int(minute):
        parts.append(f"{sino_korean(int(minute))} 분")
    if second and int(second):
        parts.append(f"{sino_korean(int(second))} 초")
    return " ".join(parts)


def _speak_time(m: re.Match[str], start: int) -> str:
    return _clock(m[1], m[2], m[3], with_period=not _has_day_period(m.string, start))


def _speak_time_range(m: re.Match[str]) -> str:
    first = _clock(m[1], m[2], m[3], with_period=not _has_day_period(m.string, m.start()))
    second = _clock(m[4], m[5], m[6], with_period=True)
    return f"{first}부터 {second}까지"


def _counter_for(unit: str) -> _Counter:
    return _HANGUL_COUNTERS.get(unit) or _LATIN_UNITS[unit]


def _speak_number(number: str) -> str:
    """A number with no counter: Sino-Korean, decimals read digit by digit after 점."""
    whole, _, fraction = number.replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        return _digits(whole)
    if len(whole) > 16:
        return " ".join(_digits(whole[i : i + 4]) for i in range(0, len(whole), 4))
    spoken = sino_korean(int(whole))
    if fraction:
        spoken += " 점 " + "".join(_SINO_DIGITS[int(d)] for d in fraction)
    return spoken


def _count(number: str, unit: str, *, period_known: bool) -> str:
    counter = _counter_for(unit)
    plain = number.replace(",", "")
    value = int(plain) if plain.isdigit() else -1
    if (unit, value) in _SPECIAL_READINGS:
        return _SPECIAL_READINGS[(unit, value)]
    # 20대 alone is an age group (이십 대), not twenty vehicles.
    age_group = unit == "대" and value % 10 == 0
    if counter.kind is _Kind.NATIVE and 1 <= value <= 99 and not age_group:
        words = native_korean(value)
    elif counter.kind is _Kind.HOUR and 1 <= value <= 23:
        return _spoken_hour(value, with_period=value > 12 and not period_known)
    else:
        words = _speak_number(number)
    return counter.spoken.format(n=words)


def _speak_quantity(m: re.Match[str]) -> str:
    unit = m[2] or m[3]
    return _count(m[1], unit, period_known=_has_day_period(m.string, m.start()))


def _speak_quantity_range(m: re.Match[str]) -> str:
    first_unit, last_unit = m[2] or m[4], m[4]
    period_known = _has_day_period(m.string, m.start())
    if _counter_for(last_unit).kind is _Kind.MEASURE and first_unit == last_unit:
        return f"{_speak_number(m[1])}에서 {_count(m[3], last_unit, period_known=True)}"
    first = _count(m[1], first_unit, period_known=period_known)
    last = _count(m[3], last_unit, period_known=period_known)
    return f"{first}부터 {last}까지"


_SYMBOLS: Final[dict[str, str]] = {
    "&": " 및 ",
    "+": " 더하기 ",
    "=": " ",
    "@": " 골뱅이 ",
    "/": " ",
    "·": " ",
    "~": "에서 ",
    "∼": "에서 ",
    "〜": "에서 ",
}
_SYMBOL_RE: Final = re.compile("|".join(re.escape(s) for s in _SYMBOLS))
_BRACKETS: Final = re.compile(r"[()\[\]{}「」『』【】〈〉《》\"'“”‘’]")
_SPACES: Final = re.compile(r"[ \t\u00a0\u3000]+")
_SPACE_BEFORE_MARK: Final = re.compile(r"\s+([.,!?])")
_REPEATED_MARKS: Final = re.compile(r"([.,!?])[.,!?]+")


def _tidy(text: str) -> str:
    text = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m[0]], text)
    text = _BRACKETS.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_MARK.sub(r"\1", text)
    text = _REPEATED_MARKS.sub(r"\1", text)
    lines = (line.strip(" ,") for line in text.splitlines())
    return "\n".join(line for line in lines if line)


_SENTENCE_END: Final = re.compile(r"(?<=[.!?。])\s+|\n+")
_COMMA: Final = re.compile(r"(?<=,)\s*")
_CONNECTIVES: Final = (
    "고", "며", "면서", "는데", "은데", "니까", "으니", "지만", "어서", "아서", "해서",
    "므로", "거나", "도록", "려고", "으면", "하면", "되면",
)  # fmt: skip


def split_clauses(text: str, max_chars: int = MAX_CLAUSE_CHARS) -> list[str]:
    """Cut text into clauses the engine reads whole.

    Always at sentence ends and line breaks; a sentence longer than `max_chars` also at its
    commas, then after connective endings (~고, ~며, ~는데, ~니까 ...), then between words.
    Short neighbours are packed back together up to `max_chars`.
    """
    clauses: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            clauses.append(sentence)
            continue
        pieces: list[str] = []
        for part in _COMMA.split(sentence):
            pieces.extend(_wrap(part.split(), max_chars))
        clauses.extend(_pack(pieces, max_chars))
    return clauses


def _ends_with_connective(word: str) -> bool:
    return word.rstrip(",.!?").endswith(_CONNECTIVES)


def _wrap(words: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for word in words:
        if current and len(" ".join([*current, word])) > max_chars:
            cut = _last_index(current, _ends_with_connective)
            if cut is None or cut == len(current) - 1:
                chunks.append(" ".join(current))
                current = []
            else:
                chunks.append(" ".join(current[: cut + 1]))
                current = current[cut + 1 :]
        current.append(word)
    if current:
        chunks.append(" ".join(current))
    return chunks


def _last_index(words: list[str], test: Callable[[str], bool]) -> int | None:
    for index in range(len(words) - 1, -1, -1):
        if test(words[index]):
            return index
    return None


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
            packed[-1] = f"{packed[-1]} {piece}"
        else:
            packed.append(piece)
    return packed
