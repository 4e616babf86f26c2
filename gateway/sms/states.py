"""Every state an SMS goes through and every legal move between them, as a table.

    queued ──claimed──▶ sending ──accepted──▶ sent ──report_delivered──▶ delivered
      │                   │  ▲                  └──report_failed──▶ failed
      │                   │  └─ retry (Kannel down or busy: back to queued, later)
      │                   └──give_up──▶ failed (rejected, or out of attempts)
      └──over_budget──▶ over_budget

Kannel may call back before the worker has recorded its answer (the fake SMSC reports within
milliseconds), so reports are legal from ``sending`` too, and a late ``accepted`` or SMSC
acknowledgement leaves a final state as it is (self-loops).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class SmsStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    OVER_BUDGET = "over_budget"


class SmsEvent(StrEnum):
    CLAIMED = "claimed"
    OVER_BUDGET = "over_budget"
    ACCEPTED = "accepted"
    RETRY = "retry"
    GIVE_UP = "give_up"
    REPORT_SMSC = "report_smsc"  # DLR 8 (the SMSC took it) or 4 (the SMSC queued it)
    REPORT_DELIVERED = "report_delivered"  # DLR 1
    REPORT_FAILED = "report_failed"  # DLR 2 (undeliverable) or 16 (the SMSC rejected it)


class InvalidTransition(Exception):
    def __init__(self, current: SmsStatus, event: SmsEvent) -> None:
        super().__init__(f"cannot apply {event} to a {current} SMS")
        self.current = current
        self.event = event


S, E = SmsStatus, SmsEvent
_LATE: Final = {E.ACCEPTED, E.REPORT_SMSC}

TRANSITIONS: Final[Mapping[SmsStatus, Mapping[SmsEvent, SmsStatus]]] = {
    S.QUEUED: {E.CLAIMED: S.SENDING, E.OVER_BUDGET: S.OVER_BUDGET},
    S.SENDING: {
        # A claim whose worker died without an answer is claimed again once its lease ends.
        E.CLAIMED: S.SENDING,
        E.OVER_BUDGET: S.OVER_BUDGET,
        E.ACCEPTED: S.SENT,
        E.RETRY: S.QUEUED,
        E.GIVE_UP: S.FAILED,
        E.REPORT_SMSC: S.SENT,
        E.REPORT_DELIVERED: S.DELIVERED,
        E.REPORT_FAILED: S.FAILED,
    },
    S.SENT: {
        E.ACCEPTED: S.SENT,
        E.REPORT_SMSC: S.SENT,
        E.REPORT_DELIVERED: S.DELIVERED,
        E.REPORT_FAILED: S.FAILED,
    },
    S.DELIVERED: {**dict.fromkeys(_LATE, S.DELIVERED), E.REPORT_DELIVERED: S.DELIVERED},
    S.FAILED: {**dict.fromkeys(_LATE, S.FAILED), E.REPORT_FAILED: S.FAILED},
    S.OVER_BUDGET: {E.OVER_BUDGET: S.OVER_BUDGET},
}

FINAL: Final = frozenset({S.DELIVERED, S.FAILED, S.OVER_BUDGET})

# Kannel's delivery report codes (its %d) and what each one means here.
DLR_EVENTS: Final[Mapping[int, SmsEvent]] = {
    1: E.REPORT_DELIVERED,
    2: E.REPORT_FAILED,
    4: E.REPORT_SMSC,
    8: E.REPORT_SMSC,
    16: E.REPORT_FAILED,
}


def next_status(current: SmsStatus, event: SmsEvent) -> SmsStatus:
    try:
        return TRANSITIONS[current][event]
    except KeyError:
        raise InvalidTransition(current, event) from None
