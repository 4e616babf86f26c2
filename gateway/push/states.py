"""Every state a push message goes through and every legal move between them, as a table.

    queued ──claimed──▶ sending ──accepted──▶ sent
      │                   │  ▲
      │                   │  └─ retry (429, 5xx, no answer: back to queued, later)
      │                   ├──give_up──▶ failed (refused, or out of attempts)
      │                   └──gone──▶ expired (404/410: the subscription is dropped)
      └──────────────────────expire──▶ expired (its time ran out, or its subscription went)

A message claimed again after its worker died stays ``sending`` (a self-loop); a final state
takes no event.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class PushStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"


class PushEvent(StrEnum):
    CLAIMED = "claimed"
    ACCEPTED = "accepted"
    RETRY = "retry"
    GIVE_UP = "give_up"
    GONE = "gone"
    EXPIRE = "expire"


class InvalidTransition(Exception):
    def __init__(self, current: PushStatus, event: PushEvent) -> None:
        super().__init__(f"cannot apply {event} to a {current} push message")
        self.current = current
        self.event = event


S, E = PushStatus, PushEvent

TRANSITIONS: Final[Mapping[PushStatus, Mapping[PushEvent, PushStatus]]] = {
    S.QUEUED: {E.CLAIMED: S.SENDING, E.EXPIRE: S.EXPIRED},
    S.SENDING: {
        E.CLAIMED: S.SENDING,
        E.ACCEPTED: S.SENT,
        E.RETRY: S.QUEUED,
        E.GIVE_UP: S.FAILED,
        E.GONE: S.EXPIRED,
        E.EXPIRE: S.EXPIRED,
    },
    S.SENT: {},
    S.FAILED: {},
    S.EXPIRED: {},
}

FINAL: Final = frozenset({S.SENT, S.FAILED, S.EXPIRED})


def next_status(current: PushStatus, event: PushEvent) -> PushStatus:
    try:
        return TRANSITIONS[current][event]
    except KeyError:
        raise InvalidTransition(current, event) from None
