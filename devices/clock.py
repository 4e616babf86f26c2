"""A speaker's estimate of how far its clock is from the gateway's, and play-at times through it.

Every command carries the gateway's clock (``issued_at_ms``), and so does every live frame
(``at_ms``). The difference between the speaker's clock on receipt and that stamp is the clock
offset plus the message's transit; the smallest difference over the last messages is the
offset plus the fastest transit, a few milliseconds on a village network. In production the
speakers are NTP-synchronised (chrony or systemd-timesyncd), so the estimate stays near the
network's one-way delay; a speaker whose estimate exceeds 50 ms is flagged on the console.

A command's ``play_at_ms`` is on the gateway's clock. A speaker starts at ``play_at_ms`` on its
own clock, trusting NTP: the estimate holds the network's delay too (tens of milliseconds when
a command fans out to a whole city), so applying it would put neighbours out of step. Only a
clock off by more than `CORRECTED_MS`, clearly never synchronised, starts at ``play_at_ms +
offset``, in step to within that delay. Above `TRUSTED_MS` the console flags it.
"""

from __future__ import annotations

from collections import deque
from typing import Final

_SAMPLES: Final = 64
# A clock within this of the gateway's is taken as synchronised; the console flags the others.
TRUSTED_MS: Final = 50
# A clock this far off is not NTP's: the start is corrected through the estimate.
CORRECTED_MS: Final = 250
# A play-at further ahead than this is not waited for (a clock gone wrong): played at once.
MAX_WAIT_MS: Final = 10_000


class ClockOffset:
    """The speaker clock minus the gateway clock, from the smallest of the recent differences."""

    def __init__(self, samples: int = _SAMPLES) -> None:
        self._differences: deque[float] = deque(maxlen=samples)

    def observe(self, gateway_ms: float, local_ms: float) -> None:
        self._differences.append(local_ms - gateway_ms)

    @property
    def offset_ms(self) -> int | None:
        """None before any message came."""
        return round(min(self._differences)) if self._differences else None

    def wait_ms(self, play_at_ms: int | None, local_now_ms: float) -> float:
        """How long to wait, on the local clock, before starting what is due at `play_at_ms`."""
        if play_at_ms is None:
            return 0.0
        wait = play_at_ms + correction_ms(self.offset_ms) - local_now_ms
        return wait if 0 < wait <= MAX_WAIT_MS else 0.0


def correction_ms(offset_ms: int | None) -> int:
    """What turns a time on the gateway's clock into one on this clock: nothing for a clock
    within `CORRECTED_MS` (NTP's; the estimate there is mostly the network's delay), else the
    estimate."""
    offset = offset_ms or 0
    return offset if abs(offset) > CORRECTED_MS else 0
