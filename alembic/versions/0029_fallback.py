"""Fallback to residents' phones: each city's rule per category, one job per broadcast and
village, and the broadcast's deliveries on other channels than its speakers.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 06:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fallback_rules",
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("after_s", sa.Integer(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("all_at_once", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("drills", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_fallback_rules_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("city_id", "category", name=op.f("pk_fallback_rules")),
    )
    op.create_table(
        "fallback_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.String(length=32), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_fallback_jobs_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_fallback_jobs_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["villages.id"],
            name=op.f("fk_fallback_jobs_village_id_villages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fallback_jobs")),
        sa.UniqueConstraint(
            "broadcast_id", "village_id", name=op.f("uq_fallback_jobs_broadcast_id")
        ),
    )
    with op.batch_alter_table("fallback_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_fallback_jobs_due", ["state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fallback_jobs_city_id"), ["city_id"], unique=False)
    op.create_table(
        "broadcast_channel_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("broadcast_id", sa.String(length=32), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_channel_deliveries_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["villages.id"],
            name=op.f("fk_broadcast_channel_deliveries_village_id_villages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_channel_deliveries")),
        sa.UniqueConstraint(
            "broadcast_id",
            "village_id",
            "resident_id",
            "channel",
            name=op.f("uq_broadcast_channel_deliveries_broadcast_id"),
        ),
    )
    with op.batch_alter_table("broadcast_channel_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_broadcast_channel_deliveries_broadcast",
            ["broadcast_id", "village_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_broadcast_channel_deliveries_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcast_channel_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_channel_deliveries_message_id"))
        batch_op.drop_index("ix_broadcast_channel_deliveries_broadcast")
    op.drop_table("broadcast_channel_deliveries")
    with op.batch_alter_table("fallback_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fallback_jobs_city_id"))
        batch_op.drop_index("ix_fallback_jobs_due")
    op.drop_table("fallback_jobs")
    op.drop_table("fallback_rules")
