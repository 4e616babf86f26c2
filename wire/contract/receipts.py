"""Receipts: a speaker's signed proof of play, and the enrollment of its receipt key.

Each speaker holds its own Ed25519 key (enrolled with the gateway, which keeps only the public
half). A ``played`` ack carries ``receipt_sig``: the speaker's signature over these UTF-8 bytes,
lines joined by a line feed, no trailing newline::

    maeul-receipt/v1
    {command_id}
    {broadcast_id}
    {speaker}
    {audio_sha256}          the encoding it played, lowercase hex
    {played_ms}             decimal
    {level_dbfs}            two decimals ("-23.40", "0.00"); empty when the ack has no level
    {at_ms}                 the ack's at_ms, decimal

A speaker sends ``level_dbfs`` with at most two decimals, so both sides write the same text.

An indoor receiver's ``heard`` ack (its 들었어요 button) is signed with the same key over::

    maeul-heard/v1
    {command_id}
    {broadcast_id}
    {speaker}
    {at_ms}                 the ack's at_ms, decimal (when the button was pressed)
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final

from pydantic import Field

from wire.contract.base import Segment, Sha256Hex, _Message
from wire.contract.enums import AckStatus
from wire.contract.reports import Ack
from wire.contract.signing import _verified

RECEIPT_DOMAIN: Final = "maeul-receipt/v1"
HEARD_DOMAIN: Final = "maeul-heard/v1"


def _level_text(level_dbfs: float | None) -> str:
    if level_dbfs is None:
        return ""
    text = f"{round(level_dbfs, 2):.2f}"
    return "0.00" if text == "-0.00" else text


class Receipt(_Message):
    """What a speaker signs when it reports ``played``: which command, which audio, how long,
    how loud, when. Rebuilt from a ``played`` ack by `receipt_of`."""

    command_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    broadcast_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    speaker: Segment
    audio_sha256: Sha256Hex
    played_ms: int = Field(ge=0)
    level_dbfs: float | None = Field(default=None, ge=-200, le=20)
    at_ms: int = Field(ge=0)
    sig: str | None = Field(default=None, max_length=128)

    def signing_bytes(self) -> bytes:
        return receipt_signing_bytes(
            command_id=self.command_id,
            broadcast_id=self.broadcast_id,
            speaker=self.speaker,
            audio_sha256=self.audio_sha256,
            played_ms=self.played_ms,
            level_dbfs=self.level_dbfs,
            at_ms=self.at_ms,
        )


def receipt_signing_bytes(
    *,
    command_id: str,
    broadcast_id: str,
    speaker: str,
    audio_sha256: str,
    played_ms: int,
    level_dbfs: float | None,
    at_ms: int,
) -> bytes:
    """The canonical bytes a receipt's signature covers (see the module docstring)."""
    lines = (
        RECEIPT_DOMAIN,
        command_id,
        broadcast_id,
        speaker,
        audio_sha256,
        str(int(played_ms)),
        _level_text(level_dbfs),
        str(int(at_ms)),
    )
    return "\n".join(lines).encode()


def heard_signing_bytes(*, command_id: str, broadcast_id: str, speaker: str, at_ms: int) -> bytes:
    """The canonical bytes a ``heard`` ack's signature covers (see the module docstring)."""
    lines = (HEARD_DOMAIN, command_id, broadcast_id, speaker, str(int(at_ms)))
    return "\n".join(lines).encode()


def _heard_bytes(ack: Ack) -> bytes:
    return heard_signing_bytes(
        command_id=ack.command_id,
        broadcast_id=ack.broadcast_id,
        speaker=ack.speaker,
        at_ms=ack.at_ms,
    )


def sign_heard(ack: Ack, private_key: bytes) -> Ack:
    """A ``heard`` ack with ``receipt_sig``: the receiver's signature over its heard bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if ack.status is not AckStatus.HEARD:
        raise ValueError("only a heard ack is signed as heard")
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(_heard_bytes(ack))
    return ack.model_copy(update={"receipt_sig": base64.b64encode(signature).decode("ascii")})


def verify_heard(ack: Ack, public_key: bytes) -> bool:
    """Whether a ``heard`` ack is signed by the receiver whose raw public key this is."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if ack.status is not AckStatus.HEARD or not ack.receipt_sig or len(public_key) != 32:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return False
    return _verified(key, ack.receipt_sig, _heard_bytes(ack))


def receipt_of(ack: Ack) -> Receipt | None:
    """The receipt a ``played`` ack states (signed or not); None when it states no proof."""
    if ack.status is not AckStatus.PLAYED or ack.audio_sha256 is None or ack.played_ms is None:
        return None
    return Receipt(
        command_id=ack.command_id,
        broadcast_id=ack.broadcast_id,
        speaker=ack.speaker,
        audio_sha256=ack.audio_sha256,
        played_ms=ack.played_ms,
        level_dbfs=ack.level_dbfs,
        at_ms=ack.at_ms,
        sig=ack.receipt_sig,
    )


def new_receipt_key() -> tuple[bytes, bytes]:
    """A fresh speaker receipt key: (raw 32-byte private key, raw 32-byte public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return _raw_private(key), _raw_public(key)


def receipt_public_key(private_key: bytes) -> bytes:
    """The raw public half of a raw Ed25519 private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return _raw_public(Ed25519PrivateKey.from_private_bytes(private_key))


def sign_receipt(receipt: Receipt, private_key: bytes) -> Receipt:
    """The receipt with ``sig``: the speaker's Ed25519 signature over its signing bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(receipt.signing_bytes())
    return receipt.model_copy(update={"sig": base64.b64encode(signature).decode("ascii")})


# Enrolling a receipt key proves possession of its private half: the speaker signs the UTF-8
# lines "maeul-receipt-key/v1", its city, its speaker id and the base64 public key (as sent),
# joined by "\n", no trailing newline. A key cannot be enrolled for a speaker by someone who
# only copied its public half, and the signature binds it to one speaker of one city.

RECEIPT_KEY_DOMAIN: Final = "maeul-receipt-key/v1"


def receipt_key_proof_bytes(city: str, speaker: str, public_key: str) -> bytes:
    """The bytes a receipt key's proof of possession signs (see above)."""
    return "\n".join((RECEIPT_KEY_DOMAIN, city, speaker, public_key)).encode()


def receipt_key_enrollment(private_key: bytes, city: str, speaker: str) -> dict[str, str]:
    """What a speaker sends to enroll its receipt key: ``public_key`` and ``proof`` (base64)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = base64.b64encode(receipt_public_key(private_key)).decode("ascii")
    signer = Ed25519PrivateKey.from_private_bytes(private_key)
    proof = signer.sign(receipt_key_proof_bytes(city, speaker, public))
    return {"public_key": public, "proof": base64.b64encode(proof).decode("ascii")}


def verify_receipt_key_proof(city: str, speaker: str, public_key: str, proof: str) -> bool:
    """True when `proof` is the holder of `public_key`'s signature of its enrollment."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError):
        return False
    return _verified(key, proof, receipt_key_proof_bytes(city, speaker, public_key))


def verify_receipt(receipt: Receipt, public_key: bytes) -> bool:
    """True when ``receipt.sig`` is the holder of `public_key`'s signature over the receipt."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if receipt.sig is None or len(public_key) != 32:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return False
    return _verified(key, receipt.sig, receipt.signing_bytes())


def _raw_private(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return raw


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw
