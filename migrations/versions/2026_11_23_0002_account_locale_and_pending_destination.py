"""Accounts: users.locale and users.timezone; otp_requests.destination while a code is pending.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:05:00.000000

All three columns are nullable with no default, so adding them is a catalog-only change (no
table rewrite, no long lock) even on a large users table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.String(length=35), nullable=True))
    op.add_column("users", sa.Column("timezone", sa.String(length=64), nullable=True))
    op.add_column("otp_requests", sa.Column("destination", sa.String(length=320), nullable=True))


def downgrade() -> None:
    op.drop_column("otp_requests", "destination")
    op.drop_column("users", "timezone")
    op.drop_column("users", "locale")
