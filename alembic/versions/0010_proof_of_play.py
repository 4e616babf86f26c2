"""Proof of play and live reception: speakers' receipt keys, receipts and live figures kept.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_public_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("receipt_key_enrolled_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_sig", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("receipt_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("receipt_verified", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("live_latency_ms", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("live_frames_lost", sa.Integer(), nullable=True))
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chime_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_column("chime_sha256")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in (
            "live_frames_lost",
            "live_latency_ms",
            "receipt_verified",
            "receipt_at_ms",
            "receipt_sig",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.drop_column("receipt_key_enrolled_at")
        batch_op.drop_column("receipt_public_key")
