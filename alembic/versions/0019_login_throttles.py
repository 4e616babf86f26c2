"""Failed logins are counted per source and username (login_throttles), not per account: a
stranger can delay their own guesses but can no longer lock an officer out. The account's own
counter and lock (users.failed_logins, users.locked_until) are no longer used; they stay, since
dropping a column rebuilds the users table on SQLite, and that would cascade to the rows that
refer to it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("city_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["city_id"],
            ["cities.id"],
            name=op.f("fk_login_throttles_city_id_cities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("city_id", "source", "username", name=op.f("pk_login_throttles")),
    )
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.create_index("ix_login_throttles_last_failure", ["last_failure_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.drop_index("ix_login_throttles_last_failure")
    op.drop_table("login_throttles")
