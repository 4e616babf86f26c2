"""Every legal delivery state change, as a table. Nothing else changes a delivery's state.

Acks travel over QoS 1 and may arrive twice, late or out of order (a ``played`` can overtake the
gateway's own note that it published), so late and repeated events are listed on purpose as
self-loops or as moves to what the speaker reports; anything not listed raises and changes nothing.

Pre-emption: a higher-priority broadcast interrupts this one on the speaker, which says
``preempted`` and queues it again; the delivery stays open (``preempted``) until the speaker
plays it from the start (``playing``, ``played``), or it can no longer play (``failed`` from the
speaker, ``expired`` with the broadcast, ``cancelled``).

One truth after the gateway gives up. A delivery that ended without the speaker playing it
(``failed``, ``expired``, ``cancelled``) is what the officer acts on, for instance by resending
to the missed speakers, so it never silently turns into ``played``:

- when retries run out (``timed_out``), the gateway also sends that speaker a signed cancel, so
  a speaker that wakes up later drops the command instead of playing it;
- a resend names the commands it supersedes, so a speaker that holds both plays one;
- if a speaker still says ``played`` after its delivery ended (the cancel could not reach it in
  time), the delivery ends ``played_late``: the record keeps why it had ended (its reason) and
  adds the proof of play, and nothing changes it after that.

A refusal as ``unknown_key`` is not final (``key_refused``): the speaker met a key id it could not
trust yet, for instance a key rotated moments before. The delivery stays open and the sweeper
asks again when its ack is due, signed afresh by the current key, spending one of its attempts;
when they run out it ends like any unanswered delivery (the reason says ``unknown_key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class State(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    RECEIVED = "received"
    PLAYING = "playing"
    PREEMPTED = "preempted"  # interrupted by a higher priority; waits to play from the start
    PLAYED = "played"
    # The speaker's "played" came after the delivery had ended (failed, expired or cancelled):
    # the reason it ended stays, the proof of play is added. Terminal.
    PLAYED_LATE = "played_late"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Event(StrEnum):
    PUBLISHED = "published"  # the broker took the command (PUBACK): not a speaker's ack
    RECEIVED = "received"
    PLAYING = "playing"
    PREEMPTED = "preempted"  # the speaker stopped it for a higher priority and queued it again
    PLAYED = "played"
    FAILED = "failed"
    REJECTED = "rejected"
    # Refused as ``unknown_key``: signed by a key the speaker could not yet trust. Not its answer
    # to the command: the delivery stays open and is asked again, signed afresh by the current
    # key, as for a missing ack (a speaker that has learned the key since plays it).
    KEY_REFUSED = "key_refused"
    TIMED_OUT = "timed_out"  # no ack after every retry
    EXPIRED = "expired"  # the broadcast expired before the speaker started
    CANCELLED = "cancelled"


class InvalidTransition(Exception):
    def __init__(self, state: State, event: Event) -> None:
        self.state = state
        self.event = event
        super().__init__(f"cannot apply {event.value} to a {state.value} delivery")


S, E = State, Event

TRANSITIONS: Final[Mapping[State, Mapping[Event, State]]] = {
    S.QUEUED: {
        E.PUBLISHED: S.SENT,
        E.RECEIVED: S.RECEIVED,
        E.PLAYING: S.PLAYING,
        E.PREEMPTED: S.PREEMPTED,
        E.PLAYED: S.PLAYED,
        E.FAILED: S.FAILED,
        E.REJECTED: S.FAILED,
        E.KEY_REFUSED: S.QUEUED,  # overtook the note that it was published
        E.TIMED_OUT: S.EXPIRED,
        E.EXPIRED: S.EXPIRED,
        E.CANCELLED: S.CANCELLED,
    },
    S.SENT: {
        E.PUBLISHED: S.SENT,
        E.RECEIVED: S.RECEIVED,
        E.PLAYING: S.PLAYING,
        E.PREEMPTED: S.PREEMPTED,  # "received" and "playing" were lost or overtaken
        E.PLAYED: S.PLAYED,
        E.FAILED: S.FAILED,
        E.REJECTED: S.FAILED,
        E.KEY_REFUSED: S.SENT,  # asked again when its ack is due
        E.TIMED_OUT: S.EXPIRED,
        E.EXPIRED: S.EXPIRED,
        E.CANCELLED: S.CANCELLED,
    },
    S.RECEIVED: {
        E.PUBLISHED: S.RECEIVED,
        E.RECEIVED: S.RECEIVED,
        E.PLAYING: S.PLAYING,
        E.PREEMPTED: S.PREEMPTED,  # "playing" was lost or overtaken
        E.PLAYED: S.PLAYED,
        E.FAILED: S.FAILED,
        E.REJECTED: S.FAILED,
        E.KEY_REFUSED: S.RECEIVED,  # a copy refused; it holds the authentic one
        E.TIMED_OUT: S.EXPIRED,  # said "received", then nothing however often it was asked
        E.EXPIRED: S.EXPIRED,
        E.CANCELLED: S.CANCELLED,
    },
    S.PLAYING: {
        E.PUBLISHED: S.PLAYING,
        E.RECEIVED: S.PLAYING,
        E.PLAYING: S.PLAYING,
        E.PREEMPTED: S.PREEMPTED,
        E.PLAYED: S.PLAYED,
        E.FAILED: S.FAILED,
        E.KEY_REFUSED: S.PLAYING,  # a copy refused while the authentic one plays
        E.TIMED_OUT: S.FAILED,  # started but never said it finished
        E.CANCELLED: S.CANCELLED,
    },
    # Waits behind a higher priority, possibly a long alert: no ack is due until the speaker
    # plays it again, so it never times out; it expires with its broadcast.
    S.PREEMPTED: {
        E.PUBLISHED: S.PREEMPTED,
        E.RECEIVED: S.PREEMPTED,
        E.PREEMPTED: S.PREEMPTED,
        E.PLAYING: S.PLAYING,  # its turn came again: it plays from the start
        E.PLAYED: S.PLAYED,
        E.FAILED: S.FAILED,  # e.g. its turn came after its expiry
        E.REJECTED: S.FAILED,  # its audio, fetched again after a restart, did not match
        E.KEY_REFUSED: S.PREEMPTED,  # a copy refused; it holds the authentic one
        E.TIMED_OUT: S.EXPIRED,
        E.EXPIRED: S.EXPIRED,
        E.CANCELLED: S.CANCELLED,
    },
    # Terminal states absorb late duplicates. A speaker's own "played" after the delivery ended
    # is recorded, but as what it is: played late, never a silent flip to "played".
    S.PLAYED: dict.fromkeys(Event, S.PLAYED),
    S.FAILED: {**dict.fromkeys(Event, S.FAILED), E.PLAYED: S.PLAYED_LATE},
    S.EXPIRED: {**dict.fromkeys(Event, S.EXPIRED), E.PLAYED: S.PLAYED_LATE},
    S.CANCELLED: {**dict.fromkeys(Event, S.CANCELLED), E.PLAYED: S.PLAYED_LATE},
    S.PLAYED_LATE: dict.fromkeys(Event, S.PLAYED_LATE),
}

TERMINAL: Final = frozenset({S.PLAYED, S.PLAYED_LATE, S.FAILED, S.EXPIRED, S.CANCELLED})
# Ended with the speaker playing it (on time or late): the village heard it.
HEARD: Final = frozenset({S.PLAYED, S.PLAYED_LATE})
ACTIVE: Final = frozenset(State) - TERMINAL


def next_state(current: State, event: Event) -> State:
    try:
        return TRANSITIONS[current][event]
    except KeyError:
        raise InvalidTransition(current, event) from None
