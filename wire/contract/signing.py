"""Gateway signing keys: signing and checking commands, and the key ring that rotates keys.

A speaker trusts the keys it was provisioned with and learns a rotated key from the gateway's
key ring when a key it trusts endorses it; a revocation in the ring drops a key for good.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import Field

from wire.contract.base import PROTOCOL_VERSION, Segment, WireError, _load, _Message

if TYPE_CHECKING:
    from wire.contract.commands import Command

KeyId = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class SignatureCheck:
    """Verifies Ed25519 command signatures against the gateway's published keys (by key id).

    Keys given here are trusted as they are (the speaker's configuration); `learn` adds the keys
    a trusted key vouches for and applies revocations. A revoked key id is never trusted again,
    whatever a later ring says, and keys learned through it alone are dropped with it."""

    def __init__(self, public_keys: Mapping[str, bytes], *, revoked: Iterable[str] = ()) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._revoked = set(revoked)
        self._keys = {
            kid: Ed25519PublicKey.from_public_bytes(raw)
            for kid, raw in public_keys.items()
            if kid not in self._revoked
        }
        # The key that vouched for each learned key (configured keys have none).
        self._vouched_by: dict[str, str] = {}

    def __call__(self, command: Command) -> bool:
        key = self._keys.get(command.key_id or "")
        if key is None or command.sig is None:
            return False
        return _verified(key, command.sig, command.signing_bytes())

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    @property
    def revoked(self) -> frozenset[str]:
        return frozenset(self._revoked)

    @property
    def trusted(self) -> frozenset[str]:
        return frozenset(self._keys)

    def learn(self, ring: KeyRing, city: str) -> dict[str, bytes]:
        """Trust the keys of `ring` that a trusted key vouches for, directly or through a chain
        of endorsements, and drop the keys its revocations name (each signed by another trusted
        key) with every key learned only through them; returns the newly trusted keys (key id
        -> raw public key). Repeated until nothing changes: a revocation may be signed by a key
        learned from this same ring, and a dropped key may be vouched for again by another."""
        if ring.city != city:
            return {}
        before = set(self._keys)
        learned: dict[str, bytes] = {}
        while True:
            learned.update(self._endorsed(ring, city))
            if not self._revoke(ring, city):
                break
        return {kid: raw for kid, raw in learned.items() if kid in self._keys and kid not in before}

    def _endorsed(self, ring: KeyRing, city: str) -> dict[str, bytes]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        learned: dict[str, bytes] = {}
        pending = [
            k for k in ring.keys if k.key_id not in self._keys and k.key_id not in self._revoked
        ]
        progress = True
        while pending and progress:
            progress = False
            for entry in list(pending):
                voucher = self._keys.get(entry.endorsed_by or "")
                if voucher is None or entry.sig is None:
                    continue
                pending.remove(entry)
                if not _verified(voucher, entry.sig, entry.signing_bytes(city)):
                    continue
                raw = entry.raw_public_key()
                self._keys[entry.key_id] = Ed25519PublicKey.from_public_bytes(raw)
                self._vouched_by[entry.key_id] = entry.endorsed_by or ""
                learned[entry.key_id] = raw
                progress = True
        return learned

    def _revoke(self, ring: KeyRing, city: str) -> bool:
        """Apply the revocations of `ring` signed by a trusted key other than the one revoked;
        True when a key was dropped."""
        dropped = False
        for entry in ring.revoked:
            if entry.key_id in self._revoked or entry.revoked_by == entry.key_id:
                continue
            signer = self._keys.get(entry.revoked_by)
            if signer is None or not _verified(signer, entry.sig, entry.signing_bytes(city)):
                continue
            self._revoked.add(entry.key_id)
            gone = {entry.key_id}
            while gone:
                kid = gone.pop()
                if self._keys.pop(kid, None) is not None:
                    dropped = True
                self._vouched_by.pop(kid, None)
                gone |= {k for k, by in self._vouched_by.items() if by == kid}
        return dropped


def _verified(key: Any, sig: str, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(sig, validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


MAX_KEYRING_BYTES: Final = 64 * 1024


class KeyEndorsement(_Message):
    """One gateway signing key, vouched for by the key that signed before it (None for the
    first): a speaker that trusts any earlier key learns a rotated one on its own."""

    key_id: KeyId = Field(description="The key's id, as commands name it in `key_id`.")
    public_key: str = Field(
        max_length=64,
        description="The raw 32-byte Ed25519 public key, standard base64 with padding.",
    )
    endorsed_by: str | None = Field(
        default=None,
        max_length=64,
        description="The id of the key that signed this entry; absent for the first key.",
    )
    sig: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "Ed25519 signature by `endorsed_by` (standard base64) of the UTF-8 bytes "
            "`maeul-key/v1` LF city LF `key_id` LF `public_key` (see *Key rotation*)."
        ),
    )

    def signing_bytes(self, city: str) -> bytes:
        return f"maeul-key/v1\n{city}\n{self.key_id}\n{self.public_key}".encode()

    def raw_public_key(self) -> bytes:
        try:
            raw = base64.b64decode(self.public_key, validate=True)
        except binascii.Error as exc:
            raise WireError("a public key is not valid base64") from exc
        if len(raw) != 32:
            raise WireError("a public key is not a raw 32-byte Ed25519 key")
        return raw


class KeyRevocation(_Message):
    """A gateway signing key revoked: signed by a key still trusted (the gateway's active one),
    never by the revoked key itself. A speaker that has learned it never trusts the key again."""

    key_id: KeyId = Field(description="The revoked key's id.")
    revoked_by: str = Field(
        max_length=64,
        description="The id of the key that signed this revocation (never `key_id` itself).",
    )
    sig: str = Field(
        max_length=256,
        description=(
            "Ed25519 signature by `revoked_by` (standard base64) of the UTF-8 bytes "
            "`maeul-revoke/v1` LF city LF `key_id` (see *Key revocation*)."
        ),
    )

    def signing_bytes(self, city: str) -> bytes:
        return f"maeul-revoke/v1\n{city}\n{self.key_id}".encode()


class KeyRing(_Message):
    """Every signing key of a city's gateway still trusted, oldest first, each endorsed by the
    trusted one before it, and the keys it has revoked."""

    v: Literal[1] = Field(
        default=PROTOCOL_VERSION, description="Version of the key ring document; always 1."
    )
    city: Segment = Field(description="The city whose gateway signs with these keys.")
    keys: tuple[KeyEndorsement, ...] = Field(
        max_length=256,
        description=(
            "Every signing key of the city still trusted, oldest first; each after the first is "
            "endorsed by the trusted key before it."
        ),
    )
    revoked: tuple[KeyRevocation, ...] = Field(
        default=(),
        max_length=256,
        description=(
            "The keys the gateway has revoked, each revocation signed by its active key; a "
            "speaker never trusts them again (see *Key revocation*)."
        ),
    )


def endorse_key(
    city: str, key_id: str, public_key: bytes, *, by: tuple[str, bytes] | None
) -> KeyEndorsement:
    """`public_key` under `key_id`, signed by `by` (key id, raw private key) if given."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    entry = KeyEndorsement(key_id=key_id, public_key=base64.b64encode(public_key).decode("ascii"))
    if by is None:
        return entry
    signer = Ed25519PrivateKey.from_private_bytes(by[1])
    sig = base64.b64encode(signer.sign(entry.signing_bytes(city))).decode("ascii")
    return entry.model_copy(update={"endorsed_by": by[0], "sig": sig})


def revoke_key(city: str, key_id: str, *, by: tuple[str, bytes]) -> KeyRevocation:
    """The revocation of `key_id`, signed by `by` (key id, raw private key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    unsigned = KeyRevocation(key_id=key_id, revoked_by=by[0], sig="")
    signer = Ed25519PrivateKey.from_private_bytes(by[1])
    sig = base64.b64encode(signer.sign(unsigned.signing_bytes(city))).decode("ascii")
    return unsigned.model_copy(update={"sig": sig})


def decode_keyring(payload: bytes) -> KeyRing:
    return _load(KeyRing, payload, MAX_KEYRING_BYTES)


def sign_command(command: Command, *, key_id: str, private_key: bytes) -> Command:
    """Return the command with ``key_id`` and an Ed25519 ``sig`` over its signing bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(private_key)
    unsigned = command.model_copy(update={"key_id": key_id, "sig": None})
    signature = key.sign(unsigned.signing_bytes())
    return unsigned.model_copy(update={"sig": base64.b64encode(signature).decode("ascii")})
