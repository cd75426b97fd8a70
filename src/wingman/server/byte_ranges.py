"""Resumable file downloads: one byte range per request (RFC 9110 §14).

Litestar's ``File`` response always sends the whole file. An account export can be hundreds of
megabytes, fetched over a phone's network: a download cut at 90 % should resume where it
stopped (``Range: bytes=<received>-``), not start again. This module answers a single range
with ``206 Partial Content``; everything RFC 9110 lets a server ignore is ignored, and the whole
file is sent with 200:

- no ``Range``, another unit than ``bytes``, or a malformed value;
- several ranges (a ``multipart/byteranges`` answer is not worth its complexity for a client
  that resumes: it asks for one range);
- an ``If-Range`` that does not match the file's current validator (the file changed).

A well-formed single range that starts at or past the end of the file is ``416 Range Not
Satisfiable`` with ``Content-Range: bytes */<size>``. Answers always carry
``Accept-Ranges: bytes`` and the ``ETag`` given by the caller, which must change whenever the
file's content does (a file that never changes once written can name itself).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from litestar import Request
from litestar.datastructures import ETag
from litestar.response import File, Response, Stream

from wingman.server.errors import Problem

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a file, both included."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    """A well-formed single range that selects nothing of the file."""


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of ``header`` within a file of ``size`` bytes; ``None`` to send it all.

    ``bytes=a-b`` (``b`` past the end is cut to the end), ``bytes=a-`` (from ``a`` on) and
    ``bytes=-n`` (the last ``n`` bytes, all of them if ``n`` ≥ size)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None  # another unit, several ranges, or not a range at all
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-": malformed
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # malformed: ignored, as RFC 9110 allows
    if start >= size:
        raise RangeNotSatisfiable(header)
    return ByteRange(start, min(end, size - 1))


def _validator_matches(if_range: str | None, etag: str, last_modified: str) -> bool:
    """No ``If-Range``, or one naming the file as it is now (its ETag or Last-Modified)."""
    if if_range is None:
        return True
    value = if_range.strip()
    return value in {etag, last_modified} and not value.startswith("W/")


async def _read(path: Path, part: ByteRange) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        await handle.seek(part.start)
        left = part.length
        while left > 0:
            chunk = await handle.read(min(CHUNK_BYTES, left))
            if not chunk:  # the file shrank under us: end the body short, the client retries
                return
            left -= len(chunk)
            yield chunk


def _attachment(filename: str) -> str:
    """The ``Content-Disposition`` Litestar's ``File`` sends for the same name."""
    quoted = quote(filename)
    if quoted == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"


def file_download(
    request: Request[Any, Any, Any],
    path: Path,
    *,
    filename: str,
    media_type: str,
    etag: str,
) -> Response[Any]:
    """``path`` as an attachment: whole (200) or the one range the request asks for (206)."""
    stat = path.stat()
    size = stat.st_size
    quoted = f'"{etag}"'
    last_modified = formatdate(stat.st_mtime, usegmt=True)
    headers = {"Accept-Ranges": "bytes"}
    try:
        part = requested_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        raise Problem(
            416,
            "range-not-satisfiable",
            f"The range starts past the end of the file ({size} bytes).",
            headers={**headers, "Content-Range": f"bytes */{size}"},
        ) from None
    if part is not None and not _validator_matches(
        request.headers.get("if-range"), quoted, last_modified
    ):
        part = None
    if part is None:
        return File(
            path=path,
            filename=filename,
            media_type=media_type,
            etag=ETag(value=etag),
            headers=headers,
        )
    return Stream(
        _read(path, part),
        status_code=206,
        media_type=media_type,
        headers={
            **headers,
            "Content-Range": f"bytes {part.start}-{part.end}/{size}",
            "Content-Length": str(part.length),
            "Content-Disposition": _attachment(filename),
            "ETag": quoted,
            "Last-Modified": last_modified,
        },
    )
