"""Where uploaded transcripts wait for the ``heavy`` worker: one private file per import."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path
from uuid import UUID

import anyio

from wingman.config import Settings

UPLOAD_SUFFIX = ".upload"
PARTIAL_SUFFIX = ".part"


class TooLarge(Exception):
    """The upload went past ``imports.max_bytes``; nothing of it is kept."""


def imports_folder(settings: Settings) -> Path:
    """``[imports] dir``, or a folder under the temp dir named for the web port."""
    if settings.imports.dir:
        return Path(settings.imports.dir)
    return Path(tempfile.gettempdir()) / f"wingman-imports-{settings.server.port}"


def upload_path(settings: Settings, import_id: UUID) -> Path:
    return imports_folder(settings) / f"{import_id}{UPLOAD_SUFFIX}"


async def store_upload(
    settings: Settings, import_id: UUID, chunks: AsyncIterable[bytes], announced: int | None
) -> int:
    """Write the body to the import's file as it arrives; its size, or :class:`TooLarge`.

    Written under a ``.part`` name and renamed when complete, so the worker never reads half a
    file; the folder and files are the service user's only (0700/0600).
    """
    limit = settings.imports.max_bytes
    if announced is not None and announced > limit:
        raise TooLarge
    folder = imports_folder(settings)
    await anyio.Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    final = upload_path(settings, import_id)
    partial = final.with_suffix(PARTIAL_SUFFIX)
    size = 0
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        async with await anyio.open_file(descriptor, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge
                if chunk:
                    await out.write(chunk)
        await anyio.Path(partial).rename(final)
    except BaseException:
        await anyio.Path(partial).unlink(missing_ok=True)
        raise
    return size


def remove_upload(settings: Settings, import_id: UUID) -> None:
    upload_path(settings, import_id).unlink(missing_ok=True)
