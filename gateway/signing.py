"""Command signing keys: Ed25519, kept in the database so every replica signs with the same key,
each private key encrypted there with the key encryption key, which lives outside it.

A private key is stored sealed (AES-256-GCM under a key derived from the setting
``key_encryption_key``, the key id as associated data), so a copy of the database alone cannot
sign. Keys written in the clear by an older gateway are sealed at start (`prepare_keys`).

A key is active (it signs), retired (replaced by a rotation; speakers still verify what it
signed) or revoked (speakers drop it and refuse what it signed). Revoking a key always starts
a new active key, so the gateway's next command makes every speaker fetch the key ring, where it
learns the revocation.

Exceptions::

    keyfiles.SecretError
    └── SigningKeyError   a stored private key cannot be decrypted (wrong or missing key file)
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import Boolean, LargeBinary, String, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway import keyfiles
from gateway.db import Base, UTCDateTime
from gateway.errors import Conflict, NotFound
from wire import contract

if TYPE_CHECKING:
    from gateway.settings import Settings

# The setting (and GATEWAY_ variable) holding the key encryption key.
KEK_NAME: Final = "key_encryption_key"
KEK_VARIABLE: Final = "GATEWAY_KEY_ENCRYPTION_KEY"
# A sealed private key: this marker, a 12-byte nonce, then the ciphertext and its 16-byte tag.
_SEALED: Final = b"maeul-sealed/v1:"
_NONCE_BYTES: Final = 12
_RAW_KEY_BYTES: Final = 32


class SigningKeyError(keyfiles.SecretError):
    """A stored signing key cannot be decrypted with the configured key encryption key."""


class SigningKey(Base):
    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Sealed with the key encryption key (see `KeySeal`); never the raw key once started.
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Exactly one key signs; retired keys stay listed so speakers still verify what they signed.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A revoked key is never trusted again: not for commands, not to vouch for another key.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revocation_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class KeySeal:
    """Encrypts and decrypts private signing keys with the key encryption key."""

    def __init__(self, secret: bytes) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"maeul signing keys").derive(
            secret
        )
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySeal:
        """From ``GATEWAY_KEY_ENCRYPTION_KEY`` (or ``_FILE``), see `gateway.keyfiles`."""
        return cls(keyfiles.load_secret(settings, KEK_NAME))

    def seal(self, key_id: str, raw: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, raw, key_id.encode())

    def open(self, key_id: str, stored: bytes) -> bytes:
        if not is_sealed(stored):
            raise SigningKeyError(f"the signing key {key_id} is stored unencrypted")
        body = stored[len(_SEALED) :]
        nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, key_id.encode())
        except InvalidTag:
            raise SigningKeyError(
                f"cannot decrypt the signing key {key_id}: {KEK_VARIABLE} (or {KEK_VARIABLE}_FILE)"
                " is not the key this database's signing keys were encrypted with"
            ) from None


def is_sealed(stored: bytes) -> bool:
    return stored.startswith(_SEALED)


@dataclass(frozen=True)
class Signer:
    key_id: str
    private_key: bytes

    def sign(self, command: contract.Command) -> contract.Command:
        return contract.sign_command(command, key_id=self.key_id, private_key=self.private_key)


def _new_key(now: datetime, seal: KeySeal) -> SigningKey:
    key = Ed25519PrivateKey.generate()
    key_id = secrets.token_hex(8)
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return SigningKey(
        key_id=key_id,
        private_key=seal.seal(key_id, raw),
        public_key=key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        active=True,
        created_at=now,
    )


async def prepare_keys(session: AsyncSession, seal: KeySeal, now: datetime) -> Signer:
    """At start: seal any key an older gateway stored in the clear, check that every key still
    trusted decrypts (else `SigningKeyError`, naming the setting), and make the first key if
    there is none. Commits."""
    for key in await session.scalars(select(SigningKey)):
        if not is_sealed(key.private_key) and len(key.private_key) == _RAW_KEY_BYTES:
            key.private_key = seal.seal(key.key_id, key.private_key)
        elif key.revoked_at is None:
            seal.open(key.key_id, key.private_key)
    await session.commit()
    return await active_signer(session, now, seal)


async def active_signer(session: AsyncSession, now: datetime, seal: KeySeal) -> Signer:
    """The signing key, created on first use. Replicas racing here settle on the oldest one."""
    key = await _oldest_active(session)
    if key is None:
        session.add(_new_key(now, seal))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
        key = await _oldest_active(session)
        assert key is not None
    return Signer(key.key_id, seal.open(key.key_id, key.private_key))


async def _oldest_active(session: AsyncSession) -> SigningKey | None:
    key: SigningKey | None = await session.scalar(
        select(SigningKey)
        .where(SigningKey.active.is_(True))
        .order_by(SigningKey.created_at, SigningKey.key_id)
        .limit(1)
    )
    return key


async def rotate(session: AsyncSession, now: datetime, seal: KeySeal) -> SigningKey:
    """Start signing with a new key; the old ones stay published for verification."""
    for key in await session.scalars(select(SigningKey).where(SigningKey.active.is_(True))):
        key.active = False
        key.retired_at = now
    # Keys are ordered by creation (the ring endorses each by the one before it): a new key is
    # always later than every earlier one, even when two rotations read the same clock.
    newest = await session.scalar(select(func.max(SigningKey.created_at)))
    created = now if newest is None or now > newest else newest + timedelta(microseconds=1)
    fresh = _new_key(created, seal)
    session.add(fresh)
    await session.flush()
    return fresh


def _strands_speakers(key_id: str) -> Conflict:
    return Conflict(
        "revocation_strands_speakers",
        ko="이 서명 키보다 먼저 만든 유효한 키가 없습니다. 이 키를 폐기하면 이 키만 믿는 스피커"
        "(이 키가 보증한 새 키만 아는 스피커 포함)는 다시 설정할 때까지 모든 방송 명령을 "
        "거부합니다. 그래도 폐기하려면 strand_speakers를 true로 보내고, 스피커마다 새 공개 키를 "
        "다시 설정하세요.",
        en=f"No older key that is still trusted endorses the signing key {key_id}: speakers "
        "that trust only this key (or keys endorsed only through it) will refuse every "
        "command until they are provisioned again with a current public key. To revoke it "
        'anyway, send "strand_speakers": true, then provision every speaker again.',
    )


async def revoke(
    session: AsyncSession,
    key_id: str,
    reason: str,
    now: datetime,
    seal: KeySeal,
    *,
    strand_speakers: bool = False,
) -> SigningKey:
    """Revoke `key_id` and sign from now on with a new key (returned): speakers drop the
    revoked key at their next fetch of the key ring, which the new key's first command starts.

    The oldest key still trusted is the root of the ring's chain: every speaker configured
    with it or an earlier key reaches the others only through it. Revoking it is refused
    (`revocation_strands_speakers`) unless `strand_speakers`."""
    key = await session.get(SigningKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(
            "signing_key_not_found",
            ko="서명 키를 찾을 수 없습니다.",
            en=f"no signing key {key_id}",
        )
    if key.revoked_at is not None:
        raise Conflict(
            "signing_key_revoked",
            ko="이미 폐기된 서명 키입니다.",
            en=f"the signing key {key_id} is already revoked",
        )
    if not strand_speakers:
        older = await session.scalar(
            select(SigningKey.key_id)
            .where(
                SigningKey.revoked_at.is_(None),
                or_(
                    SigningKey.created_at < key.created_at,
                    and_(SigningKey.created_at == key.created_at, SigningKey.key_id < key.key_id),
                ),
            )
            .limit(1)
        )
        if older is None:
            raise _strands_speakers(key_id)
    fresh = await rotate(session, now, seal)
    key.revoked_at = now
    key.revocation_reason = reason
    key.retired_at = key.retired_at or now
    await session.flush()
    return fresh


async def keyring(session: AsyncSession, city_code: str, seal: KeySeal) -> contract.KeyRing:
    """Every key still trusted, oldest first, each endorsed by the trusted key before it: a
    speaker that trusts any of them learns the rest, so a rotation reaches speakers without
    touching them. Revoked keys are listed apart, each revocation signed by the active key; a
    revoked key vouches for nothing."""
    rows = list(
        await session.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.key_id))
    )
    trusted = [key for key in rows if key.revoked_at is None]
    entries = []
    for before, key in zip([None, *trusted], trusted, strict=False):
        voucher = (
            (before.key_id, seal.open(before.key_id, before.private_key))
            if before is not None
            else None
        )
        entries.append(contract.endorse_key(city_code, key.key_id, key.public_key, by=voucher))
    revoked: list[contract.KeyRevocation] = []
    signer = next((key for key in trusted if key.active), None)
    if signer is not None:
        by = (signer.key_id, seal.open(signer.key_id, signer.private_key))
        revoked = [
            contract.revoke_key(city_code, key.key_id, by=by)
            for key in rows
            if key.revoked_at is not None
        ]
    return contract.KeyRing(city=city_code, keys=tuple(entries), revoked=tuple(revoked))


async def public_keys(session: AsyncSession) -> list[dict[str, object]]:
    rows = await session.scalars(select(SigningKey).order_by(SigningKey.created_at))
    return [
        {
            "key_id": key.key_id,
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(key.public_key).decode("ascii"),
            "active": key.active,
            "created_at": key.created_at,
            "retired_at": key.retired_at,
            "revoked_at": key.revoked_at,
            "revocation_reason": key.revocation_reason,
        }
        for key in rows
    ]
