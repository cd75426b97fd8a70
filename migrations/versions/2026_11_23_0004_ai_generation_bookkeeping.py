"""AI generation bookkeeping on messages: attempts, the current run's fence, failure detail.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:40:00.000000

``attempts`` has a constant default, which PostgreSQL 11+ stores in the catalog: no table rewrite
and no long lock on a large messages table; the other columns are nullable without a default.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("messages", sa.Column("run_id", sa.Uuid(), nullable=True))
    op.add_column("messages", sa.Column("failure_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    for column in ("failure_detail", "run_id", "attempts"):
        op.drop_column("messages", column)
