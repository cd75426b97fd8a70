"""Export requests and their files: one export in progress per user, a private folder, expiry.

The row in ``data_exports`` is the truth; the file is named after the row
(``<id>.zip``, written as ``.<id>.zip.partial`` and renamed when complete), so a crashed run
leaves nothing a download could serve, and the next run deletes its leftover before starting.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from saq import Queue
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import DataExport, DataExportStatus, utcnow
from wingman.queues import enqueue
from wingman.server.errors import Problem

IN_PROGRESS = (DataExportStatus.PENDING, DataExportStatus.RUNNING)


def export_dir(settings: Settings) -> Path:
    """The private folder of export files, created owner-only (0700) when missing."""
    folder = Path(settings.exports.dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def final_name(export_id: UUID) -> str:
    return f"{export_id}.zip"


def partial_path(folder: Path, export_id: UUID) -> Path:
    return folder / f".{export_id}.zip.partial"


def file_of(settings: Settings, row: DataExport) -> Path | None:
    """The ready file of ``row``, or None (never a path outside the export folder)."""
    if row.status is not DataExportStatus.READY or not row.file_path:
        return None
    path = Path(settings.exports.dir) / Path(row.file_path).name
    return path if path.is_file() else None


def export_not_found() -> Problem:
    return Problem(404, "export-not-found", "No such export.")


class ExportInProgress(Exception):
    """The user already has an export queued or running."""

    def __init__(self, export_id: UUID) -> None:
        super().__init__(str(export_id))
        self.export_id = export_id


def in_progress_problem(export_id: UUID) -> Problem:
    return Problem(
        409,
        "export-in-progress",
        "An export of this account is already queued or running; wait for it to finish.",
        extra={"export_id": str(export_id)},
    )


async def start_export(session: AsyncSession, user_id: UUID) -> DataExport:
    """A new ``pending`` export row (flushed, not committed), or :class:`ExportInProgress`.

    The partial unique index on ``data_exports (user_id)`` for unfinished rows decides races:
    two requests at once insert one row between them.
    """
    export_id = UUID(str(uuid7()))
    inserted = await session.scalar(
        insert(DataExport)
        .values(id=export_id, user_id=user_id, status=DataExportStatus.PENDING)
        .on_conflict_do_nothing(
            index_elements=["user_id"],
            index_where=DataExport.status.in_([status.value for status in IN_PROGRESS]),
        )
        .returning(DataExport.id)
    )
    if inserted is None:
        running = await session.scalar(
            select(DataExport.id).where(
                DataExport.user_id == user_id, DataExport.status.in_(IN_PROGRESS)
            )
        )
        raise ExportInProgress(running or export_id)
    row = await session.get_one(DataExport, export_id)
    return row


def export_job_key(export_id: UUID) -> str:
    return f"export_account:{export_id}"


async def enqueue_export(queue: Queue, settings: Settings, export_id: UUID) -> None:
    """Enqueue the heavy job; call after the row's transaction committed."""
    await enqueue(
        queue, settings, "export_account", key=export_job_key(export_id), export_id=str(export_id)
    )


async def get_export(session: AsyncSession, user_id: UUID, export_id: UUID) -> DataExport:
    """``user_id``'s export ``export_id``; 404 for any other user's."""
    row = await session.scalar(
        select(DataExport).where(DataExport.id == export_id, DataExport.user_id == user_id)
    )
    if row is None:
        raise export_not_found()
    return row


async def claim(session: AsyncSession, export_id: UUID) -> UUID | None:
    """Mark the export ``running`` (again, on a retry) and return its user; None when it is no
    longer owed (finished, failed, expired or gone): the job then does nothing."""
    user_id = await session.scalar(
        update(DataExport)
        .where(DataExport.id == export_id, DataExport.status.in_(IN_PROGRESS))
        .values(status=DataExportStatus.RUNNING, updated_at=utcnow())
        .returning(DataExport.user_id)
    )
    await session.commit()
    return user_id


async def mark_ready(
    session: AsyncSession, settings: Settings, export_id: UUID, size: int
) -> DataExport | None:
    """``running`` → ``ready`` once; None if another run got there first."""
    now = utcnow()
    row = await session.scalar(
        update(DataExport)
        .where(DataExport.id == export_id, DataExport.status == DataExportStatus.RUNNING)
        .values(
            status=DataExportStatus.READY,
            file_path=final_name(export_id),
            size_bytes=size,
            completed_at=now,
            expires_at=now + timedelta(hours=settings.exports.ttl_hours),
            updated_at=now,
        )
        .returning(DataExport)
    )
    await session.commit()
    return row


async def mark_failed(session: AsyncSession, export_id: UUID) -> None:
    await session.execute(
        update(DataExport)
        .where(DataExport.id == export_id, DataExport.status.in_(IN_PROGRESS))
        .values(status=DataExportStatus.FAILED, updated_at=utcnow())
    )
    await session.commit()


def remove_files(folder: Path, export_id: UUID) -> None:
    """Delete an export's file and any leftover partial file (both may be absent)."""
    (folder / final_name(export_id)).unlink(missing_ok=True)
    partial_path(folder, export_id).unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def job_result(**fields: Any) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, UUID) else value for key, value in fields.items()}
