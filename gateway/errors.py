"""Typed errors: each carries its HTTP status, a stable code and a message in Korean and English.

    MaeulError                 (500 internal_error)
    ├── NotFound               (404)
    ├── InvalidRequest         (422)
    ├── Conflict               (409)
    ├── Unauthorized           (401)
    ├── Forbidden              (403)
    ├── UnsupportedMediaType   (415)
    ├── Locked                 (423)
    ├── TooManyRequests        (429)
    └── Unavailable            (503)

Services raise these; one handler renders ``{"error": code, "detail": text}``. Every code
raised is listed, with its status and general meaning, in `gateway.error_catalog`.
Errors from the audio package (audio.errors.AudioError) are rendered the same way.
"""

from __future__ import annotations

from typing import ClassVar


class MaeulError(Exception):
    status: ClassVar[int] = 500
    code: str = "internal_error"

    def __init__(self, code: str | None = None, *, ko: str, en: str) -> None:
        if code is not None:
            self.code = code
        self.message_ko = ko
        self.message_en = en
        super().__init__(f"{self.code}: {en}")

    @property
    def detail(self) -> str:
        return f"{self.message_ko} / {self.message_en}"

    def extra(self) -> dict[str, object]:
        """Fields the error response carries besides ``error`` and ``detail``."""
        return {}


class NotFound(MaeulError):
    status = 404
    code = "not_found"


class InvalidRequest(MaeulError):
    status = 422
    code = "invalid_request"


class Conflict(MaeulError):
    status = 409
    code = "conflict"


class Unauthorized(MaeulError):
    status = 401
    code = "unauthorized"


class Forbidden(MaeulError):
    status = 403
    code = "forbidden"


class Gone(MaeulError):
    status = 410
    code = "gone"


class UnsupportedMediaType(MaeulError):
    status = 415
    code = "unsupported_media_type"


class Locked(MaeulError):
    status = 423
    code = "locked"


class TooManyRequests(MaeulError):
    status = 429
    code = "rate_limited"

    def __init__(
        self, code: str | None = None, *, ko: str, en: str, retry_after_s: int = 60
    ) -> None:
        super().__init__(code, ko=ko, en=en)
        self.retry_after_s = retry_after_s


class Unavailable(MaeulError):
    status = 503
    code = "unavailable"
