"""Districts and villages carry their place on the map: coordinates, the national 10-digit
법정동 and 행정동 codes, and a boundary (GeoJSON), each optional, for targeting by area.

Revision ID: 0020
Revises: 0025
Create Date: 2026-12-06 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0020"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("districts", "villages")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("lat", sa.Float(), nullable=True))
            batch_op.add_column(sa.Column("lon", sa.Float(), nullable=True))
            batch_op.add_column(sa.Column("legal_code", sa.String(length=10), nullable=True))
            batch_op.add_column(sa.Column("admin_code", sa.String(length=10), nullable=True))
            batch_op.add_column(sa.Column("boundary", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in ("boundary", "admin_code", "legal_code", "lon", "lat"):
                batch_op.drop_column(column)
