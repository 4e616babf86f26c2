"""deliveries.sends: how many times the command went to the speaker, never reset. The report's
"attempts" column read deliveries.attempts, which counts asks left unanswered and returns to 0
when the speaker answers, so every speaker that played showed 0. Rows from before hold no such
count: a delivery that was sent gets at least one send.

Revision ID: 0025
Revises: 0023
Create Date: 2026-12-06 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0025"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sends", sa.Integer(), nullable=False, server_default="0"))
    deliveries = sa.table(
        "deliveries",
        sa.column("sends", sa.Integer()),
        sa.column("attempts", sa.Integer()),
        sa.column("sent_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        deliveries.update()
        .where(deliveries.c.sent_at.is_not(None))
        .values(
            sends=sa.case((deliveries.c.attempts > 1, deliveries.c.attempts), else_=sa.literal(1))
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sends")
