"""Account deletion and exports: when an account was deleted and is purged; one export at a time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 08:00:00.000000

Both columns are nullable without a default: adding them touches only the catalog. The partial
index holds deleted accounts only, so the privacy sweep's scan stays tiny however many users
there are. The unique partial index allows one unfinished export per user (data_exports is
small: one row per export ever requested, until the purge or retention removes it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("purge_after", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_users_purge_after",
        "users",
        ["purge_after"],
        postgresql_where=sa.text("purge_after IS NOT NULL"),
    )
    op.create_index(
        "uq_data_exports_user_id_in_progress",
        "data_exports",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("uq_data_exports_user_id_in_progress", table_name="data_exports")
    op.drop_index("ix_users_purge_after", table_name="users")
    op.drop_column("users", "purge_after")
    op.drop_column("users", "deleted_at")
