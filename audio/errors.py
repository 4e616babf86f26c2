"""Typed errors of the audio path, each with an HTTP status, a stable code and a bilingual message.

The tree::

    AudioError                      (base: 422 invalid_audio)
    ├── AudioTooLarge               413 audio_too_large     file bigger than max_bytes
    ├── AudioTooLong                422 audio_too_long      header or decoding passes the limit
    ├── EmptyAudio                  422 empty_audio         zero bytes, or no samples at all
    ├── UnsupportedAudio            422 unsupported_audio   unknown container or codec, text,
    │                                                       playlists, no audio stream
    ├── CorruptAudio                422 corrupt_audio       truncated, lying header, decode errors
    ├── SilentAudio                 422 silent_audio        nothing audible to broadcast
    ├── TranscodeTimeout            422 audio_timeout       the decode ran past its time limit
    └── AudioWorkerFailed           503 audio_worker_failed the worker process died or is closed
        └── AudioWorkerBusy         503 audio_worker_busy   no worker became free in time

Every error pickles by its class and `detail`, so one raised in a worker process arrives in
the gateway as the same class with the same text.
"""

from __future__ import annotations

from typing import ClassVar


class AudioError(Exception):
    """Base of every audio error; `detail` says what was wrong with this input."""

    code: ClassVar[str] = "invalid_audio"
    status: ClassVar[int] = 422
    message_ko: ClassVar[str] = "오디오 파일을 처리할 수 없습니다."
    message_en: ClassVar[str] = "The audio file cannot be processed."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or f"{self.message_ko} / {self.message_en}"
        super().__init__(self.detail)

    def __reduce__(self) -> tuple[type[AudioError], tuple[str]]:
        return (type(self), (self.detail,))

    def to_dict(self) -> dict[str, str]:
        """The `{"error", "detail"}` body the gateway and the command line both print."""
        return {"error": self.code, "detail": self.detail}


class AudioTooLarge(AudioError):
    code = "audio_too_large"
    status = 413
    message_ko = "오디오 파일이 너무 큽니다."
    message_en = "The audio file is too large."


class AudioTooLong(AudioError):
    code = "audio_too_long"
    message_ko = "오디오가 너무 깁니다."
    message_en = "The audio is too long."


class EmptyAudio(AudioError):
    code = "empty_audio"
    message_ko = "오디오 파일이 비어 있습니다."
    message_en = "The audio file is empty."


class UnsupportedAudio(AudioError):
    code = "unsupported_audio"
    message_ko = "지원하지 않는 오디오 형식입니다."
    message_en = "The audio format is not supported."


class CorruptAudio(AudioError):
    code = "corrupt_audio"
    message_ko = "오디오 파일이 손상되었습니다."
    message_en = "The audio file is damaged."


class SilentAudio(AudioError):
    code = "silent_audio"
    message_ko = "녹음에 들리는 소리가 없습니다."
    message_en = "The recording contains no audible sound."


class TranscodeTimeout(AudioError):
    # 422, not 503: the timer runs only while a worker is busy with this file, so running
    # out of time says more about the file than about the server.
    code = "audio_timeout"
    message_ko = "오디오 변환 시간이 초과되었습니다."
    message_en = "Converting the audio took too long."


class AudioWorkerFailed(AudioError):
    code = "audio_worker_failed"
    status = 503
    message_ko = "오디오 변환기가 응답하지 않습니다. 잠시 후 다시 시도하세요."
    message_en = "The audio converter failed; please try again shortly."


class AudioWorkerBusy(AudioWorkerFailed):
    code = "audio_worker_busy"
    message_ko = "오디오 변환 요청이 많습니다. 잠시 후 다시 시도하세요."
    message_en = "The audio converter is busy; please try again shortly."
