"""Security events carry a count and the time of the last report merged into them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("count", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE security_events SET last_at = at")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.alter_column("last_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(
            "ix_security_events_speaker_last", ["city_id", "speaker_code", "last_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index("ix_security_events_speaker_last")
        batch_op.drop_column("last_at")
        batch_op.drop_column("count")
