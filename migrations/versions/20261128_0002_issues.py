"""demo issue tracker: projects and issues with a security level

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("key", name=op.f("uq_projects_key")),
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(48), nullable=False),
        sa.Column("project_key", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("summary", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("security_level", sa.String(16), nullable=False),
        sa.CheckConstraint(
            "security_level IN ('public', 'users')", name=op.f("ck_issues_security_level")
        ),
        sa.ForeignKeyConstraint(
            ["project_key"], ["projects.key"],
            name=op.f("fk_issues_project_key_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["users.id"],
            name=op.f("fk_issues_reporter_id_users"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issues")),
        sa.UniqueConstraint("key", name=op.f("uq_issues_key")),
        sa.UniqueConstraint("project_key", "number", name=op.f("uq_issues_project_key")),
    )
    op.create_index(op.f("ix_issues_created_at"), "issues", ["created_at"])
    op.create_index(op.f("ix_issues_updated_at"), "issues", ["updated_at"])
    op.create_index(op.f("ix_issues_security_level"), "issues", ["security_level"])


def downgrade() -> None:
    op.drop_index(op.f("ix_issues_security_level"), table_name="issues")
    op.drop_index(op.f("ix_issues_updated_at"), table_name="issues")
    op.drop_index(op.f("ix_issues_created_at"), table_name="issues")
    op.drop_table("issues")
    op.drop_table("projects")
