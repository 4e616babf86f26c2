"""Announcements in several languages: which texts are accepted, which are spoken, and the
audio that reads Korean first and then each spoken language after a pause."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from audio.speech.engine import ToneEngine, speak_in_languages
from audio.speech.errors import EmptyText
from audio.speech.languages import (
    LANGUAGE_PAUSE_S,
    LANGUAGES,
    InvalidTexts,
    UnknownLanguage,
    known_texts,
    parse_texts,
    spoken_languages,
    validate_texts,
)


def test_every_voice_in_the_table_is_one_espeak_ng_has() -> None:
    listed = subprocess.run(
        ["espeak-ng", "--voices"], capture_output=True, text=True, check=True
    ).stdout
    names = set(re.findall(r"^\s*\d+\s+(\S+)", listed, re.MULTILINE))
    names |= set(re.findall(r"\(([a-z-]+) \d+\)", listed))
    for language in LANGUAGES.values():
        if language.voice is not None:
            assert language.voice in names, language.tag
    assert not {"tl", "fil"} & names, "Filipino stays text only until espeak-ng has a voice"
    assert LANGUAGES["tl"].voice is None


def test_texts_are_keyed_by_primary_tag_and_stripped() -> None:
    assert validate_texts({"zh-CN": " 请注意 ", "VI": "Chú ý"}) == {"vi": "Chú ý", "zh": "请注意"}
    assert parse_texts(None) == parse_texts("  ") == {}
    assert parse_texts('{"en": "Attention"}') == {"en": "Attention"}


@pytest.mark.parametrize(
    ("raw", "error", "code"),
    [
        ('{"fr": "Attention"}', UnknownLanguage, "unknown_language"),
        ('{"ko": "주의"}', UnknownLanguage, "unknown_language"),
        ('{"vi": "   "}', EmptyText, "empty_text"),
        ('["vi"]', InvalidTexts, "invalid_texts"),
        ('{"vi": 3}', InvalidTexts, "invalid_texts"),
        ("{vi", InvalidTexts, "invalid_texts"),
    ],
)
def test_bad_texts_are_refused_with_a_stable_code(
    raw: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as raised:
        parse_texts(raw)
    assert getattr(raised.value, "code", None) == code
    assert getattr(raised.value, "status", None) == 422


def test_spoken_languages_follow_the_enabled_order_and_need_a_text_and_a_voice() -> None:
    texts = {"vi": "Chú ý", "zh": "请注意", "tl": "Paalala"}
    assert spoken_languages(texts, ["zh", "vi"]) == ("zh", "vi")
    assert spoken_languages(texts, ["vi", "th", "tl", "ko", "vi"]) == ("vi",)
    assert spoken_languages(texts, []) == ()


def test_cap_infos_keep_known_languages_other_than_korean() -> None:
    infos = {"ko-KR": "주의", "en-US": "Warning", "en-GB": "Caution", "fr-FR": "Alerte", "vi": " "}
    assert known_texts(infos) == {"en": "Warning"}


def _segments(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """Stretches of sound separated by at least 0.9 s of silence, in seconds."""
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    segments: list[tuple[float, float]] = []
    start = previous = int(loud[0])
    for index in loud[1:]:
        if index - previous > 0.9 * rate:
            segments.append((start / rate, previous / rate))
            start = int(index)
        previous = int(index)
    segments.append((start / rate, previous / rate))
    return segments


def test_korean_first_then_each_spoken_language_after_a_pause() -> None:
    texts = {"vi": "Chú ý mọi người", "zh": "请注意", "ru": "Внимание"}
    korean = speak_in_languages("주민 여러분께 알려드립니다", texts, [], engine="tone")
    both = speak_in_languages("주민 여러분께 알려드립니다", texts, ["vi", "zh"], engine="tone")
    others = [ToneEngine(voice=tag).synthesize(texts[tag]).duration_s for tag in ("vi", "zh")]
    expected = korean.duration_s + sum(others) + 2 * LANGUAGE_PAUSE_S
    assert both.duration_s == pytest.approx(expected)
    assert len(_segments(both.samples, both.sample_rate)) == 3
    assert len(_segments(korean.samples, korean.sample_rate)) == 1


def test_espeak_reads_each_language_with_its_own_voice() -> None:
    texts = {"vi": "Chú ý, ngày mai có mưa lớn.", "zh": "请注意，明天有大雨。"}
    pcm = speak_in_languages("내일 큰 비가 옵니다.", texts, ["vi", "zh"], engine="espeak")
    segments = _segments(pcm.samples, pcm.sample_rate)
    assert len(segments) == 3, segments
    assert all(end - start > 0.5 for start, end in segments), "every language is heard"
