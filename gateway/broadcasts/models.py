"""Tables for broadcasts, their audio (content-addressed) and the publishing outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


def cancel_command_id(play_command_id: str) -> str:
    """The id of a broadcast's cancel command: derived, so every replica sends the same one."""
    return hashlib.sha256(f"cancel:{play_command_id}".encode()).hexdigest()[:32]


def superseded_command_ids(target: Mapping[str, object]) -> tuple[str, ...] | None:
    """The command ids a broadcast's command supersedes (a resend's ``target.supersedes``), or
    None when it supersedes nothing."""
    ids = target.get("supersedes")
    if not isinstance(ids, list) or not ids:
        return None
    return tuple(str(i) for i in ids)


class AudioAsset(Base):
    """Encoded audio by sha256. Kept in the database so that every replica can publish it."""

    __tablename__ = "audio_assets"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    codec: Mapped[str] = mapped_column(String(16))
    mime_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Broadcast(Base):
    __tablename__ = "broadcasts"
    __table_args__ = (
        UniqueConstraint("city_id", "idempotency_scope", "idempotency_key"),
        Index("ix_broadcasts_city_created", "city_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    # The id every speaker acts on at most once, whichever topic brought it.
    command_id: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16), default="live")
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    # The text in other languages, by BCP 47 primary tag ({"vi": "...", "zh": "..."}).
    texts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    # {"all": bool, "district_ids": [...], "village_ids": [...]} as requested.
    target: Mapped[dict[str, object]] = mapped_column(JSON)
    duration_ms: Mapped[int] = mapped_column(Integer)
    # codec -> sha256 of its first audio; typed text read in other language sets for some
    # villages adds "codec:set" entries (``gateway.broadcasts.language_audio``).
    audio_sha256: Mapped[dict[str, str]] = mapped_column(JSON)
    source_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set when no delivery can change any more; lets sweeps skip finished broadcasts.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # Whose key it is: a key is one person's (``sending.idempotency_scope``), never the city's.
    idempotency_scope: Mapped[str] = mapped_column(String(64), default="", server_default="")
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # Kept as evidence: the recording outlives its retention period until the hold is lifted.
    evidence_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    # When the recording was deleted at the end of its retention period (the record stays).
    audio_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # An all clear ("해제"): the live alert this broadcast ends.
    all_clear_of: Mapped[str | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), default=None, index=True
    )


class Publication(Base):
    """One MQTT publish owed: written with the broadcast, published after the commit.

    A publisher claims due rows with a lease; a replica that dies mid-publish loses its lease and
    another finishes. Re-publishing is harmless because speakers act on a command id once.
    """

    __tablename__ = "publications"
    __table_args__ = (Index("ix_publications_due", "state", "available_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="play")
    scope_kind: Mapped[str] = mapped_column(String(16))
    # Wire codes for the topic and the signed scope, and the matching row ids for the deliveries.
    scope_ids: Mapped[list[str]] = mapped_column(JSON)
    scope_keys: Mapped[list[int]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # The audio its command carries: a language set's key; None: the broadcast's first audio.
    audio_set: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
