"""Every Wingman table, as typed SQLAlchemy models on advanced-alchemy's bases.

All models share advanced-alchemy's registry, so they share one :data:`metadata` (with its
naming convention: ``pk_<table>``, ``fk_<table>_<column>_<referred>``, ``uq_<table>_<column>``,
``ck_<table>_<name>``, ``ix_<column label>``). Indexes are named explicitly so that a migration
and the models always agree on their names.

Conventions:

* ids are UUIDv7 generated in Python; times are ``timestamptz`` (``DateTimeUTC`` through the
  registry's type map for ``datetime`` annotations) and always timezone-aware in Python.
* Enumerated columns are ``varchar`` plus a named CHECK built from a :class:`enum.StrEnum`,
  never a PostgreSQL ENUM type (adding a value to one cannot run inside a transaction).
  Attributes load as the enum member.
* Relationships default to ``lazy="raise"``: callers load related rows explicitly
  (``selectinload``/``joinedload``) so an N+1 query fails loudly instead of slowly.
* Columns that raw SQL may insert into have server-side defaults as well as Python ones.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

from advanced_alchemy.base import DefaultBase, UUIDv7AuditBase, UUIDv7Base, orm_registry
from advanced_alchemy.mixins import AuditColumns
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "IN_FLIGHT_STATUSES",
    "AuditLogEntry",
    "ChatSession",
    "ChatSessionStatus",
    "DataExport",
    "DataExportStatus",
    "EnumString",
    "GlobalConfig",
    "ImportFormat",
    "ImportStatus",
    "JSONValue",
    "Message",
    "MessageSender",
    "OtpChannel",
    "OtpRequest",
    "ProcessingStatus",
    "RefreshToken",
    "ReplyLength",
    "SessionEvent",
    "SessionEventType",
    "SessionImport",
    "TargetProfile",
    "Tone",
    "User",
    "UserRole",
    "UserSettings",
    "UserStatus",
    "UserTier",
    "metadata",
    "utcnow",
]

metadata: MetaData = orm_registry.metadata
"""The one MetaData holding every Wingman table (Alembic's ``target_metadata``)."""

JSONValue: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None


# --- Enumerations -----------------------------------------------------------------------------


class UserTier(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"


class UserRole(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class ReplyLength(enum.StrEnum):
    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


class OtpChannel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class ChatSessionStatus(enum.StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class MessageSender(enum.StrEnum):
    USER = "user"
    AI = "ai"
    SYSTEM = "system"
    # The other side of an imported conversation: context for replies, never answered itself.
    CONTACT = "contact"


class ProcessingStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DataExportStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


class ImportFormat(enum.StrEnum):
    TEXT = "text"
    TELEGRAM = "telegram"


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"


class SessionEventType(enum.StrEnum):
    """Known feedback event types.

    The column has no CHECK on purpose: the set grows with the clients, and adding a CHECK to
    the largest append-only table would mean a full-table validation per new type. The API
    validates the type instead.
    """

    COPIED = "copied"
    SENT = "sent"
    LIKED = "liked"
    DISLIKED = "disliked"


# Statuses an AI message can be in while a worker still owes it a reply.
IN_FLIGHT_STATUSES: tuple[ProcessingStatus, ...] = (
    ProcessingStatus.QUEUED,
    ProcessingStatus.PROCESSING,
)

_E = TypeVar("_E", bound=enum.StrEnum)


class EnumString(TypeDecorator[_E]):
    """``varchar`` holding a :class:`enum.StrEnum` value; loads as the enum member.

    Binding an unknown value raises ``ValueError`` before the database sees it; the CHECK
    constraint (:func:`one_of`) guards raw SQL.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[_E], length: int = 16) -> None:
        super().__init__(length)
        self.enum_class = enum_class
        self.length = length
        # Stored text to member (NULL to None): one dict lookup per loaded value, where calling
        # the enum class takes several calls. db/direct.py reads rows through it too.
        self.members: dict[str | None, _E | None] = {m.value: m for m in enum_class}
        self.members[None] = None

    def process_bind_param(self, value: _E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_class(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> _E | None:
        return self.members[value]


def one_of(column: str, enum_class: type[enum.StrEnum]) -> CheckConstraint:
    """CHECK that ``column`` holds one of the enum's values, named ``ck_<table>_<column>``."""
    allowed = ", ".join(f"'{member.value}'" for member in enum_class)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


# --- Bases ------------------------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class Timestamps(AuditColumns):
    """advanced-alchemy's audit columns, plus ``now()`` server defaults for raw SQL inserts."""

    created_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, server_default=func.now(), sort_order=3002
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True),
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
        sort_order=3003,
    )


class TimestampedBase(Timestamps, UUIDv7AuditBase):
    """UUIDv7 ``id`` plus ``created_at``/``updated_at``: rows that change after insert."""

    __abstract__ = True


class AppendOnlyBase(UUIDv7Base):
    """UUIDv7 ``id`` plus ``created_at`` only: rows never updated, so no ``updated_at``."""

    __abstract__ = True

    created_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, server_default=func.now(), sort_order=3002
    )


class NaturalKeyBase(Timestamps, DefaultBase):
    """No generated key (the model declares its own primary key), with timestamps."""

    __abstract__ = True


# --- Accounts ---------------------------------------------------------------------------------


class User(TimestampedBase):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("phone"),
        # E.164: "+", then up to 15 digits, no leading zero.
        CheckConstraint(r"phone ~ '^\+[1-9][0-9]{1,14}$'", name="phone_e164"),
        one_of("tier", UserTier),
        one_of("role", UserRole),
        one_of("status", UserStatus),
    )

    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(16))
    display_name: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[UserTier] = mapped_column(
        EnumString(UserTier), default=UserTier.FREE, server_default=UserTier.FREE.value
    )
    role: Mapped[UserRole] = mapped_column(
        EnumString(UserRole), default=UserRole.USER, server_default=UserRole.USER.value
    )
    status: Mapped[UserStatus] = mapped_column(
        EnumString(UserStatus), default=UserStatus.ACTIVE, server_default=UserStatus.ACTIVE.value
    )
    last_seen_at: Mapped[datetime | None]
    # BCP 47 tag ("en", "pt-BR") and IANA zone ("Europe/Berlin"); NULL means "not chosen".
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Set together when the account is deleted (status ``deleted``): signing in before
    # ``purge_after`` restores it; after that a heavy job purges every row (domain/privacy).
    deleted_at: Mapped[datetime | None]
    purge_after: Mapped[datetime | None]

    settings: Mapped[UserSettings | None] = relationship(
        back_populates="user", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


# Case-insensitive uniqueness without CITEXT: "A@x.org" and "a@x.org" are one account.
Index("uq_users_email_lower", func.lower(User.email), unique=True)
# The privacy sweep's scan for purges that are due: only deleted accounts are indexed.
Index(
    "ix_users_purge_after",
    User.purge_after,
    postgresql_where=User.purge_after.is_not(None),
)


class UserSettings(NaturalKeyBase):
    __tablename__ = "user_settings"
    __table_args__ = (one_of("reply_length", ReplyLength),)

    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    default_tone_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("tones.id", ondelete="SET NULL")
    )
    reply_length: Mapped[ReplyLength] = mapped_column(
        EnumString(ReplyLength),
        default=ReplyLength.MEDIUM,
        server_default=ReplyLength.MEDIUM.value,
    )
    # BCP 47 tag ("en", "pt-BR"); NULL means "follow the conversation".
    language: Mapped[str | None] = mapped_column(String(35))
    extra: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )

    user: Mapped[User] = relationship(back_populates="settings", lazy="raise")
    default_tone: Mapped[Tone | None] = relationship(lazy="raise")


class OtpRequest(TimestampedBase):
    __tablename__ = "otp_requests"
    __table_args__ = (
        one_of("channel", OtpChannel),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_otp_requests_destination_hash_created_at", "destination_hash", "created_at"),
    )

    # Keyed hashes (HMAC digests, hex): neither the destination nor the code is stored.
    destination_hash: Mapped[str] = mapped_column(String(128))
    channel: Mapped[OtpChannel] = mapped_column(EnumString(OtpChannel))
    code_hash: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    # Text form of an IPv4/IPv6 address (45 characters covers IPv4-mapped IPv6).
    requester_ip: Mapped[str | None] = mapped_column(String(45))
    # The normalised destination, kept only while the code is pending: verify needs it to find
    # or create the account. Cleared when the code is used, or when a newer request for the same
    # destination finds this one expired.
    destination: Mapped[str | None] = mapped_column(String(320))


class RefreshToken(TimestampedBase):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index("ix_refresh_tokens_user_id", "user_id"),
        Index("ix_refresh_tokens_family_id", "family_id"),
        # Deleting a token nulls the pointers to it; without this index that is a full scan.
        Index("ix_refresh_tokens_replaced_by", "replaced_by"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # All tokens rotated from one sign-in share a family; reuse of a spent token revokes it.
    family_id: Mapped[UUID]
    token_hash: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    replaced_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )
    user_agent: Mapped[str | None] = mapped_column(Text)


# --- Catalog ----------------------------------------------------------------------------------


class Tone(TimestampedBase):
    __tablename__ = "tones"
    __table_args__ = (UniqueConstraint("slug"),)

    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    prompt: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    sort_order: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class GlobalConfig(NaturalKeyBase):
    """Feature flags, tier limits and AI settings, one JSON value per key."""

    __tablename__ = "global_config"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    # JSON null is a value here, not SQL NULL.
    value: Mapped[JSONValue] = mapped_column(JSONB, nullable=False)
    updated_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


# --- Profiles and chat ------------------------------------------------------------------------


class TargetProfile(TimestampedBase):
    __tablename__ = "target_profiles"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    interests: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default=text("'{}'::text[]")
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )


# A user's profiles, most recently edited first.
Index(
    "ix_target_profiles_user_id_updated_at",
    TargetProfile.user_id,
    TargetProfile.updated_at.desc(),
)


class ChatSession(TimestampedBase):
    __tablename__ = "chat_sessions"
    __table_args__ = (
        one_of("status", ChatSessionStatus),
        CheckConstraint("message_count >= 0", name="message_count_not_negative"),
        # Deleting a profile nulls its sessions' pointers; without this index that is a full scan.
        Index("ix_chat_sessions_profile_id", "profile_id"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    profile_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("target_profiles.id", ondelete="SET NULL")
    )
    tone_id: Mapped[UUID | None] = mapped_column(ForeignKey("tones.id", ondelete="SET NULL"))
    title: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ChatSessionStatus] = mapped_column(
        EnumString(ChatSessionStatus),
        default=ChatSessionStatus.ACTIVE,
        server_default=ChatSessionStatus.ACTIVE.value,
    )
    message_count: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    last_message_at: Mapped[datetime | None]

    profile: Mapped[TargetProfile | None] = relationship(lazy="raise")
    tone: Mapped[Tone | None] = relationship(lazy="raise")
    messages: Mapped[list[Message]] = relationship(
        back_populates="session",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[Message.created_at, Message.id]",
    )


# Keyset pagination of a user's sessions by (updated_at desc, id).
Index(
    "ix_chat_sessions_user_id_updated_at_id",
    ChatSession.user_id,
    ChatSession.updated_at.desc(),
    ChatSession.id,
)


class Message(TimestampedBase):
    __tablename__ = "messages"
    __table_args__ = (
        one_of("sender", MessageSender),
        one_of("processing_status", ProcessingStatus),
        Index("ix_messages_session_id_created_at_id", "session_id", "created_at", "id"),
        # Only in-flight rows are indexed, so the reconciler's scan stays tiny at 100M messages.
        Index(
            "ix_messages_processing_status_in_flight",
            "processing_status",
            postgresql_where=text(
                "processing_status IN ("
                + ", ".join(f"'{status.value}'" for status in IN_FLIGHT_STATUSES)
                + ")"
            ),
        ),
        # A retried POST with the same key returns the first message instead of a second one.
        Index(
            "uq_messages_session_id_idempotency_key",
            "session_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Deleting a message nulls replies' pointers; without this index that is a full scan.
        Index("ix_messages_reply_to_id", "reply_to_id"),
    )

    session_id: Mapped[UUID] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    sender: Mapped[MessageSender] = mapped_column(EnumString(MessageSender))
    # Empty while an AI reply is queued or streaming.
    content: Mapped[str] = mapped_column(Text, default="", server_default="")
    # No default: the caller decides whether a row is finished (user text) or owed a reply.
    processing_status: Mapped[ProcessingStatus] = mapped_column(EnumString(ProcessingStatus))
    error: Mapped[str | None] = mapped_column(Text)
    reply_to_id: Mapped[UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    latency_ms: Mapped[int | None]
    completed_at: Mapped[datetime | None]
    # --- AI generation bookkeeping (domain/ai), never shown to users --------------------------
    # Runs that claimed this message; the reconciler gives up after the configured budget.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # Fencing token of the run holding the claim: a superseded run's late write matches no row.
    run_id: Mapped[UUID | None]
    # The provider's own words for a failure, for operators; users see ``error`` only.
    failure_detail: Mapped[str | None] = mapped_column(Text)

    # The transcript import that wrote this row; NULL otherwise. No foreign key: deleting an
    # import would then scan the messages table (no index on this column, which would cost a
    # full build on a large table); imported rows go with their session, as every message does.
    import_id: Mapped[UUID | None]

    session: Mapped[ChatSession] = relationship(back_populates="messages", lazy="raise")


class SessionEvent(AppendOnlyBase):
    """Feedback on a session or message; high volume, append-only."""

    __tablename__ = "session_events"
    __table_args__ = (
        Index("ix_session_events_session_id_created_at", "session_id", "created_at"),
        # Both serve the cascades from users and messages, which would otherwise scan the table.
        Index("ix_session_events_user_id", "user_id"),
        Index("ix_session_events_message_id", "message_id"),
    )

    session_id: Mapped[UUID] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # CASCADE rather than SET NULL: a payload may quote the message, which must go with it.
    message_id: Mapped[UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )


class SessionImport(TimestampedBase):
    """An uploaded chat transcript and the outcome of parsing it into a session's messages."""

    __tablename__ = "session_imports"
    __table_args__ = (
        one_of("format", ImportFormat),
        one_of("status", ImportStatus),
        CheckConstraint("size_bytes >= 0", name="size_bytes_not_negative"),
        Index("ix_session_imports_session_id", "session_id"),
        Index("ix_session_imports_user_id", "user_id"),
        # Only unfinished imports are indexed: the reconciler's scan stays tiny.
        Index(
            "ix_session_imports_queued",
            "created_at",
            postgresql_where=text("status = 'queued'"),
        ),
    )

    session_id: Mapped[UUID] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    format: Mapped[ImportFormat] = mapped_column(EnumString(ImportFormat))
    # The transcript's name for the user: their lines become the user's messages.
    me: Mapped[str] = mapped_column(String(100))
    status: Mapped[ImportStatus] = mapped_column(
        EnumString(ImportStatus),
        default=ImportStatus.QUEUED,
        server_default=ImportStatus.QUEUED.value,
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    message_count: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # ``[{"line": n, "message": "..."}]``, the first errors found; empty unless failed.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    finished_at: Mapped[datetime | None]


# --- Privacy and administration ---------------------------------------------------------------


class DataExport(TimestampedBase):
    __tablename__ = "data_exports"
    __table_args__ = (
        one_of("status", DataExportStatus),
        CheckConstraint("size_bytes >= 0", name="size_bytes_not_negative"),
        Index("ix_data_exports_user_id", "user_id"),
        # One export queued or running per user, however requests interleave.
        Index(
            "uq_data_exports_user_id_in_progress",
            "user_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[DataExportStatus] = mapped_column(
        EnumString(DataExportStatus),
        default=DataExportStatus.PENDING,
        server_default=DataExportStatus.PENDING.value,
    )
    file_path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class AuditLogEntry(AppendOnlyBase):
    """One admin action. No foreign keys: the record must outlive the rows it names."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)

    # The acting user's id when the action came through the API; NULL for wingmanctl/system.
    actor_id: Mapped[UUID | None]
    # Human-readable actor ("admin@example.org", "cli:root"), kept even if the user goes.
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
