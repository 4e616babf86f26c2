"""A speaker's protocol logic: which commands it plays, in what order, and what it acknowledges.

No I/O, in the manner of h11: the journal, the signature check and the clock are passed in, and
every method returns the actions its caller carries out (publish an ack, prepare audio, play,
stop). The simulated fleet and the device agent drive this same core.

The life of one command id on one speaker::

    payload ──on_command──▶ received ──(audio prepared, its turn)──▶ playing ──▶ played
        │                      └──▶ failed (expired, cancelled, fetch_failed, undecodable)
        └──▶ rejected (a check_command reason, unsupported_codec, integrity, malformed)

    playing ──(a strictly higher priority arrives)──▶ preempted ──(its turn again)──▶ playing
                                                          └──▶ failed (expired, cancelled)

Pre-emption: a command that outranks the one playing stops it at once (`Stop`, reason
``preempted``). The stopped command is acknowledged ``preempted`` and goes back to the queue
with its original arrival number, so it is first among its priority; when its turn comes it
plays again from the start, and its ``played`` proof is that complete playback. If its expiry
passes first it ends ``failed``/``expired`` without playing. Equal and lower priorities wait.

Cancels and resends: one message plays at most once. A ``cancel`` for a broadcast stops it if
it plays, drops it if it waits, and makes a copy that arrives later fail ``cancelled`` (the
gateway sends one to a speaker it gave up on, so a speaker that wakes late stays silent). A
command that ``supersedes`` earlier ones (a resend) makes any of them still waiting, or
arriving later, fail ``superseded``; if one of them already played, the resend is not played
again but answered ``played`` with ``already_played_as`` and that playback's proof. If one of
them is playing when the resend arrives, the resend waits and is settled the same way when
its turn comes. Both are remembered in the journal, under keys of their own (``cancel:`` and
the broadcast id, ``superseded:`` and the command id), until they expire: a restart forgets
neither.

A command id is journaled before it is acknowledged and ``playing`` is journaled before the
audio starts. A journaled id is not admitted again. Each later copy is checked on its own
signature: one that fails is refused (``unsigned``, ``unknown_key``, ``bad_signature``; a
command under a key id not trusted yet reaches the core only after `devices.keyring.KeyLearner`
has asked the gateway's key ring since it arrived, so ``unknown_key`` means the ring does not
vouch for it), one that carries the nonce already used after the command played is refused as
``replayed``, and any other copy gets the id's last ack repeated, so QoS 1 duplicates and
resends are harmless, a forged copy never draws the genuine command's ack, and a speaker plays a
command at most once. The one
exception is an id that never started and failed only on something its signature does not
cover (the bytes behind its URL): a later copy may still play, so a forged URL cannot burn a
genuine command. For the same reason a rejection is journaled only when the command is
authentic (signed with a known key, or no keys are configured).

Exceptions::

    IllegalMove     a journal state change that the table below does not allow (a bug)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from wire import contract
from wire.contract import AckStatus, Codec, FailReason, RejectReason

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
_UNFINISHED: Final = frozenset({RECEIVED, PLAYING, PREEMPTED})
# States in which a command still waits to play; the journal keeps its payload for a restart.
_WAITING: Final = frozenset({RECEIVED, PREEMPTED})
# The journal reason of a resend settled from an earlier playback: this prefix, then that
# command's id (so a repeated ack says it again).
ALREADY_PLAYED_AS: Final = "already_played_as:"
# Done: a copy with the same nonce after this is a replay. (A failed command is answered with
# its failure instead: a broker may redeliver a command that crashed the speaker mid-play.)
_ENDED: Final = frozenset({PLAYED})


class IllegalMove(RuntimeError):
    def __init__(self, command_id: str, state: str | None, new: str) -> None:
        self.command_id, self.state, self.new = command_id, state, new
        super().__init__(f"command {command_id}: cannot move from {state or 'nothing'} to {new}")


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
        payload=payload if state in _WAITING else None,
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
        return [e for e in self._entries.values() if e.state in _UNFINISHED]

    def prune(self, before_ms: int) -> int:
        """Forget finished entries that expired before `before_ms` (a replay would be refused
        as expired anyway)."""
        old = [
            k
            for k, e in self._entries.items()
            if e.state not in _UNFINISHED and e.expires_at_ms is not None
            if e.expires_at_ms < before_ms
        ]
        for key in old:
            del self._entries[key]
        return len(old)

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------------------------
# Actions the caller carries out


@dataclass(frozen=True, slots=True)
class Ack:
    """Publish this acknowledgement on the speaker's own ack topic."""

    message: contract.Ack


@dataclass(frozen=True, slots=True)
class Prepare:
    """Get the audio of an accepted command ready, then report `on_prepared` or
    `on_prepare_failed`. ``data`` holds the inline bytes, already checked against their
    sha256; when it is None, fetch ``audio.url`` and check the bytes against ``audio.sha256``."""

    command_id: str
    audio: contract.AudioRef
    data: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Play:
    """Start playing the prepared audio of ``command`` now; report `on_play_finished` (or
    `on_play_failed`). ``command`` and ``audio`` carry no inline data: the bytes went with
    `Prepare`."""

    command: contract.Command
    audio: contract.AudioRef


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the audio of ``command_id`` now. Its ack has already been issued."""

    command_id: str
    reason: FailReason


Action = Ack | Prepare | Play | Stop


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
    # Refusals of unauthenticated copies left unsent: past `REFUSAL_BUDGET` a minute, a flood
    # of forged commands is not echoed back to the gateway one ack per command per speaker.
    refusals_unsent: int = 0


@dataclass(slots=True)
class _Item:
    command: contract.Command  # without inline data
    audio: contract.AudioRef  # without inline data
    seq: int  # arrival order; kept when pre-empted, so it stays first among its priority
    ready: bool = False
    duration_ms: int | None = None
    level_dbfs: float | None = None
    preempted: bool = False  # waiting in the queue after a pre-emption (journal: PREEMPTED)
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


def _cancel_key(broadcast_id: str) -> str:
    """The journal key noting that a cancel for this broadcast arrived (never a command id)."""
    return f"cancel:{broadcast_id}"


def _superseded_key(command_id: str) -> str:
    """The journal key naming the command (its reason) that supersedes `command_id`."""
    return f"superseded:{command_id}"


def _without_data(ref: contract.AudioRef) -> contract.AudioRef:
    # model_copy skips validation on purpose: the bytes live on with the driver, not here.
    return ref.model_copy(update={"data": None}) if ref.data is not None else ref


def _verified_inline(ref: contract.AudioRef) -> bytes | None:
    try:
        data = ref.inline_bytes()
    except contract.WireError:
        return None
    if len(data) != ref.size:
        return None
    digest = hashlib.sha256(data).hexdigest()
    return data if hmac.compare_digest(digest, ref.sha256) else None


# --------------------------------------------------------------------------------------------
# The core


# Acks refusing a copy that did not prove itself (`contract.COPY_REFUSALS`): at most this many a
# minute (a burst of as many, refilled evenly). A forged command sent to the whole city would
# otherwise come back as one ack from every speaker; the gateway needs none of them to be right
# (an unanswered genuine command is asked again), and a few still mark the attack.
REFUSAL_BUDGET: Final = 30
_REFUSAL_REFILL_MS: Final = 60_000 / REFUSAL_BUDGET


class SpeakerCore:
    """One speaker's decisions. Not thread-safe: drive it from one thread (or one loop)."""

    def __init__(
        self,
        identity: contract.SpeakerIdentity,
        *,
        codecs: Iterable[Codec | str],
        journal: Journal | None = None,
        verify: contract.SignatureCheck | None = None,
        clock: Callable[[], int] = contract.now_ms,
        plays_live: bool = True,
        receipt_key: bytes | None = None,
    ) -> None:
        self.identity = identity
        # This speaker's own Ed25519 private key (raw): every ``played`` ack carries a receipt
        # signed with it (see `contract.Receipt`).
        self._receipt_key = receipt_key
        self.codecs: tuple[Codec, ...] = tuple(Codec(c) for c in codecs)
        # A speaker without a live-stream player refuses live broadcasts rather than playing
        # their chime and reporting `played` for a stream nobody heard.
        self.plays_live = plays_live
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.counters = Counters()
        self._verify = verify
        self._clock = clock
        self._queue: list[_Item] = []
        self._current: _Item | None = None
        self._seq = itertools.count()
        self._refusals_left = float(REFUSAL_BUDGET)
        self._refusals_at_ms: int | None = None

    @property
    def playing(self) -> str | None:
        """The command id whose audio is playing now."""
        return self._current.id if self._current is not None else None

    @property
    def queued(self) -> tuple[str, ...]:
        """Command ids waiting to play, in the order they will play."""
        return tuple(item.id for item in self._queue)

    # -- events --------------------------------------------------------------------------

    def on_command(self, payload: bytes) -> list[Action]:
        """A payload arrived on one of the speaker's command topics."""
        self.counters.commands += 1
        try:
            command = contract.decode_command(payload)
        except contract.WireError:
            return self._malformed(payload)
        known = self.journal.lookup(command.id)
        if known is not None and not self._may_retry(known):
            return self._duplicate(command, known)
        now = self._clock()
        reason = contract.check_command(command, self.identity, at_ms=now, verify=self._verify)
        if reason is not None:
            # A wrong clock must not burn a command that becomes valid once the clock is set.
            remember = reason is not RejectReason.NOT_YET_VALID and self._authentic(command, reason)
            return self._reject(command, reason, remember=remember, known=known)
        if command.type == "cancel":
            return self._cancel(command, payload, known)
        return self._admit(command, payload, known)

    def refuse(self, payload: bytes, reason: str) -> list[Action]:
        """Answer a command with ``rejected``/`reason` without acting on it (a speaker out of
        service, a simulated fault). Replays are answered the same way."""
        self.counters.commands += 1
        try:
            command = contract.decode_command(payload)
        except contract.WireError:
            return self._malformed(payload)
        known = self.journal.lookup(command.id)
        if known is not None:
            self.counters.duplicates += 1
            return [self._reack(known)]
        self._move(
            command.id,
            command.broadcast_id,
            None,
            REJECTED,
            reason=reason,
            expires_at_ms=command.expires_at_ms,
        )
        self.counters.rejected += 1
        return [self._ack(command.id, command.broadcast_id, AckStatus.REJECTED, reason=reason)]

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
        proof = Proof(current.audio.sha256, played_ms, current.level_dbfs)
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
        """Call now and then: fails queued commands whose expiry passed while they waited."""
        now = self._clock()
        actions: list[Action] = []
        for item in [i for i in self._queue if now >= i.command.expires_at_ms]:
            self._queue.remove(item)
            actions.append(self._end(item, item.state, AckStatus.FAILED, reason=FailReason.EXPIRED))
        return [*actions, *self._next()]

    def recover(self) -> list[Action]:
        """Settle what the journal says was in progress when the speaker last stopped.

        A command that was playing is not played again (``failed``/``interrupted``); one that
        was waiting (``received``, or ``preempted`` and waiting to play again from the start) is
        queued again while it has not expired.
        """
        actions: list[Action] = []
        now = self._clock()
        for entry in self.journal.unfinished():
            command = None
            if entry.state in _WAITING and entry.payload is not None:
                try:
                    command = contract.decode_command(entry.payload)
                except contract.WireError:
                    command = None
            if command is None:
                reason = FailReason.INTERRUPTED
            elif command.type == "cancel":
                # Stopped halfway through a cancel: finish it (it follows what it cancels).
                actions += self._cancel(command, None, entry)
                continue
            elif now >= command.expires_at_ms:
                reason = FailReason.EXPIRED
            else:
                assert entry.payload is not None
                actions += self._admit(command, entry.payload, entry)
                continue
            self._move(entry.command_id, entry.broadcast_id, entry.state, FAILED, reason=reason)
            self.counters.failed += 1
            actions.append(
                self._ack(entry.command_id, entry.broadcast_id, AckStatus.FAILED, reason=reason)
            )
        return [*actions, *self._next()]

    # -- admission -----------------------------------------------------------------------

    def _duplicate(self, command: contract.Command, known: JournalEntry) -> list[Action]:
        """A command id seen before. Every copy is checked on its own signature first: one that
        fails is refused (``unsigned``, ``unknown_key``, ``bad_signature``) and changes nothing,
        whatever the id's state, so a forged copy never draws an ack of the genuine command.
        An authentic copy with the nonce already used, after the command played, is a captured
        command sent again: ``replayed``. Any other authentic copy is transport's (QoS 1, the
        gateway asking again with a fresh nonce): its last ack is repeated and nothing else.

        (A broker redelivering a copy whose PUBACK was lost, after the command ended, is
        reported as ``replayed`` too: a rare false alarm is better than a silent replay.)"""
        self.counters.duplicates += 1
        refusal = self._copy_refusal(command)
        replayed = known.state in _ENDED and known.nonce is not None
        if refusal is None and replayed and command.nonce == known.nonce:
            self.counters.replays += 1
            refusal = RejectReason.REPLAYED
        if refusal is not None:
            self.counters.rejected += 1
            return self._refusal(command.id, command.broadcast_id, refusal)
        return [self._reack(known)]

    def _copy_refusal(self, command: contract.Command) -> RejectReason | None:
        if self._verify is None:
            return None
        return contract.signature_refusal(command, self._verify)

    def _malformed(self, payload: bytes) -> list[Action]:
        self.counters.malformed += 1
        ids = contract.command_ids_of(payload)
        if ids is None:
            return []
        # Nothing in a payload that failed validation can be trusted, even under a known id:
        # refused, never journaled, never answered with the genuine command's ack.
        self.counters.rejected += 1
        return self._refusal(*ids, RejectReason.MALFORMED)

    def _authentic(self, command: contract.Command, reason: RejectReason) -> bool:
        if self._verify is None:
            return True
        if reason in contract.COPY_REFUSALS:
            return False
        # Refused before its signature was looked at (scope, expiry): look now.
        return contract.signature_refusal(command, self._verify) is None

    def _may_retry(self, known: JournalEntry) -> bool:
        return known.state in (FAILED, REJECTED) and known.reason in RETRYABLE

    def _refusal(self, command_id: str, broadcast_id: str, reason: RejectReason) -> list[Action]:
        """A ``rejected`` ack, unless it refuses an unauthenticated copy past the budget."""
        if reason in contract.COPY_REFUSALS:
            now = self._clock()
            if self._refusals_at_ms is not None:
                refill = (now - self._refusals_at_ms) / _REFUSAL_REFILL_MS
                self._refusals_left = min(float(REFUSAL_BUDGET), self._refusals_left + refill)
            self._refusals_at_ms = now
            if self._refusals_left < 1:
                self.counters.refusals_unsent += 1
                return []
            self._refusals_left -= 1
        return [self._ack(command_id, broadcast_id, AckStatus.REJECTED, reason=reason)]

    def _reject(
        self,
        command: contract.Command,
        reason: RejectReason,
        *,
        remember: bool,
        known: JournalEntry | None = None,
    ) -> list[Action]:
        if remember:
            self._move(
                command.id,
                command.broadcast_id,
                known.state if known is not None else None,
                REJECTED,
                reason=reason,
                expires_at_ms=command.expires_at_ms,
            )
        self.counters.rejected += 1
        return self._refusal(command.id, command.broadcast_id, reason)

    def _admit(
        self, command: contract.Command, payload: bytes, known: JournalEntry | None
    ) -> list[Action]:
        state = known.state if known is not None else None
        # Only `recover` admits a pre-empted command again: it waits as it did before.
        resumed = state == PREEMPTED
        if self.journal.state_of(_cancel_key(command.broadcast_id)) is not None:
            self._move(
                command.id,
                command.broadcast_id,
                state,
                FAILED,
                reason=FailReason.CANCELLED,
                expires_at_ms=command.expires_at_ms,
            )
            self.counters.failed += 1
            return [
                self._ack(
                    command.id,
                    command.broadcast_id,
                    AckStatus.FAILED,
                    reason=FailReason.CANCELLED,
                )
            ]
        if self._stands_in_for(command.id) is not None:
            return self._drop_superseded(command, state)
        if command.supersedes and not resumed:
            settled = self._already_played(command)
            if settled is not None:
                return self._settle_as_played(command, state, settled, payload)
        audio = command.audio_for(self.codecs)
        if audio is None or (command.live is not None and not self.plays_live):
            return self._reject(command, RejectReason.UNSUPPORTED_CODEC, remember=True, known=known)
        data = None
        if audio.data is not None:
            data = _verified_inline(audio)
            if data is None:
                # The inline bytes are not covered by the signature: a later copy may be fine.
                return self._reject(command, RejectReason.INTEGRITY, remember=False)
        light = _without_data(audio)
        if not command.audible:
            return self._log_silently(command, light, state)
        item = _Item(
            command=command.model_copy(update={"audio": (light,)}),
            audio=light,
            seq=next(self._seq),
            preempted=resumed,
        )
        if resumed:
            ack = self._ack(command.id, command.broadcast_id, AckStatus.PREEMPTED)
        else:
            ack = self._receive(command, state, payload)
        self._queue.append(item)
        self._queue.sort(key=_Item.order)
        actions: list[Action] = [ack, *self._supersede(command)]
        current = self._current
        if current is not None and command.priority > current.command.priority:
            actions += self._preempt(current)
        return [*actions, Prepare(command.id, light, data), *self._next()]

    # -- resends ---------------------------------------------------------------------------

    def _stands_in_for(self, command_id: str) -> str | None:
        """The held or played resend that supersedes `command_id`, if any."""
        entry = self.journal.lookup(_superseded_key(command_id))
        newer = entry.reason if entry is not None else None
        if newer is None:
            return None
        return newer if self.journal.state_of(newer) in (*_UNFINISHED, PLAYED) else None

    def _already_played(self, command: contract.Command) -> JournalEntry | None:
        """The journal entry of a command `command` supersedes that already played."""
        for earlier in command.supersedes or ():
            entry = self.journal.lookup(earlier)
            if entry is not None and entry.state == PLAYED:
                return entry
        return None

    def _drop_superseded(self, command: contract.Command, state: str | None) -> list[Action]:
        """A late copy of a command a held (or played) resend stands in for: never played."""
        self._move(
            command.id,
            command.broadcast_id,
            state,
            FAILED,
            reason=FailReason.SUPERSEDED,
            expires_at_ms=command.expires_at_ms,
            nonce=command.nonce,
        )
        self.counters.superseded += 1
        return [
            self._ack(
                command.id, command.broadcast_id, AckStatus.FAILED, reason=FailReason.SUPERSEDED
            )
        ]

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
            self._ack(
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
            self._remember(_superseded_key(earlier), command, reason=command.id)
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

    def _log_silently(
        self, command: contract.Command, audio: contract.AudioRef, state: str | None
    ) -> list[Action]:
        """A test the city wants logged, not heard: journaled and acked without a sound."""
        received = self._receive(command, state)
        proof = Proof(audio.sha256, 0, None)
        self._move(command.id, command.broadcast_id, RECEIVED, PLAYED, proof=proof)
        self.counters.logged += 1
        played = self._ack(command.id, command.broadcast_id, AckStatus.PLAYED, proof=proof)
        return [received, played]

    def _receive(
        self, command: contract.Command, state: str | None, payload: bytes | None = None
    ) -> Ack:
        """Journal the command as received (with its nonce, for replay checks) and ack it."""
        self._move(
            command.id,
            command.broadcast_id,
            state,
            RECEIVED,
            expires_at_ms=command.expires_at_ms,
            payload=payload,
            nonce=command.nonce,
        )
        if state != RECEIVED:
            self.counters.received += 1
        return self._ack(command.id, command.broadcast_id, AckStatus.RECEIVED)

    def _preempt(self, current: _Item) -> list[Action]:
        """Stop `current` for a higher priority and queue it again, to play from the start."""
        self._current = None
        # Journaled with its payload again, so that a restart queues it again too.
        self._move(
            current.id, current.command.broadcast_id, PLAYING, PREEMPTED, payload=current.payload
        )
        current.preempted, current.payload = True, None
        self.counters.preempted += 1
        self._queue.append(current)
        self._queue.sort(key=_Item.order)
        return [
            Stop(current.id, FailReason.PREEMPTED),
            self._ack(current.id, current.command.broadcast_id, AckStatus.PREEMPTED),
        ]

    def _cancel(
        self, command: contract.Command, payload: bytes | None, known: JournalEntry | None
    ) -> list[Action]:
        broadcast = command.broadcast_id
        self._remember(_cancel_key(broadcast), command, reason=command.id)
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
        actions: list[Action] = [self._ack(command.id, broadcast, AckStatus.RECEIVED)]
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
        actions.append(self._ack(command.id, broadcast, AckStatus.PLAYED))
        return [*actions, *self._next()]

    # -- playing -------------------------------------------------------------------------

    def _next(self) -> list[Action]:
        """Start the head of the queue when nothing plays and it is ready; expire what is due."""
        actions: list[Action] = []
        now = self._clock()
        while self._current is None and self._queue:
            head = self._queue[0]
            if now >= head.command.expires_at_ms:
                self._queue.pop(0)
                actions.append(
                    self._end(head, head.state, AckStatus.FAILED, reason=FailReason.EXPIRED)
                )
                continue
            earlier = self._already_played(head.command) if not head.preempted else None
            if earlier is not None:
                # What it stands in for played meanwhile (it was playing when this arrived).
                self._queue.pop(0)
                actions += self._settle_as_played(head.command, RECEIVED, earlier)
                continue
            if not head.ready:
                break  # a higher-priority command is still being prepared: it goes first
            self._queue.pop(0)
            self._current = head
            # The journal drops the payload once it plays; held here in case it is pre-empted.
            entry = self.journal.lookup(head.id)
            head.payload = entry.payload if entry is not None else None
            # Journaled before the audio starts: after a crash it is not played again.
            self._move(head.id, head.command.broadcast_id, head.state, PLAYING)
            head.preempted = False
            actions.append(self._ack(head.id, head.command.broadcast_id, AckStatus.PLAYING))
            actions.append(Play(head.command, head.audio))
        return actions

    def _end(
        self,
        item: _Item,
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
        return self._ack(item.id, item.command.broadcast_id, status, reason=reason, proof=proof)

    def _find(self, command_id: str) -> _Item | None:
        return next((i for i in self._queue if i.id == command_id), None)

    # -- journal and acks ----------------------------------------------------------------

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

    def _reack(self, entry: JournalEntry) -> Ack:
        reason = entry.reason
        played_as: str | None = None
        if entry.state == PLAYED and reason is not None and reason.startswith(ALREADY_PLAYED_AS):
            played_as = reason.removeprefix(ALREADY_PLAYED_AS)
            reason = None
        return self._ack(
            entry.command_id,
            entry.broadcast_id,
            AckStatus(entry.state),
            reason=reason,
            proof=entry.proof,
            already_played_as=played_as,
        )

    def _ack(
        self,
        command_id: str,
        broadcast_id: str,
        status: AckStatus,
        *,
        reason: str | None = None,
        proof: Proof | None = None,
        already_played_as: str | None = None,
    ) -> Ack:
        message = contract.Ack(
            command_id=command_id,
            broadcast_id=broadcast_id,
            speaker=self.identity.speaker,
            status=status,
            at_ms=self._clock(),
            reason=reason,
            audio_sha256=proof.audio_sha256 if proof is not None else None,
            played_ms=proof.played_ms if proof is not None else None,
            level_dbfs=_level(proof.level_dbfs) if proof is not None else None,
            already_played_as=already_played_as,
        )
        return Ack(self._with_receipt(message))

    def _with_receipt(self, message: contract.Ack) -> contract.Ack:
        """A ``played`` ack signed as a receipt, when this speaker holds a receipt key."""
        receipt = contract.receipt_of(message)
        if self._receipt_key is None or receipt is None:
            return message
        signed = contract.sign_receipt(receipt, self._receipt_key)
        return message.model_copy(update={"receipt_sig": signed.sig})


def _level(level_dbfs: float | None) -> float | None:
    # Two decimals on the wire: the receipt signs the level as text with two decimals.
    return round(level_dbfs, 2) if level_dbfs is not None else None
