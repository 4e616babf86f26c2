"""The play queue of a speaker's core: what plays when, pre-emption, cancels and resends.

`Playback` holds the commands a speaker admitted, in priority then arrival order, and the one
playing; it starts the next when the audio is ready and nothing plays, stops the one playing for
a strictly higher priority or a cancel, fails what expired while waiting, and settles a resend
of a message that already played. `devices.speaker.SpeakerCore` builds on it and decides what
is admitted. No I/O: each method returns the actions its caller carries out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.actions import Ack, AckWriter, Action, Play, Stop
from devices.states import (
    ALREADY_PLAYED_AS,
    FAILED,
    MOVES,
    PLAYED,
    PLAYING,
    PREEMPTED,
    RECEIVED,
    UNFINISHED,
    IllegalMove,
    Journal,
    JournalEntry,
    Proof,
    cancel_key,
    superseded_key,
)
from devices.volume import scaled_level
from wire import contract
from wire.contract import AckStatus, FailReason, RejectReason


@dataclass
class Counters:
    commands: int = 0  # payloads handed to on_command
    malformed: int = 0  # payloads that were not a valid command
    duplicates: int = 0  # commands whose id was already journaled
    received: int = 0
    played: int = 0
    failed: int = 0
    rejected: int = 0
    preempted: int = 0  # times a playing command was interrupted by a higher priority
    logged: int = 0  # tests the city wants logged, not heard (``audible`` false)
    replays: int = 0  # ended commands sent again with their old nonce, refused
    superseded: int = 0  # commands dropped because a resend of the same message is held
    already_played: int = 0  # resends answered from an earlier playback, not played again
    held: int = 0  # notices an indoor receiver held for the end of quiet hours
    muted: int = 0  # notices an indoor receiver at volume 0 did not play
    # Refusals of unauthenticated copies left unsent: past `devices.speaker.REFUSAL_BUDGET` a
    # minute, a flood of forged commands is not echoed back to the gateway one ack per command
    # per speaker.
    refusals_unsent: int = 0


@dataclass(slots=True)
class QueuedCommand:
    """A command admitted to play: waiting in the queue, or playing."""

    command: contract.Command  # without inline data
    audio: contract.AudioRef  # without inline data
    seq: int  # arrival order; kept when pre-empted, so it stays first among its priority
    ready: bool = False
    duration_ms: int | None = None
    level_dbfs: float | None = None
    preempted: bool = False  # waiting in the queue after a pre-emption (journal: PREEMPTED)
    # An indoor receiver holding it for its household until quiet hours end (Unix ms, speaker
    # clock); None: it plays at its turn.
    held_until_ms: int | None = None
    volume: int = contract.FULL_VOLUME  # what its PCM is scaled by on the output
    # The journaled payload, held only while playing (the journal drops it then) so that a
    # pre-emption can journal it again for a restart.
    payload: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.command.id

    @property
    def state(self) -> str:
        """Its journal state while it waits in the queue."""
        return PREEMPTED if self.preempted else RECEIVED

    def order(self) -> tuple[int, int]:
        return (-self.command.priority, self.seq)


class Playback:
    """The queue and the playing command of one speaker, and the journal moves they make."""

    def __init__(self, journal: Journal, *, clock: Callable[[], int], acks: AckWriter) -> None:
        self.journal = journal
        self.counters = Counters()
        self._clock = clock
        self._acks = acks
        self._queue: list[QueuedCommand] = []
        self._current: QueuedCommand | None = None
        self._seq = itertools.count()

    @property
    def playing(self) -> str | None:
        """The command id whose audio is playing now."""
        return self._current.id if self._current is not None else None

    @property
    def queued(self) -> tuple[str, ...]:
        """Command ids waiting to play (held ones included), in priority and arrival order."""
        return tuple(item.id for item in self._queue)

    @property
    def held(self) -> tuple[str, ...]:
        """Command ids an indoor receiver holds until quiet hours end."""
        return tuple(item.id for item in self._queue if item.held_until_ms is not None)

    # -- events --------------------------------------------------------------------------

    def on_prepared(self, command_id: str, *, duration_ms: int, level_dbfs: float) -> list[Action]:
        item = self._find(command_id)
        if item is None:  # cancelled or expired while it was being prepared
            return []
        item.ready, item.duration_ms, item.level_dbfs = True, duration_ms, level_dbfs
        return self._next()

    def on_prepare_failed(self, command_id: str, reason: FailReason | RejectReason) -> list[Action]:
        """The audio could not be fetched, did not match its sha256, or did not decode."""
        item = self._find(command_id)
        if item is None:
            return []
        self._queue.remove(item)
        status = AckStatus.REJECTED if reason is RejectReason.INTEGRITY else AckStatus.FAILED
        return [self._end(item, item.state, status, reason=reason), *self._next()]

    def on_play_finished(self, command_id: str, *, played_ms: int) -> list[Action]:
        current = self._current
        if current is None or current.id != command_id:
            return []  # stopped meanwhile: its ack is already out
        self._current = None
        level = current.level_dbfs
        if level is not None and current.volume < contract.FULL_VOLUME:
            level = scaled_level(level, current.volume)  # the level of what the output played
        proof = Proof(current.audio.sha256, played_ms, level)
        return [self._end(current, PLAYING, AckStatus.PLAYED, proof=proof), *self._next()]

    def on_play_failed(
        self, command_id: str, reason: FailReason = FailReason.PLAYER_ERROR
    ) -> list[Action]:
        current = self._current
        if current is None or current.id != command_id:
            return []
        self._current = None
        return [self._end(current, PLAYING, AckStatus.FAILED, reason=reason), *self._next()]

    def on_tick(self) -> list[Action]:
        """Call now and then: fails queued commands whose expiry passed while they waited, and
        lets held ones play once their quiet hours are over."""
        now = self._clock()
        actions: list[Action] = []
        for item in self._queue:
            if item.held_until_ms is not None and now >= item.held_until_ms:
                item.held_until_ms = None
        for item in [i for i in self._queue if now >= i.command.expires_at_ms]:
            self._queue.remove(item)
            actions.append(self._end(item, item.state, AckStatus.FAILED, reason=FailReason.EXPIRED))
        return [*actions, *self._next()]

    # -- resends ---------------------------------------------------------------------------

    def _stands_in_for(self, command_id: str) -> str | None:
        """The held or played resend that supersedes `command_id`, if any."""
        entry = self.journal.lookup(superseded_key(command_id))
        newer = entry.reason if entry is not None else None
        if newer is None:
            return None
        return newer if self.journal.state_of(newer) in (*UNFINISHED, PLAYED) else None

    def _already_played(self, command: contract.Command) -> JournalEntry | None:
        """The journal entry of a command `command` supersedes that already played."""
        for earlier in command.supersedes or ():
            entry = self.journal.lookup(earlier)
            if entry is not None and entry.state == PLAYED:
                return entry
        return None

    def _drop_superseded(self, command: contract.Command, state: str | None) -> list[Action]:
        """A late copy of a command a held (or played) resend stands in for: never played."""
        self.counters.superseded += 1
        return [self._fail_on_arrival(command, state, FailReason.SUPERSEDED)]

    def _fail_on_arrival(
        self, command: contract.Command, state: str | None, reason: FailReason
    ) -> Ack:
        """Journal an arriving command as failed for `reason`, never to play, and ack it."""
        self._move(
            command.id,
            command.broadcast_id,
            state,
            FAILED,
            reason=reason,
            expires_at_ms=command.expires_at_ms,
            nonce=command.nonce,
        )
        return self._acks.ack(command.id, command.broadcast_id, AckStatus.FAILED, reason=reason)

    def _settle_as_played(
        self,
        command: contract.Command,
        state: str | None,
        earlier: JournalEntry,
        payload: bytes | None = None,
    ) -> list[Action]:
        """A resend of a message this speaker already played: ``played``, without a sound."""
        actions: list[Action] = []
        if state != RECEIVED:
            actions.append(self._receive(command, state, payload))
        reason = ALREADY_PLAYED_AS + earlier.command_id
        self._move(
            command.id, command.broadcast_id, RECEIVED, PLAYED, reason=reason, proof=earlier.proof
        )
        self.counters.already_played += 1
        actions.append(
            self._acks.ack(
                command.id,
                command.broadcast_id,
                AckStatus.PLAYED,
                proof=earlier.proof,
                already_played_as=earlier.command_id,
            )
        )
        return actions

    def _supersede(self, command: contract.Command) -> list[Action]:
        """Remember what `command` stands in for, and drop those of them still waiting. One that
        is playing finishes; `command` then waits and is settled as played (see `_next`)."""
        actions: list[Action] = []
        for earlier in command.supersedes or ():
            self._remember(superseded_key(earlier), command, reason=command.id)
            item = self._find(earlier)
            if item is not None:
                self._queue.remove(item)
                self.counters.superseded += 1
                actions.append(
                    self._end(item, item.state, AckStatus.FAILED, reason=FailReason.SUPERSEDED)
                )
        return actions

    def _remember(self, key: str, command: contract.Command, *, reason: str) -> None:
        """A note in the journal that outlives a restart, forgotten with the command's expiry."""
        self.journal.record(
            key, command.broadcast_id, FAILED, reason=reason, expires_at_ms=command.expires_at_ms
        )

    def _receive(
        self,
        command: contract.Command,
        state: str | None,
        payload: bytes | None = None,
        *,
        reason: str | None = None,
    ) -> Ack:
        """Journal the command as received (with its nonce, for replay checks) and ack it;
        `reason` (held in quiet hours) is journaled too, so a repeated ack says it again."""
        self._move(
            command.id,
            command.broadcast_id,
            state,
            RECEIVED,
            reason=reason,
            expires_at_ms=command.expires_at_ms,
            payload=payload,
            nonce=command.nonce,
        )
        if state != RECEIVED:
            self.counters.received += 1
        return self._acks.ack(command.id, command.broadcast_id, AckStatus.RECEIVED, reason=reason)

    def _preempt(self, current: QueuedCommand) -> list[Action]:
        """Stop `current` for a higher priority and queue it again, to play from the start."""
        self._current = None
        # Journaled with its payload again, so that a restart queues it again too.
        self._move(
            current.id, current.command.broadcast_id, PLAYING, PREEMPTED, payload=current.payload
        )
        current.preempted, current.payload = True, None
        self.counters.preempted += 1
        self._queue.append(current)
        self._queue.sort(key=QueuedCommand.order)
        return [
            Stop(current.id, FailReason.PREEMPTED),
            self._acks.ack(current.id, current.command.broadcast_id, AckStatus.PREEMPTED),
        ]

    def _cancel(
        self, command: contract.Command, payload: bytes | None, known: JournalEntry | None
    ) -> list[Action]:
        broadcast = command.broadcast_id
        self._remember(cancel_key(broadcast), command, reason=command.id)
        state = known.state if known is not None else None
        self._move(
            command.id,
            broadcast,
            state,
            RECEIVED,
            expires_at_ms=command.expires_at_ms,
            payload=payload,
            nonce=command.nonce,
        )
        actions: list[Action] = [self._acks.ack(command.id, broadcast, AckStatus.RECEIVED)]
        current = self._current
        if current is not None and current.command.broadcast_id == broadcast:
            self._current = None
            actions.append(Stop(current.id, FailReason.CANCELLED))
            actions.append(
                self._end(current, PLAYING, AckStatus.FAILED, reason=FailReason.CANCELLED)
            )
        for item in [i for i in self._queue if i.command.broadcast_id == broadcast]:
            self._queue.remove(item)
            actions.append(
                self._end(item, item.state, AckStatus.FAILED, reason=FailReason.CANCELLED)
            )
        # The cancel itself is done: a replay of its id is answered "played" and does nothing.
        self._move(command.id, broadcast, RECEIVED, PLAYED)
        actions.append(self._acks.ack(command.id, broadcast, AckStatus.PLAYED))
        return [*actions, *self._next()]

    # -- playing -------------------------------------------------------------------------

    def _next(self) -> list[Action]:
        """Start the head of the queue when nothing plays and it is ready; expire what is due."""
        actions: list[Action] = []
        now = self._clock()
        while self._current is None:
            # A held command waits for the end of quiet hours, not for its turn.
            head = next((i for i in self._queue if i.held_until_ms is None), None)
            if head is None:
                break
            if now >= head.command.expires_at_ms:
                self._queue.remove(head)
                actions.append(
                    self._end(head, head.state, AckStatus.FAILED, reason=FailReason.EXPIRED)
                )
                continue
            earlier = self._already_played(head.command) if not head.preempted else None
            if earlier is not None:
                # What it stands in for played meanwhile (it was playing when this arrived).
                self._queue.remove(head)
                actions += self._settle_as_played(head.command, RECEIVED, earlier)
                continue
            if not head.ready:
                break  # a higher-priority command is still being prepared: it goes first
            self._queue.remove(head)
            self._current = head
            # The journal drops the payload once it plays; held here in case it is pre-empted.
            entry = self.journal.lookup(head.id)
            head.payload = entry.payload if entry is not None else None
            # Journaled before the audio starts: after a crash it is not played again.
            self._move(head.id, head.command.broadcast_id, head.state, PLAYING)
            head.preempted = False
            actions.append(self._acks.ack(head.id, head.command.broadcast_id, AckStatus.PLAYING))
            actions.append(Play(head.command, head.audio, head.volume))
        return actions

    def _end(
        self,
        item: QueuedCommand,
        state: str,
        status: AckStatus,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
    ) -> Ack:
        self._move(
            item.id, item.command.broadcast_id, state, status.value, reason=reason, proof=proof
        )
        if status is AckStatus.PLAYED:
            self.counters.played += 1
        elif status is AckStatus.REJECTED:
            self.counters.rejected += 1
        else:
            self.counters.failed += 1
        return self._acks.ack(
            item.id, item.command.broadcast_id, status, reason=reason, proof=proof
        )

    def _find(self, command_id: str) -> QueuedCommand | None:
        return next((i for i in self._queue if i.id == command_id), None)

    # -- journal -------------------------------------------------------------------------

    def _move(
        self,
        command_id: str,
        broadcast_id: str,
        state: str | None,
        new: str,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        expires_at_ms: int | None = None,
        payload: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        if new not in MOVES[state]:
            raise IllegalMove(command_id, state, new)
        self.journal.record(
            command_id,
            broadcast_id,
            new,
            reason=reason,
            proof=proof,
            expires_at_ms=expires_at_ms,
            payload=payload,
            nonce=nonce,
        )
