"""Command signing keys: Ed25519, kept in the database so every replica signs with the same key."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import Boolean, LargeBinary, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from wire import contract


class SigningKey(Base):
    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Exactly one key signs; retired keys stay listed so speakers still verify what they signed.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


@dataclass(frozen=True)
class Signer:
    key_id: str
    private_key: bytes

    def sign(self, command: contract.Command) -> contract.Command:
        return contract.sign_command(command, key_id=self.key_id, private_key=self.private_key)


def _new_key(now: datetime) -> SigningKey:
    key = Ed25519PrivateKey.generate()
    return SigningKey(
        key_id=secrets.token_hex(8),
        private_key=key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
        public_key=key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        active=True,
        created_at=now,
    )


async def active_signer(session: AsyncSession, now: datetime) -> Signer:
    """The signing key, created on first use. Replicas racing here settle on the oldest one."""
    key = await _oldest_active(session)
    if key is None:
        session.add(_new_key(now))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
        key = await _oldest_active(session)
        assert key is not None
    return Signer(key.key_id, key.private_key)


async def _oldest_active(session: AsyncSession) -> SigningKey | None:
    key: SigningKey | None = await session.scalar(
        select(SigningKey)
        .where(SigningKey.active.is_(True))
        .order_by(SigningKey.created_at, SigningKey.key_id)
        .limit(1)
    )
    return key


async def rotate(session: AsyncSession, now: datetime) -> SigningKey:
    """Start signing with a new key; the old ones stay published for verification."""
    for key in await session.scalars(select(SigningKey).where(SigningKey.active.is_(True))):
        key.active = False
        key.retired_at = now
    fresh = _new_key(now)
    session.add(fresh)
    await session.flush()
    return fresh


async def keyring(session: AsyncSession, city_code: str) -> contract.KeyRing:
    """Every key, oldest first, each endorsed by the one before it: a speaker that trusts any
    of them learns the rest, so a rotation reaches speakers without touching them."""
    rows = list(await session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
    entries = []
    for before, key in zip([None, *rows], rows, strict=False):
        voucher = (before.key_id, before.private_key) if before is not None else None
        entries.append(contract.endorse_key(city_code, key.key_id, key.public_key, by=voucher))
    return contract.KeyRing(city=city_code, keys=tuple(entries))


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
        }
        for key in rows
    ]
