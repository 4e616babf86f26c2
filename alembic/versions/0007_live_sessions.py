"""Live sessions: which broadcasts are live streams, their frame key and how they ended.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 15:50:33.578735
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("broadcast_id", sa.String(length=32), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("input_format", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=True),
        sa.Column("jitter_ms", sa.Integer(), nullable=False),
        sa.Column("stall_ms", sa.Integer(), nullable=False),
        sa.Column("idle_ms", sa.Integer(), nullable=False),
        sa.Column("replica_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alive_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("frames_dropped", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_live_sessions_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_live_sessions_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("broadcast_id", name=op.f("pk_live_sessions")),
    )
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_live_sessions_open", ["city_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_live_sessions_open")

    op.drop_table("live_sessions")
