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

Indoor receivers: a speaker given its household's `contract.ReceiverSettings` scales what it
plays by the volume (``Play.volume``; the ``played`` level is the scaled output's), answers a
notice ``failed``/``muted`` at volume 0, and, when the household holds notices in quiet hours,
keeps one arriving in them queued but held: acknowledged ``received`` with reason
``held_quiet_hours``, it plays once `on_tick` finds the window over, unless it expires or is
cancelled first. A disaster alert is never held and plays at full volume.

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

This module decides what is admitted: the checks on each copy, refusals, duplicates and replays,
and the restart. The states and the journal are in `devices.states`, the actions and acks in
`devices.actions`, the play queue (order, pre-emption, cancels, resends) in `devices.playback`.

Exceptions::

    devices.states.IllegalMove     a journal state change that `MOVES` does not allow (a bug)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Final

from devices.actions import AckWriter, Action, Prepare
from devices.clock import ClockOffset
from devices.playback import Playback, QueuedCommand
from devices.states import (
    ENDED,
    FAILED,
    PLAYED,
    PREEMPTED,
    RECEIVED,
    REJECTED,
    RETRYABLE,
    WAITING,
    Journal,
    JournalEntry,
    MemoryJournal,
    Proof,
    cancel_key,
)
from wire import contract
from wire.contract import AckStatus, Codec, FailReason, ReceivedReason, RejectReason


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


# Acks refusing a copy that did not prove itself (`contract.COPY_REFUSALS`): at most this many a
# minute (a burst of as many, refilled evenly). A forged command sent to the whole city would
# otherwise come back as one ack from every speaker; the gateway needs none of them to be right
# (an unanswered genuine command is asked again), and a few still mark the attack.
REFUSAL_BUDGET: Final = 30
_REFUSAL_REFILL_MS: Final = 60_000 / REFUSAL_BUDGET


class SpeakerCore(Playback):
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
        receiver: contract.ReceiverSettings | None = None,
    ) -> None:
        super().__init__(
            journal if journal is not None else MemoryJournal(),
            clock=clock,
            acks=AckWriter(identity, clock=clock, receipt_key=receipt_key),
        )
        self.identity = identity
        self.codecs: tuple[Codec, ...] = tuple(Codec(c) for c in codecs)
        # A speaker without a live-stream player refuses live broadcasts rather than playing
        # their chime and reporting `played` for a stream nobody heard.
        self.plays_live = plays_live
        self._verify = verify
        self._refusals_left = float(REFUSAL_BUDGET)
        self._refusals_at_ms: int | None = None
        self.clock_offset = ClockOffset()
        # An indoor receiver's household settings (volume, quiet-hours hold), from its
        # provisioning; None for a loudspeaker.
        self.receiver = receiver

    def now_ms(self) -> int:
        """The speaker's own clock."""
        return self._clock()

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
        # Only an authentic command's stamp: a forged one must not move the clock.
        self.clock_offset.observe(command.issued_at_ms, now)
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
            return [self._acks.repeat(known)]
        self._move(
            command.id,
            command.broadcast_id,
            None,
            REJECTED,
            reason=reason,
            expires_at_ms=command.expires_at_ms,
        )
        self.counters.rejected += 1
        return [self._acks.ack(command.id, command.broadcast_id, AckStatus.REJECTED, reason=reason)]

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
            if entry.state in WAITING and entry.payload is not None:
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
                self._acks.ack(
                    entry.command_id, entry.broadcast_id, AckStatus.FAILED, reason=reason
                )
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
        replayed = known.state in ENDED and known.nonce is not None
        if refusal is None and replayed and command.nonce == known.nonce:
            self.counters.replays += 1
            refusal = RejectReason.REPLAYED
        if refusal is not None:
            self.counters.rejected += 1
            return self._refusal(command.id, command.broadcast_id, refusal)
        return [self._acks.repeat(known)]

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
        return [self._acks.ack(command_id, broadcast_id, AckStatus.REJECTED, reason=reason)]

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
        if self.journal.state_of(cancel_key(command.broadcast_id)) is not None:
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
                self._acks.ack(
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
        volume = self.receiver.volume_for(command) if self.receiver else contract.FULL_VOLUME
        if volume == 0:
            return self._mute(command, state)
        held_until = None
        if self.receiver is not None and not resumed:
            held_until = self.receiver.held_until_ms(command, self._clock())
        item = QueuedCommand(
            command=command.model_copy(update={"audio": (light,)}),
            audio=light,
            seq=next(self._seq),
            preempted=resumed,
            held_until_ms=held_until,
            volume=volume,
        )
        if resumed:
            ack = self._acks.ack(command.id, command.broadcast_id, AckStatus.PREEMPTED)
        elif held_until is not None:
            self.counters.held += 1
            ack = self._receive(command, state, payload, reason=ReceivedReason.HELD_QUIET_HOURS)
        else:
            ack = self._receive(command, state, payload)
        self._queue.append(item)
        self._queue.sort(key=QueuedCommand.order)
        actions: list[Action] = [ack, *self._supersede(command)]
        current = self._current
        # A held notice waits for quiet hours to end: it interrupts nothing now.
        outranks = current is not None and command.priority > current.command.priority
        if current is not None and outranks and held_until is None:
            actions += self._preempt(current)
        return [*actions, Prepare(command.id, light, data), *self._next()]

    def _mute(self, command: contract.Command, state: str | None) -> list[Action]:
        """An indoor receiver its household turned down to 0: a notice is not played."""
        self.counters.muted += 1
        self.counters.failed += 1
        return [self._fail_on_arrival(command, state, FailReason.MUTED)]

    def _log_silently(
        self, command: contract.Command, audio: contract.AudioRef, state: str | None
    ) -> list[Action]:
        """A test the city wants logged, not heard: journaled and acked without a sound."""
        received = self._receive(command, state)
        proof = Proof(audio.sha256, 0, None)
        self._move(command.id, command.broadcast_id, RECEIVED, PLAYED, proof=proof)
        self.counters.logged += 1
        played = self._acks.ack(command.id, command.broadcast_id, AckStatus.PLAYED, proof=proof)
        return [received, played]
