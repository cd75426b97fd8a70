"""Request and response bodies of the privacy API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from wingman.db.models import DataExport, DataExportStatus, UserStatus
from wingman.server.schema import API_PREFIX, Schema


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


def export_out(
    row: DataExport, *, download_base: str | None = f"{API_PREFIX}/me/exports"
) -> ExportOut:
    ready = row.status is DataExportStatus.READY
    return ExportOut(
        id=row.id,
        status=row.status,
        created_at=row.created_at,
        completed_at=row.completed_at,
        expires_at=row.expires_at,
        size_bytes=row.size_bytes,
        download_url=f"{download_base}/{row.id}/download" if ready and download_base else None,
    )
