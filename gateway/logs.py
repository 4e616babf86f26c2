"""Logging set-up for the gateway process: one line per event, never a secret.

Lines are plain text, or with ``GATEWAY_LOG_FORMAT=json`` one JSON object per line (time, level,
logger, message, and the ``request_id`` and ``broadcast_id`` they belong to), so a log store can
gather every line of one request or one broadcast. The ids travel in context variables: set once
where a request or a broadcast's work begins, they reach every line logged inside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A live talk's WebSocket address carries its single-use ticket; uvicorn logs the address.
_TICKET = re.compile(r"(ticket=)[^&\s\"']+")
# A caller's request id is echoed and logged: only a short token of safe characters is taken.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID_HEADER: Final = "X-Request-ID"
FORMATS: Final = ("text", "json")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
broadcast_id: ContextVar[str | None] = ContextVar("broadcast_id", default=None)


class RedactTickets(logging.Filter):
    """Hides ticket values in log lines (a spent ticket is worthless, but none is ever shown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ticket=" in message:
            record.msg, record.args = _TICKET.sub(r"\1***", message), None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line; the ids come from the record (``extra=``) or the context."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("broadcast_id", broadcast_id)):
            value = getattr(record, name, None) or var.get()
            if value:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


@contextlib.contextmanager
def about_broadcast(id_: str) -> Iterator[None]:
    """Lines logged inside carry this broadcast's id."""
    token = broadcast_id.set(id_)
    try:
        yield
    finally:
        broadcast_id.reset(token)


_broadcasts = logging.getLogger("gateway.broadcasts")


class _Recorded(Protocol):
    id: str
    category: str
    mode: str


def broadcast_created(broadcast: _Recorded, speakers: int) -> None:
    """The line every path that records a broadcast writes (no title, text or author: those
    may hold personal data)."""
    _broadcasts.info(
        "broadcast %s created: %s, %s, %d speakers",
        broadcast.id,
        broadcast.category,
        broadcast.mode,
        speakers,
        extra={"broadcast_id": broadcast.id},
    )


class RequestIds:
    """Gives each HTTP request an id (the caller's ``X-Request-ID`` if it is a plain token, else
    a new one), logged on every line of the request and echoed in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"")
        text = given.decode("latin-1")
        rid = text if _REQUEST_ID.fullmatch(text) else secrets.token_hex(8)
        token = request_id.set(rid)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            request_id.reset(token)


def configure_logging(level: str | None = None, log_format: str | None = None) -> None:
    chosen = (log_format or os.environ.get("GATEWAY_LOG_FORMAT", "text")).lower()
    if chosen not in FORMATS:
        raise ValueError(f"GATEWAY_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    logging.basicConfig(
        level=(level or os.environ.get("GATEWAY_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if chosen == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())
    # Connection chatter from the libraries would bury the gateway's own lines, and the database
    # drivers' debug lines carry query parameters (texts, names): never logged, whatever the level.
    for noisy in ("aiomqtt", "httpx", "uvicorn.access", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for server in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(server)
        if not any(isinstance(f, RedactTickets) for f in logger.filters):
            logger.addFilter(RedactTickets())
