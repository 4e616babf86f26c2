"""speakers.clock_offset_ms: how far each speaker's clock is from the gateway's, as its
heartbeats say, so the device page can flag a clock that would put its horn out of step.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("clock_offset_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("clock_offset_ms")
