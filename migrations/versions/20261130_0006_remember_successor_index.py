"""index remember_tokens.successor_session_id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Deleting a session (``purge-sessions``) sets the foreign key of the remember-me tokens that
name it to NULL: without an index, every deleted session meant a scan of remember_tokens.
The purge now clears those references itself, first (tokens before sessions, the one lock
order), by this index.
"""
from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_remember_tokens_successor_session_id"), "remember_tokens", ["successor_session_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_remember_tokens_successor_session_id"), table_name="remember_tokens")
