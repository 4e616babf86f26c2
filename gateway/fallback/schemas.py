"""What the broadcast API shows of a village's fallback to phones."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

FallbackState = Literal["waiting", "notified", "not_needed"]


class PhoneCounts(BaseModel):
    """Residents told by phone (another channel than the speakers, with its own counts): each
    message's state as the SMS gateway reports it."""

    queued: int = Field(0, description="Waiting to be sent (or being handed to the SMS gateway).")
    sent: int = Field(0, description="Accepted by the SMS gateway; no delivery report yet.")
    delivered: int = Field(0, description="The operator reported it delivered to the phone.")
    failed: int = Field(0, description="Could not be delivered (or the day's budget was spent).")
    skipped: int = Field(
        0, description="Chosen, then not sent: their consent was withdrawn meanwhile."
    )


class PushCounts(BaseModel):
    """Browsers told by web push (the fallback): one message per subscription of the village's
    residents' page, by its state in the push outbox."""

    queued: int = Field(0, description="Waiting to be sent (or being handed to the push service).")
    sent: int = Field(0, description="Accepted by the browser's push service.")
    failed: int = Field(0, description="Refused by the push service, or out of attempts.")
    expired: int = Field(
        0, description="Its time ran out, or the browser had unsubscribed (the push service said)."
    )


class VillageFallback(BaseModel):
    """Whether, when and why a village's residents are told by phone."""

    state: FallbackState
    reason: str = Field(
        description="waiting: after_rule (the rule's time), offline or no_speakers (no "
        "speaker online at the start: told at once), all_at_once; notified: not_played, "
        "offline, no_speakers, all_at_once; not_needed: played, cancelled, drill (test or "
        "exercise), resend, rule_off."
    )
    due_at: datetime
    channels: list[str]
    decided_at: datetime | None
