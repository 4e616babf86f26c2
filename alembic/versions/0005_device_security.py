"""device security: speaker broker credentials, broker accounts, security events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:57:37.849439
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('broker_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('city_id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_broker_accounts_city_id_cities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broker_accounts')),
    sa.UniqueConstraint('city_id', 'username', name=op.f('uq_broker_accounts_city_id'))
    )
    with op.batch_alter_table('broker_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broker_accounts_city_id'), ['city_id'], unique=False)

    op.create_table('security_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('city_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('speaker_code', sa.String(length=64), nullable=True),
    sa.Column('command_id', sa.String(length=32), nullable=True),
    sa.Column('broadcast_id', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_security_events_city_id_cities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_security_events')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_security_events_fingerprint'))
    )
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.create_index('ix_security_events_city_id_at', ['city_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_security_events_speaker_code'), ['speaker_code'], unique=False)

    op.create_table('speaker_credentials',
    sa.Column('speaker_id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['speaker_id'], ['speakers.id'], name=op.f('fk_speaker_credentials_speaker_id_speakers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('speaker_id', name=op.f('pk_speaker_credentials'))
    )


def downgrade() -> None:
    op.drop_table('speaker_credentials')
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_security_events_speaker_code'))
        batch_op.drop_index('ix_security_events_city_id_at')

    op.drop_table('security_events')
    with op.batch_alter_table('broker_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broker_accounts_city_id'))

    op.drop_table('broker_accounts')
