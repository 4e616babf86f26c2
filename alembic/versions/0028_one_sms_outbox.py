"""One SMS outbox: the residents' verification codes go through ``sms_messages`` like every
other SMS, so ``sms_outbox`` goes; ``sms_messages.forget_text`` marks a text to erase once the
message is sent or final. Recipients are now sealed with ``GATEWAY_PHONE_KEY``: a message still
queued from before (sealed with the former SMS key) fails as ``number_unreadable``.

Revision ID: 0028
Revises: 0024
Create Date: 2026-12-06 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0028"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("forget_text", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_outbox_state"))
        batch_op.drop_index(batch_op.f("ix_sms_outbox_city_id"))
    op.drop_table("sms_outbox")


def downgrade() -> None:
    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("phone_key_id", sa.String(length=16), nullable=False),
        sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_sms_outbox_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("city_id", "reference", name=op.f("uq_sms_outbox_city_id")),
    )
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_outbox_city_id"), ["city_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sms_outbox_state"), ["state"], unique=False)
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_column("forget_text")
