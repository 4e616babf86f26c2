"""Account provenance (account_events): who created an account, set its password, changed its
rights or re-enabled it, so the two-person rule can refuse an approver the requester made.

Accounts older than this revision get a ``created`` row by ``unknown`` (nobody can say who made
them; counting them as made by the requester would leave no one able to approve after an
upgrade), plus what the audit log does say: every password set, account edit and reinstatement
done through the API, by whom. An edit's audit row does not tell whether it changed rights, so
each is taken to have done so (the safe side: its author cannot approve that person's alerts).

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-05 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Audit action of an account change made through the API -> the event it stands for.
_FROM_AUDIT = {
    "set_password": "password_set",
    "update_user": "role_changed",
    "reinstate_user": "reinstated",
}


def upgrade() -> None:
    events = op.create_table(
        "account_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=True),
        sa.Column("by_actor", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_account_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.create_index("ix_account_events_user", ["user_id", "at"], unique=False)
    _backfill(events)


def _backfill(events: sa.Table) -> None:
    bind = op.get_bind()
    op.execute(
        "INSERT INTO account_events (user_id, kind, at, by_user_id, by_actor) "
        "SELECT id, 'created', created_at, NULL, 'unknown' FROM users"
    )
    users = set(bind.scalars(sa.text("SELECT id FROM users")))
    audit = bind.execute(
        sa.text(
            "SELECT at, actor, action, target FROM audit_events "
            "WHERE outcome = 'ok' AND action IN ('set_password', 'update_user', 'reinstate_user') "
            "ORDER BY seq"
        ).columns(at=sa.DateTime(timezone=True))
    )
    rows: list[dict[str, object]] = []
    for at, actor, action, target in audit:
        user_id = _user_of(target)
        if user_id not in users:
            continue
        by_user_id = _user_of_actor(actor)
        rows.append(
            {
                "user_id": user_id,
                "kind": _FROM_AUDIT[action],
                "at": at,
                "by_user_id": by_user_id,
                "by_actor": actor,
            }
        )
    if rows:
        op.bulk_insert(events, rows)


def _user_of(target: str | None) -> int | None:
    """``user_id=7`` (the audit row's path parameters) -> 7."""
    for part in (target or "").split(","):
        name, _, value = part.partition("=")
        if name == "user_id" and value.isdigit():
            return int(value)
    return None


def _user_of_actor(actor: str) -> int | None:
    """``admin#3`` -> 3; the bootstrap token and anonymous callers are nobody's account."""
    _, hashmark, number = actor.rpartition("#")
    return int(number) if hashmark and number.isdigit() else None


def downgrade() -> None:
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.drop_index("ix_account_events_user")
    op.drop_table("account_events")
