"""Logging set-up for the gateway process: one line per event, never a secret."""

from __future__ import annotations

import logging
import os
import re

# A live talk's WebSocket address carries its single-use ticket; uvicorn logs the address.
_TICKET = re.compile(r"(ticket=)[^&\s\"']+")


class RedactTickets(logging.Filter):
    """Hides ticket values in log lines (a spent ticket is worthless, but none is ever shown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ticket=" in message:
            record.msg, record.args = _TICKET.sub(r"\1***", message), None
        return True


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("GATEWAY_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Connection chatter from the libraries would bury the gateway's own lines, and the database
    # drivers' debug lines carry query parameters (texts, names): never logged, whatever the level.
    for noisy in ("aiomqtt", "httpx", "uvicorn.access", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for server in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(server)
        if not any(isinstance(f, RedactTickets) for f in logger.filters):
            logger.addFilter(RedactTickets())
