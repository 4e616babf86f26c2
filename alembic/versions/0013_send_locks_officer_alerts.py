"""Send locks (rate limits counted atomically) and officer alerts (a head's disaster alert).

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-05 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_locks",
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("scope_key", sa.String(length=40), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_send_locks_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("city_id", "scope_key", name=op.f("pk_send_locks")),
    )
    op.create_table(
        "officer_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.String(length=32), nullable=False),
        sa.Column("sent_by", sa.String(length=120), nullable=False),
        sa.Column("village_ids", sa.JSON(), nullable=False),
        sa.Column("village_names", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_officer_alerts_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_officer_alerts_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["users.id"],
            name=op.f("fk_officer_alerts_recipient_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer_alerts")),
    )
    with op.batch_alter_table("officer_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_officer_alerts_broadcast_id"), ["broadcast_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_officer_alerts_city_id"), ["city_id"], unique=False)
        batch_op.create_index(
            "ix_officer_alerts_inbox", ["recipient_id", "acknowledged_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("officer_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_officer_alerts_inbox")
        batch_op.drop_index(batch_op.f("ix_officer_alerts_city_id"))
        batch_op.drop_index(batch_op.f("ix_officer_alerts_broadcast_id"))

    op.drop_table("officer_alerts")
    op.drop_table("send_locks")
