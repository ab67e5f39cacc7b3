"""users.window_started_at and window_failed_logins: failed logins per hour

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A right password starts the lock-out's count again, as Jira's does; a guesser who slipped
two guesses between each poll of the owner's Basic client was never locked out. These count
the failures of the current hour whatever succeeds in between (ASVS 2.2.1: at most so many
failed attempts per hour on one account); at appserver.login.max_failures_per_hour the
account is locked until the hour is over.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("window_failed_logins", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("window_failed_logins")
        batch.drop_column("window_started_at")
