"""Response bodies of the import routes (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from wingman.db.models import ImportFormat, ImportStatus, SessionImport
from wingman.server.schema import Schema


class ImportProblem(Schema):
    """One problem: the line (text) or message position (telegram) and what is wrong."""

    line: int
    message: str


class ImportOut(Schema):
    id: UUID
    session_id: UUID
    format: ImportFormat
    status: ImportStatus
    size_bytes: int
    # Messages stored (0 until done; always 0 when failed: imports are all or nothing).
    message_count: int
    errors: list[ImportProblem]
    created_at: datetime
    finished_at: datetime | None


def import_out(row: SessionImport) -> ImportOut:
    errors: list[dict[str, Any]] = list(row.errors or [])
    return ImportOut(
        id=row.id,
        session_id=row.session_id,
        format=row.format,
        status=row.status,
        size_bytes=row.size_bytes,
        message_count=row.message_count,
        errors=[ImportProblem(line=int(e["line"]), message=str(e["message"])) for e in errors],
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
