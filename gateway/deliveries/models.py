"""The deliveries table: one row per broadcast and speaker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "speaker_id"),
        Index("ix_deliveries_broadcast_state", "broadcast_id", "state"),
        Index("ix_deliveries_due", "state", "deadline_at"),
        Index("ix_deliveries_speaker_state", "speaker_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Optimistic locking: two writers (ack intake on two replicas, a cancel) never overwrite
    # each other's state; the loser's batch fails and is retried on fresh rows.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    speaker_id: Mapped[int] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="CASCADE"))
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    # Which of the broadcast's audios its speaker was sent: the key of its village's language
    # set (``gateway.broadcasts.language_audio``); None: the broadcast's first audio.
    audio_set: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    # Asks left unanswered (an answer starts the count again): what retries and the board's
    # "not answering" rule go by. `sends` counts every time the command went to the speaker.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    playing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    played_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # An indoor receiver's 들었어요 (a verified ``heard`` ack): when the household confirmed it.
    heard_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Proof of play reported by the speaker.
    played_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    played_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    level_dbfs: Mapped[float | None] = mapped_column(Float, default=None)
    # The speaker's signed receipt for that proof (see `wire.contract.Receipt`): its signature,
    # the time it signed, and whether it verified against the speaker's enrolled key (None: the
    # speaker has no key enrolled, so the receipt could not be checked).
    receipt_sig: Mapped[str | None] = mapped_column(String(128), default=None)
    receipt_at_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    receipt_verified: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # A live broadcast's reception on this speaker, from its final ack: the median latency from
    # the gateway's receipt of a frame to its playout, and the frames that did not play.
    live_latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    live_frames_lost: Mapped[int | None] = mapped_column(Integer, default=None)
    # Mouth to horn: from the talker's microphone to this speaker's output (p50, p95), when the
    # talking client stamped its audio.
    live_mouth_p50_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    live_mouth_p95_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    # The resend (a broadcast id) that was sent to this speaker because this delivery missed.
    resent_in: Mapped[str | None] = mapped_column(String(32), default=None)
