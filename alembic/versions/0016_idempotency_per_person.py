"""Idempotency keys are one person's: unique per (city, scope, key), not per city.

The same key from two people is two requests; the gateway's own keys (a schedule's occurrence,
an approved request) have the scope "gateway". Keys written before have the empty scope, except
the gateway's own, recognisable by their prefix.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("broadcasts", "schedules", "approval_requests")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("idempotency_scope", sa.String(length=64), server_default="", nullable=False)
            )
            batch_op.drop_constraint(f"uq_{table}_city_id", type_="unique")
            batch_op.create_unique_constraint(
                f"uq_{table}_city_id", ["city_id", "idempotency_scope", "idempotency_key"]
            )
    op.execute(
        "UPDATE broadcasts SET idempotency_scope = 'gateway' "
        "WHERE idempotency_key LIKE 'schedule:%' OR idempotency_key LIKE 'approval:%'"
    )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_city_id", type_="unique")
            batch_op.create_unique_constraint(f"uq_{table}_city_id", ["city_id", "idempotency_key"])
            batch_op.drop_column("idempotency_scope")
