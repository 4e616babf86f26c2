"""The languages an announcement may carry besides Korean, and how each is spoken.

A broadcast's Korean text is always spoken first; each other language enabled for the
speakers follows after a short pause, read by that language's espeak-ng voice. A language
whose ``voice`` is None (espeak-ng has none) is shown to residents but never spoken.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from audio.speech.errors import (
    EmptyText,
    SpeechEngineFailed,
    SpeechError,
    TextTooLong,
    UnspeakableText,
)
from audio.speech.normalize import MAX_TEXT_CHARS

__all__ = [
    "LANGUAGES",
    "LANGUAGE_PAUSE_S",
    "InvalidTexts",
    "Language",
    "UnknownLanguage",
    "known_texts",
    "parse_texts",
    "spoken_languages",
    "validate_foreign_text",
    "validate_languages",
    "validate_texts",
]

# Silence between one language's reading and the next.
LANGUAGE_PAUSE_S: Final = 1.0


@dataclass(frozen=True)
class Language:
    tag: str  # BCP 47 primary tag, as the API and the residents' page use it
    name: str  # in the language itself, for the residents' language picker
    english: str
    voice: str | None  # espeak-ng voice name; None: text only


LANGUAGES: Final[Mapping[str, Language]] = {
    lang.tag: lang
    for lang in (
        Language("ko", "한국어", "Korean", "ko"),
        Language("en", "English", "English", "en"),
        Language("vi", "Tiếng Việt", "Vietnamese", "vi"),
        Language("zh", "中文", "Chinese (Mandarin)", "cmn"),
        Language("th", "ไทย", "Thai", "th"),
        Language("ne", "नेपाली", "Nepali", "ne"),
        Language("uz", "Oʻzbekcha", "Uzbek", "uz"),
        Language("ja", "日本語", "Japanese", "ja"),
        Language("ru", "Русский", "Russian", "ru"),
        # espeak-ng has no Filipino voice: shown on the residents' page, never spoken.
        Language("tl", "Filipino", "Filipino", None),
    )
}


class UnknownLanguage(SpeechError):
    code = "unknown_language"
    message_ko = "지원하지 않는 언어입니다."
    message_en = "That language is not supported."


class InvalidTexts(SpeechError):
    code = "invalid_texts"
    message_ko = '언어별 문구는 {"vi": "..."} 형태의 JSON 객체여야 합니다.'
    message_en = 'Texts per language must be a JSON object such as {"vi": "..."}.'


def parse_texts(raw: str | None) -> dict[str, str]:
    """A form field's JSON object of texts by language, validated; {} when absent."""
    if raw is None or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidTexts() from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise InvalidTexts()
    return validate_texts(parsed)


def validate_foreign_text(text: str) -> str:
    """A text in another language, NFKC-folded and stripped, or why it cannot be read: the
    Korean checks of ``validate_text`` with letters of any script."""
    folded = unicodedata.normalize("NFKC", text).strip()
    if not folded:
        raise EmptyText()
    if len(folded) > MAX_TEXT_CHARS:
        raise TextTooLong(
            f"방송 문구는 {MAX_TEXT_CHARS}자까지 가능합니다 (현재 {len(folded)}자). / "
            f"Announcement text is limited to {MAX_TEXT_CHARS} characters (got {len(folded)})."
        )
    if not any(c.isalnum() for c in folded):
        raise UnspeakableText()
    return folded


def check_language(tag: str) -> str:
    """``tag`` as a known primary tag (lower case), or UnknownLanguage."""
    primary = tag.strip().lower().split("-")[0]
    if primary not in LANGUAGES:
        raise UnknownLanguage(
            f"지원하지 않는 언어입니다: {tag} / Unknown language: {tag} "
            f"(expected one of {', '.join(sorted(LANGUAGES))})"
        )
    return primary


def validate_texts(texts: Mapping[str, str]) -> dict[str, str]:
    """A broadcast's texts in other languages, keyed by known primary tag and stripped.

    Korean stays in the broadcast's ``text``: a "ko" entry here is refused.
    """
    checked: dict[str, str] = {}
    for tag, text in texts.items():
        primary = check_language(tag)
        if primary == "ko":
            raise UnknownLanguage(
                "한국어 문구는 text에 넣어 주세요. / The Korean text belongs in `text`."
            )
        checked[primary] = validate_foreign_text(text)
    return dict(sorted(checked.items()))


def validate_languages(tags: Sequence[str]) -> list[str]:
    """The languages a village reads after Korean, as known primary tags in the order given
    (repeats dropped). Korean is always read first: a "ko" here is refused."""
    checked: list[str] = []
    for tag in tags:
        primary = check_language(tag)
        if primary == "ko":
            raise UnknownLanguage(
                "한국어는 언제나 먼저 읽으므로 목록에 넣지 않습니다. / "
                "Korean is always read first: leave it out of the list."
            )
        if primary not in checked:
            checked.append(primary)
    return checked


def known_texts(texts: Mapping[str, str]) -> dict[str, str]:
    """Of texts keyed by any language tag (a CAP alert's <info>s), those in a known language
    other than Korean, by primary tag; unknown languages and unreadable texts are left out."""
    kept: dict[str, str] = {}
    for tag, text in texts.items():
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and primary != "ko" and primary not in kept:
            try:
                kept[primary] = validate_foreign_text(text[:MAX_TEXT_CHARS])
            except SpeechError:
                continue
    return dict(sorted(kept.items()))


def spoken_languages(texts: Mapping[str, str], enabled: Sequence[str]) -> tuple[str, ...]:
    """The languages read after Korean: enabled ones the broadcast has a text in and
    espeak-ng has a voice for, in the order enabled."""
    return tuple(
        tag
        for tag in dict.fromkeys(enabled)
        if tag in texts and tag != "ko" and tag in LANGUAGES and LANGUAGES[tag].voice
    )


def join_languages(parts: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Readings in turn, LANGUAGE_PAUSE_S of silence between them, at one sample rate."""
    rate = parts[0][1]
    if any(r != rate for _, r in parts):
        raise SpeechEngineFailed(
            "음성 엔진의 샘플레이트가 일정하지 않습니다. / The engine changed its sample rate."
        )
    gap = np.zeros(round(LANGUAGE_PAUSE_S * rate), dtype=np.float32)
    joined: list[np.ndarray] = []
    for index, (samples, _) in enumerate(parts):
        if index:
            joined.append(gap)
        joined.append(samples)
    return np.concatenate(joined), rate
