"""How far ahead of real time the device agent feeds its player during a live talk: its lead.

The lead is every millisecond a listener waits on top of the jitter buffer, so it starts small
(`LEAD.floor_ms`, or the agent's ``[player] live_lead_ms``) and grows only when the agent could
not keep the player fed: each time a write finds the player already run dry (the board was
busy), the lead grows by a frame, up to `LEAD.ceiling_ms`. A talk that ends without the player
running dry gives back half a frame, never below where it started. The agent keeps one
`OutputLead` for all its streams, so a slow board learns its lead and a one-off stall (a
reconnect, a busy minute) does not cost every later talk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FRAME_MS: Final = 20


@dataclass(frozen=True, slots=True)
class LeadPolicy:
    """How far ahead of real time the player is kept fed, in milliseconds: what a slot waits,
    after it is due, before it is heard."""

    floor_ms: int = 40
    ceiling_ms: int = 300


LEAD: Final = LeadPolicy()


class OutputLead:
    """One agent's lead, learned over its streams: it grows each time the player ran dry."""

    def __init__(self, start_ms: float | None = None, policy: LeadPolicy = LEAD) -> None:
        self.policy = policy
        self._start = self._clamp(policy.floor_ms if start_ms is None else start_ms)
        self.ms = self._start
        self.ran_dry = 0  # times, over every stream
        self._dry_this_talk = 0

    def _clamp(self, ms: float) -> float:
        return min(float(self.policy.ceiling_ms), max(float(self.policy.floor_ms), ms))

    def grow(self) -> None:
        """The player ran dry before this write: keep it a frame fuller from now on."""
        self.ran_dry += 1
        self._dry_this_talk += 1
        self.ms = self._clamp(self.ms + FRAME_MS)

    def talk_ended(self, *, spoke: bool = True) -> int:
        """A talk ended (played out, cut short or failed): when some of it was played and the
        player never ran dry, the lead gives back half a frame. Returns its dry runs."""
        dry, self._dry_this_talk = self._dry_this_talk, 0
        if spoke and not dry:
            self.ms = max(self._start, self.ms - FRAME_MS / 2)
        return dry

    def heard_after_ms(self) -> int:
        """How long after its slot a frame is heard now (for the mouth-to-horn report)."""
        return round(self.ms)
