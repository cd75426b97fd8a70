"""Transcript imports: ``session_imports``, ``messages.import_id`` and the ``contact`` sender.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:30:00.000000

Cheap on a large messages table: the new column is nullable without a default (catalog only),
and the widened sender CHECK is added ``NOT VALID`` and then validated, which scans the table
without blocking writes (SHARE UPDATE EXCLUSIVE) instead of holding a write lock throughout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SENDERS = "sender IN ('user', 'ai', 'system')"
NEW_SENDERS = "sender IN ('user', 'ai', 'system', 'contact')"


def _sender_check(condition: str) -> None:
    op.execute("ALTER TABLE messages DROP CONSTRAINT ck_messages_sender")
    op.execute(
        f"ALTER TABLE messages ADD CONSTRAINT ck_messages_sender CHECK ({condition}) NOT VALID"
    )
    op.execute("ALTER TABLE messages VALIDATE CONSTRAINT ck_messages_sender")


def upgrade() -> None:
    op.create_table(
        "session_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("me", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "errors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        # advanced-alchemy's sentinel column, as on every table with a UUIDv7 id (see 0001).
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "format IN ('text', 'telegram')", name=op.f("ck_session_imports_format")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'done', 'failed')", name=op.f("ck_session_imports_status")
        ),
        sa.CheckConstraint(
            "size_bytes >= 0", name=op.f("ck_session_imports_size_bytes_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_session_imports_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_session_imports_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_imports")),
    )
    op.create_index("ix_session_imports_session_id", "session_imports", ["session_id"])
    op.create_index("ix_session_imports_user_id", "session_imports", ["user_id"])
    op.create_index(
        "ix_session_imports_queued",
        "session_imports",
        ["created_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.add_column("messages", sa.Column("import_id", sa.Uuid(), nullable=True))
    _sender_check(NEW_SENDERS)


def downgrade() -> None:
    op.execute("DELETE FROM messages WHERE sender = 'contact'")
    _sender_check(OLD_SENDERS)
    op.drop_column("messages", "import_id")
    op.drop_table("session_imports")
