"""The API's errors on the wire: every exception a route lets out becomes one JSON shape,
`{"error": code, "detail": "한국어 / English", ...}`, with the headers its kind needs."""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audio.errors import AudioError
from gateway.errors import MaeulError, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)

# Field-specific codes for request validation, so clients need not parse messages.
_FIELD_CODES = {
    "category": ("unknown_category", "알 수 없는 방송 종류입니다.", "Unknown broadcast category."),
    "file": ("missing_file", "파일이 필요합니다.", "A file is required."),
    "receiver_volume": (
        "invalid_volume",
        "수신기 음량은 0부터 100까지의 정수입니다.",
        "The receiver volume is a whole number from 0 to 100.",
    ),
}


_HTTP_CODES: Final[dict[int, tuple[str, str, str]]] = {
    404: ("not_found", "없는 주소입니다.", "No such resource."),
    405: (
        "method_not_allowed",
        "이 주소에서 허용되지 않는 요청 방식입니다.",
        "Method not allowed.",
    ),
}


def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    """Answer every error in the API's one shape."""

    @app.exception_handler(MaeulError)
    async def _maeul(_: Request, exc: MaeulError) -> JSONResponse:
        response = _error(exc.status, exc.code, exc.detail, **exc.extra())
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    # Starlette's own answers (no such route, wrong method) in the same shape as ours.
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, ko, en = _HTTP_CODES.get(
            exc.status_code,
            (f"http_{exc.status_code}", "요청을 처리할 수 없습니다.", str(exc.detail)),
        )
        response = _error(exc.status_code, code, f"{ko} / {en}")
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(AudioError)
    async def _audio(_: Request, exc: AudioError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for error in errors:
            loc = error.get("loc", ())
            name = str(loc[-1]) if loc else ""
            # A field that may not be sent at all is a plain invalid request, whatever its name.
            if name in _FIELD_CODES and error.get("type") != "extra_forbidden":
                code, ko, en = _FIELD_CODES[name]
                return _error(422, code, f"{ko} / {en}", fields=_fields(errors))
        return _error(
            422,
            "invalid_request",
            "요청 형식이 올바르지 않습니다. / The request is not valid.",
            fields=_fields(errors),
        )

    # A number the database cannot hold (an id or offset past 64 bits) is the request's
    # fault: SQLite's driver raises OverflowError, PostgreSQL's a DataError.
    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(_: Request, exc: Exception) -> JSONResponse:
        return _error(
            422,
            "value_out_of_range",
            "요청의 숫자가 허용 범위를 벗어났습니다. / A number in the request is out of range.",
        )

    # A constraint the write broke: a race the code should have met (an insert-or-ignore, a
    # savepoint and a read again), so a bug, logged whole to be found. The database is there;
    # saying it is not would send the client to retry blindly, and hide the constraint.
    @app.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> JSONResponse:
        log.error(
            "a write broke a constraint (%s %s): %s",
            request.method,
            request.url.path,
            exc.orig,
            exc_info=exc,
        )
        return _error(
            409,
            "write_conflict",
            "같은 때에 들어온 다른 요청과 충돌했습니다. 다시 시도해 주세요. / "
            "The request conflicted with another made at the same moment; try again.",
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return _error(
            503,
            "database_unavailable",
            "데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도해 주세요. / "
            "The database is unavailable; try again shortly.",
        )


def _fields(errors: Any) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": str(e.get("msg", ""))}
        for e in errors
    ]
