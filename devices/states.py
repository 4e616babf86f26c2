"""A command's states on a speaker, the moves allowed between them, and the journal that
remembers them.

Every state a command id can be journaled in is listed in `MOVES`, with the states it may move
to; `devices.speaker.SpeakerCore` makes every change through that table. The `Journal` protocol
is what the core needs of a journal; `MemoryJournal` keeps it in a dict (the simulator, tests),
`devices.journal.SqliteJournal` on disk (the device agent).

Exceptions::

    IllegalMove     a journal state change that the table below does not allow (a bug)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from wire.contract import AckStatus, FailReason, RejectReason

RECEIVED: Final = AckStatus.RECEIVED.value
PLAYING: Final = AckStatus.PLAYING.value
PLAYED: Final = AckStatus.PLAYED.value
FAILED: Final = AckStatus.FAILED.value
REJECTED: Final = AckStatus.REJECTED.value
PREEMPTED: Final = AckStatus.PREEMPTED.value

# Every journal state change a command id can make; the key None is "not journaled yet".
# Self-loops absorb repeats on purpose (a recovered command is received again). FAILED and
# REJECTED lead back to RECEIVED only for the retryable reasons below.
MOVES: Final[Mapping[str | None, frozenset[str]]] = {
    None: frozenset({RECEIVED, REJECTED, FAILED}),
    RECEIVED: frozenset({RECEIVED, PLAYING, PLAYED, FAILED, REJECTED}),  # PLAYED: a cancel, done
    PLAYING: frozenset({PLAYED, FAILED, PREEMPTED}),
    # Waiting to play again from the start; REJECTED: its audio, fetched again after a restart,
    # did not match its hash.
    PREEMPTED: frozenset({PLAYING, FAILED, REJECTED}),
    PLAYED: frozenset(),
    FAILED: frozenset({RECEIVED, FAILED, REJECTED}),
    REJECTED: frozenset({RECEIVED, REJECTED, FAILED}),
}
# Failures that say nothing about the signed command itself: a later copy may still play.
RETRYABLE: Final = frozenset({FailReason.FETCH_FAILED.value, RejectReason.INTEGRITY.value})
UNFINISHED: Final = frozenset({RECEIVED, PLAYING, PREEMPTED})
# States in which a command still waits to play; the journal keeps its payload for a restart.
WAITING: Final = frozenset({RECEIVED, PREEMPTED})
# The journal reason of a resend settled from an earlier playback: this prefix, then that
# command's id (so a repeated ack says it again).
ALREADY_PLAYED_AS: Final = "already_played_as:"
# Done: a copy with the same nonce after this is a replay. (A failed command is answered with
# its failure instead: a broker may redeliver a command that crashed the speaker mid-play.)
ENDED: Final = frozenset({PLAYED})


class IllegalMove(RuntimeError):
    def __init__(self, command_id: str, state: str | None, new: str) -> None:
        self.command_id, self.state, self.new = command_id, state, new
        super().__init__(f"command {command_id}: cannot move from {state or 'nothing'} to {new}")


def cancel_key(broadcast_id: str) -> str:
    """The journal key noting that a cancel for this broadcast arrived (never a command id)."""
    return f"cancel:{broadcast_id}"


def superseded_key(command_id: str) -> str:
    """The journal key naming the command (its reason) that supersedes `command_id`."""
    return f"superseded:{command_id}"


# --------------------------------------------------------------------------------------------
# The journal


@dataclass(frozen=True, slots=True)
class Proof:
    """What a ``played`` ack proves: which audio, for how long, how loud."""

    audio_sha256: str
    played_ms: int
    level_dbfs: float | None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    command_id: str
    broadcast_id: str
    state: str
    reason: str | None = None
    proof: Proof | None = None
    expires_at_ms: int | None = None
    # The command as received, kept while it waits (state RECEIVED or PREEMPTED), so that it
    # survives a restart; None while it plays, once it ended, or when the journal keeps no
    # payloads.
    payload: bytes | None = field(default=None, repr=False)
    # The nonce of the copy that was admitted: the same id and nonce after the command ended is
    # a replay (the gateway's own retries carry a fresh nonce and signature).
    nonce: str | None = None


class Journal(Protocol):
    """Where a speaker remembers every command id it has seen and its last state."""

    def state_of(self, command_id: str) -> str | None: ...

    def lookup(self, command_id: str) -> JournalEntry | None: ...

    def record(
        self,
        command_id: str,
        broadcast_id: str,
        state: str,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        expires_at_ms: int | None = None,
        payload: bytes | None = None,
        nonce: str | None = None,
    ) -> None: ...

    def unfinished(self) -> list[JournalEntry]:
        """Entries still ``received``, ``playing`` or ``preempted``, oldest first (what a restart
        must settle)."""
        ...


def merge_entry(
    old: JournalEntry | None,
    command_id: str,
    broadcast_id: str,
    state: str,
    *,
    reason: str | None,
    proof: Proof | None,
    expires_at_ms: int | None,
    payload: bytes | None,
    nonce: str | None = None,
) -> JournalEntry:
    """The entry after recording `state` over `old`: the broadcast and expiry stay, the payload
    only while the command waits."""
    if old is not None:
        broadcast_id = old.broadcast_id
        if expires_at_ms is None:
            expires_at_ms = old.expires_at_ms
        if payload is None:
            payload = old.payload
        if nonce is None:
            nonce = old.nonce
    return JournalEntry(
        command_id=command_id,
        broadcast_id=broadcast_id,
        state=state,
        reason=reason,
        proof=proof,
        expires_at_ms=expires_at_ms,
        payload=payload if state in WAITING else None,
        nonce=nonce,
    )


class MemoryJournal:
    """A journal in a dict: for the simulator and tests. Nothing survives the process, so by
    default it keeps no payloads (ten thousand speakers would each hold a copy of the audio)."""

    def __init__(self, *, keep_payloads: bool = False) -> None:
        self._entries: dict[str, JournalEntry] = {}
        self._keep_payloads = keep_payloads

    def state_of(self, command_id: str) -> str | None:
        entry = self._entries.get(command_id)
        return entry.state if entry is not None else None

    def lookup(self, command_id: str) -> JournalEntry | None:
        return self._entries.get(command_id)

    def record(
        self,
        command_id: str,
        broadcast_id: str,
        state: str,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        expires_at_ms: int | None = None,
        payload: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        self._entries[command_id] = merge_entry(
            self._entries.get(command_id),
            command_id,
            broadcast_id,
            state,
            reason=reason,
            proof=proof,
            expires_at_ms=expires_at_ms,
            payload=payload if self._keep_payloads else None,
            nonce=nonce,
        )

    def unfinished(self) -> list[JournalEntry]:
        return [e for e in self._entries.values() if e.state in UNFINISHED]

    def prune(self, before_ms: int) -> int:
        """Forget finished entries that expired before `before_ms` (a replay would be refused
        as expired anyway)."""
        old = [
            k
            for k, e in self._entries.items()
            if e.state not in UNFINISHED and e.expires_at_ms is not None
            if e.expires_at_ms < before_ms
        ]
        for key in old:
            del self._entries[key]
        return len(old)

    def __len__(self) -> int:
        return len(self._entries)
