"""sessions.replaced_by_id and password_at: a rotation's successor, the last password check

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A rotation (a WebSudo confirmation, a password change, "log out other sessions") revokes the
browser's session and starts another. A log-out, or "log this browser out" from another one,
that overlaps it presents the replaced session, and must end the new one too: this column
leads from one to the other. No foreign key: a purge deletes old rows, and a successor that
is gone is simply not followed (a key would make every deletion scan this table).

``password_at``: when this browser's login last checked the password (a login, a WebSudo
confirmation, a password change), carried over by rotations; None for a session a
remember-me cookie started. Making a personal access token asks for a check within the
WebSudo window: a stolen cookie alone does not mint a year-long credential.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("replaced_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("password_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("password_at")
        batch.drop_column("replaced_by_id")
