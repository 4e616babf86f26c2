"""Typed errors of text-to-speech: bad announcement text and a missing or failing voice.

The tree (all under ``audio.errors.AudioError``)::

    SpeechError                     422 invalid_text
    ├── EmptyText                   422 empty_text          nothing but whitespace
    ├── TextTooLong                 422 text_too_long       more than MAX_TEXT_CHARS characters
    ├── UnspeakableText             422 unspeakable_text    no letters or digits, only symbols
    ├── UnknownSpeechEngine         422 unknown_speech_engine   no engine registered by that name
    └── SpeechEngineUnavailable     503 speech_engine_unavailable  the engine's binary is missing
        └── SpeechEngineFailed      503 speech_engine_failed  it crashed, timed out or sent junk
"""

from __future__ import annotations

from audio.errors import AudioError


class SpeechError(AudioError):
    code = "invalid_text"
    message_ko = "방송 문구를 음성으로 바꿀 수 없습니다."
    message_en = "The announcement text cannot be spoken."


class EmptyText(SpeechError):
    code = "empty_text"
    message_ko = "방송 문구가 비어 있습니다."
    message_en = "The announcement text is empty."


class TextTooLong(SpeechError):
    code = "text_too_long"
    message_ko = "방송 문구가 너무 깁니다."
    message_en = "The announcement text is too long."


class UnspeakableText(SpeechError):
    code = "unspeakable_text"
    message_ko = "방송 문구에 읽을 수 있는 글자가 없습니다."
    message_en = "The announcement text has no letters or digits to read aloud."


class UnknownSpeechEngine(SpeechError):
    code = "unknown_speech_engine"
    message_ko = "알 수 없는 음성 엔진입니다."
    message_en = "Unknown speech engine."


class SpeechEngineUnavailable(SpeechError):
    code = "speech_engine_unavailable"
    status = 503
    message_ko = "음성 합성기를 사용할 수 없습니다."
    message_en = "The speech synthesizer is not available."


class SpeechEngineFailed(SpeechEngineUnavailable):
    code = "speech_engine_failed"
    message_ko = "음성 합성에 실패했습니다. 잠시 후 다시 시도하세요."
    message_en = "Speech synthesis failed; please try again shortly."
