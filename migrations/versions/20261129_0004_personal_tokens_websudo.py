"""personal access tokens; WebSudo elevation on sessions

Revision ID: 0004_pat_websudo
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_pat_websudo"
down_revision = "0003"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "personal_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("last_accessed_at", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_personal_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_tokens")),
    )
    op.create_index(op.f("ix_personal_tokens_user_id"), "personal_tokens", ["user_id"])
    # SQLite cannot ALTER a table to add a column in every form: batch mode rebuilds it.
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("websudo_at", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("websudo_at")
    op.drop_index(op.f("ix_personal_tokens_user_id"), table_name="personal_tokens")
    op.drop_table("personal_tokens")
