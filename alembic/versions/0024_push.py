"""Web push: the browsers subscribed to a village's notices (push_subscriptions) and the outbox
of push messages with their states (push_messages).

Revision ID: 0024
Revises: 0026
Create Date: 2026-12-06 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0024"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("endpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("p256dh", sa.String(length=100), nullable=False),
        sa.Column("auth", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_push_subscriptions_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["villages.id"],
            name=op.f("fk_push_subscriptions_village_id_villages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint_sha256", name=op.f("uq_push_subscriptions_endpoint_sha256")),
    )
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_subscriptions_city_id"), ["city_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_subscriptions_village_id"), ["village_id"], unique=False
        )
    op.create_table(
        "push_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=True),
        sa.Column("reference_kind", sa.String(length=32), nullable=False),
        sa.Column("reference_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("urgency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_push_messages_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["villages.id"],
            name=op.f("fk_push_messages_village_id_villages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["push_subscriptions.id"],
            name=op.f("fk_push_messages_subscription_id_push_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_messages")),
        sa.UniqueConstraint(
            "subscription_id",
            "reference_kind",
            "reference_id",
            name=op.f("uq_push_messages_subscription_id"),
        ),
    )
    with op.batch_alter_table("push_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_messages_city_id"), ["city_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_push_messages_village_id"), ["village_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_push_messages_subscription_id"), ["subscription_id"], unique=False
        )
        batch_op.create_index("ix_push_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_push_messages_reference", ["reference_kind", "reference_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_push_messages_reference")
        batch_op.drop_index("ix_push_messages_due")
        batch_op.drop_index(batch_op.f("ix_push_messages_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_push_messages_village_id"))
        batch_op.drop_index(batch_op.f("ix_push_messages_city_id"))
    op.drop_table("push_messages")
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_village_id"))
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_city_id"))
    op.drop_table("push_subscriptions")
