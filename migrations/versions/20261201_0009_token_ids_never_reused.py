"""personal_tokens on SQLite: AUTOINCREMENT, so that an id is never used twice

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

SQLite gives a new row the largest id plus one: once purge-sessions deleted the newest
revoked tokens, the next token took the id of one of them (an outside review). A refusal of
the old token was then written to the audit trail of the new token's owner, and the account
page, which tells a resent form by the ids made after it was shown, made a second token.
PostgreSQL's sequences never go back: nothing changes there.
"""
from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # A copy of the table under the new definition (no table refers to this one).
    with op.batch_alter_table("personal_tokens", recreate="always",
                              table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("personal_tokens", recreate="always",
                              table_kwargs={"sqlite_autoincrement": False}):
        pass
