"""deliveries.live_mouth_p50_ms and live_mouth_p95_ms: a live broadcast's latency from the
talker's microphone to each speaker's output, as the speaker's final ack reports it.

Revision ID: 0035
Revises: 0032
Create Date: 2026-12-06 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0035"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("live_mouth_p50_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("live_mouth_p95_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("live_mouth_p95_ms")
        batch.drop_column("live_mouth_p50_ms")
