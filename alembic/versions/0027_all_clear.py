"""A broadcast may be the all clear ("해제") of a live alert: ``broadcasts.all_clear_of``.

Revision ID: 0027
Revises: 0022
Create Date: 2026-12-06 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0027"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("all_clear_of", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_broadcasts_all_clear_of", ["all_clear_of"], unique=False)
        batch_op.create_foreign_key(
            "fk_broadcasts_all_clear_of_broadcasts",
            "broadcasts",
            ["all_clear_of"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_broadcasts_all_clear_of_broadcasts", type_="foreignkey")
        batch_op.drop_index("ix_broadcasts_all_clear_of")
        batch_op.drop_column("all_clear_of")
