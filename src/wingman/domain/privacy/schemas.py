"""Request and response bodies of the privacy API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from wingman.db.models import DataExportStatus, UserStatus
from wingman.domain.accounts.schemas import Schema


class ExportOut(Schema):
    id: UUID
    status: DataExportStatus
    created_at: datetime
    completed_at: datetime | None
    # After this the file is deleted and the export is ``expired``.
    expires_at: datetime | None
    size_bytes: int | None
    # Set while the archive can be downloaded (status ``ready``).
    download_url: str | None


class DeleteMeIn(Schema):
    """A one-time code sent to the account's own email or phone (``POST /auth/otp/request``)."""

    request_id: UUID
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class DeletionOut(Schema):
    status: UserStatus
    deleted_at: datetime
    # Signing in before this restores the account; after it every row is purged.
    purge_after: datetime
