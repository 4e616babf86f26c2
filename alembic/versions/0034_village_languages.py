"""Languages per village and per template: villages.languages, templates.texts, and which
audio (language set) each delivery and publication carries.

Revision ID: 0034
Revises: 0037
Create Date: 2026-12-06 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0034"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("villages") as batch:
        batch.add_column(sa.Column("languages", sa.JSON(), server_default="[]", nullable=False))
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("texts", sa.JSON(), server_default="{}", nullable=False))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("audio_set", sa.String(64), nullable=True))
    with op.batch_alter_table("publications") as batch:
        batch.add_column(sa.Column("audio_set", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.drop_column("audio_set")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("audio_set")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("texts")
    with op.batch_alter_table("villages") as batch:
        batch.drop_column("languages")
