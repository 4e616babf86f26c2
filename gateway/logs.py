"""Logging set-up for the gateway process: one line per event, never a secret."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("GATEWAY_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Connection chatter from the libraries would bury the gateway's own lines, and the database
    # drivers' debug lines carry query parameters (texts, names): never logged, whatever the level.
    for noisy in ("aiomqtt", "httpx", "uvicorn.access", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
