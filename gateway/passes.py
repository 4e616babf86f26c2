"""The loop the outbox workers share (SMS, web push, fallback): a pass now, then another when
woken or when the poll interval has gone by, whichever comes first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def run_passes(
    one_pass: Callable[[], Awaitable[Any]], wake: asyncio.Event, poll_s: float, what: str
) -> None:
    """Run `one_pass` for the worker's lifetime. A pass that fails is logged and the next one
    comes as usual: an outage (database, provider) is ridden out, never the end of the loop."""
    while True:
        try:
            await one_pass()
        except Exception:
            log.exception("%s pass failed; retrying", what)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), poll_s)
