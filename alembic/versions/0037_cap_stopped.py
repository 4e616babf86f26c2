"""cap_alerts.cancelled_schedule_ids and withdrawn_approval_ids: what a CAP Update or Cancel
stopped besides broadcasts (held sends cancelled, approval requests withdrawn), so the same
alert posted again answers as it first did.

Revision ID: 0037
Revises: 0035
Create Date: 2026-12-06 09:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0037"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cap_alerts") as batch:
        batch.add_column(
            sa.Column("cancelled_schedule_ids", sa.JSON(), server_default="[]", nullable=False)
        )
        batch.add_column(
            sa.Column("withdrawn_approval_ids", sa.JSON(), server_default="[]", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("cap_alerts") as batch:
        batch.drop_column("withdrawn_approval_ids")
        batch.drop_column("cancelled_schedule_ids")
