"""How many audit rows a caller who has not proved who they are may cause, per source address.

Failed logins and requests refused for want of a valid token are worth recording, but anyone can
send them: unbounded, they would let a stranger bury the log under rows of their choosing. Such
rows carry only words the gateway chooses (never a reason, a target or a name the caller made
up), and each source gets ``per_minute`` of them a minute, per replica; the rest are dropped
(counted, and logged once a minute). An IPv6 source counts by its /64, which one host holds.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime
from typing import Final

log = logging.getLogger(__name__)

# Windows are forgotten when this many sources are tracked (a flood from many addresses): the
# budget may then admit a few rows more, never hold memory without bound.
_MAX_SOURCES: Final = 10_000


def source_key(source: str | None) -> str:
    if source is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source[:64]
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class AnonymousBudget:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._minute: int | None = None
        self._counts: dict[str, int] = {}
        self.dropped = 0

    def admit(self, source: str | None, now: datetime) -> bool:
        """Whether one more anonymous row from ``source`` may be written now."""
        minute = int(now.timestamp() // 60)
        if minute != self._minute or len(self._counts) >= _MAX_SOURCES:
            self._minute = minute
            self._counts = {}
        key = source_key(source)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self.per_minute:
            return True
        self.dropped += 1
        if count == self.per_minute + 1:
            log.warning(
                "감사 기록 제한 / anonymous audit rows over %d a minute from one source are "
                "dropped this minute",
                self.per_minute,
            )
        return False
