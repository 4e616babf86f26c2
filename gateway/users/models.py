"""People who use the gateway, their refresh tokens, API keys and account history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("city_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    # Scope: which districts and villages the role applies to (ids); empty for city-wide roles.
    district_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    village_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    # Unused since failed logins are counted per source (LoginThrottle): an account is never
    # locked. Kept because dropping them rebuilds the table on SQLite, which would cascade.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    suspended_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    # Raised on suspension, password change and a refresh token's reuse: access tokens carrying
    # an older one are refused at their next request.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class LoginThrottle(Base):
    """Failed logins from one source (a client address; an IPv6 client's /64) at one username,
    or at every username (``username`` empty), and until when that source must wait. Shared by
    the replicas through the database; forgotten a day after the last failure."""

    __tablename__ = "login_throttles"
    __table_args__ = (Index("ix_login_throttles_last_failure", "last_failure_at"),)

    city_id: Mapped[int] = mapped_column(
        ForeignKey("cities.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class RefreshToken(Base):
    """One refresh token (stored as its hash). Used once: refreshing replaces it."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApiKey(Base):
    """A key for an integration (e.g. the city's disaster system), acting as its user."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AccountEvent(Base):
    """Who created an account, set its password, changed its rights or re-enabled it, and when.

    The two-person rule reads it: an approver must not owe their account, password or rights to
    the person who asked. ``by_user_id`` is None for the bootstrap token, the demo seed, and the
    rows written for accounts older than this record (``by_actor`` says which).
    """

    __tablename__ = "account_events"
    __table_args__ = (Index("ix_account_events_user", "user_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by_user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    by_actor: Mapped[str] = mapped_column(String(120))
