"""remember-me successor session; collapsed audit events

Revision ID: 0005
Revises: 0004_pat_websudo
Create Date: 2026-11-29

remember_tokens.successor_session_id: the session the token's last rotation started, which
replays of the replaced token inside the rotation grace reuse instead of minting sessions.
auth_events.repeats / last_occurred_at: identical events within the collapse interval are
counted on one row instead of adding rows.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_pat_websudo"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:  # SQLite: a copy-and-move ALTER
        batch.add_column(sa.Column("successor_session_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_remember_tokens_successor_session_id_sessions"),
            "sessions",
            ["successor_session_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("auth_events") as batch:
        batch.add_column(sa.Column("repeats", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_occurred_at", TIME, nullable=True))
        batch.create_index(
            op.f("ix_auth_events_event_user_id_occurred_at"), ["event", "user_id", "occurred_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_events") as batch:
        batch.drop_index(op.f("ix_auth_events_event_user_id_occurred_at"))
        batch.drop_column("last_occurred_at")
        batch.drop_column("repeats")
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_constraint(
            op.f("fk_remember_tokens_successor_session_id_sessions"), type_="foreignkey"
        )
        batch.drop_column("successor_session_id")
