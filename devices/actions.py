"""What the speaker core asks its driver to do, and how it words its acknowledgements.

`devices.speaker.SpeakerCore` returns a list of actions from every event: publish an `Ack`,
`Prepare` a command's audio, `Play` it, `Stop` it. The simulated fleet and the device agent carry
them out. `AckWriter` builds the acks: stamped with the speaker and the time, and a ``played``
ack signed as a receipt when the speaker holds a receipt key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from devices.states import ALREADY_PLAYED_AS, PLAYED, JournalEntry, Proof
from wire import contract
from wire.contract import AckStatus, FailReason


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
    `Prepare`. ``volume`` (0-100) scales the PCM written to the output (an indoor receiver's
    household setting; 100 for every other speaker)."""

    command: contract.Command
    audio: contract.AudioRef
    volume: int = contract.FULL_VOLUME


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the audio of ``command_id`` now. Its ack has already been issued."""

    command_id: str
    reason: FailReason


Action = Ack | Prepare | Play | Stop

# Acks after which a command id never plays on this speaker: its audio can go.
FINAL: Final = frozenset({AckStatus.PLAYED, AckStatus.FAILED, AckStatus.REJECTED})


class AckWriter:
    """Builds one speaker's acks."""

    def __init__(
        self,
        identity: contract.SpeakerIdentity,
        *,
        clock: Callable[[], int],
        receipt_key: bytes | None = None,
    ) -> None:
        self.identity = identity
        self._clock = clock
        # This speaker's own Ed25519 private key (raw): every ``played`` ack carries a receipt
        # signed with it (see `contract.Receipt`).
        self._receipt_key = receipt_key

    def repeat(self, entry: JournalEntry) -> Ack:
        """The last ack of a journaled command, said again."""
        reason = entry.reason
        played_as: str | None = None
        if entry.state == PLAYED and reason is not None and reason.startswith(ALREADY_PLAYED_AS):
            played_as = reason.removeprefix(ALREADY_PLAYED_AS)
            reason = None
        return self.ack(
            entry.command_id,
            entry.broadcast_id,
            AckStatus(entry.state),
            reason=reason,
            proof=entry.proof,
            already_played_as=played_as,
        )

    def ack(
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
