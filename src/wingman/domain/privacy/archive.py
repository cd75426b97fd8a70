"""The export archive: one zip holding a JSON Lines file per table and ``manifest.json``.

Members are written one at a time, a chunk of lines at a time, so memory stays flat whatever
the account's size. The manifest records each member's row count, size and SHA-256 (of the
uncompressed JSON Lines), so the owner can check the archive is complete. No database here.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO
from uuid import UUID

import msgspec

FORMAT = "wingman-account-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ManifestTable(msgspec.Struct, kw_only=True):
    name: str
    file: str
    rows: int
    bytes: int
    sha256: str


class Manifest(msgspec.Struct, kw_only=True):
    format: str = FORMAT
    version: int = FORMAT_VERSION
    user_id: UUID
    created_at: datetime
    tables: list[ManifestTable]


class Member:
    """One JSON Lines member being written: counts its rows and bytes, hashes its content."""

    def __init__(self, handle: IO[bytes], name: str) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self.name = name
        self.rows = 0
        self.bytes = 0

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append ``lines`` (each one JSON document, without its newline)."""
        chunk = "".join(f"{line}\n" for line in lines).encode()
        if not chunk:
            return
        self.rows += chunk.count(b"\n")
        self.bytes += len(chunk)
        self._hash.update(chunk)
        self._handle.write(chunk)

    def entry(self) -> ManifestTable:
        return ManifestTable(
            name=self.name.removesuffix(".jsonl"),
            file=self.name,
            rows=self.rows,
            bytes=self.bytes,
            sha256=self._hash.hexdigest(),
        )


class ArchiveWriter:
    """Writes ``path`` (a temporary name: the caller renames it once :meth:`close` returned)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        self.tables: list[ManifestTable] = []

    @contextmanager
    def member(self, name: str) -> Iterator[Member]:
        """Write member ``name``; it enters the manifest when the block ends without error."""
        # force_zip64: the size is not known up front and may pass 4 GB.
        with self._zip.open(name, "w", force_zip64=True) as handle:
            member = Member(handle, name)
            yield member
        self.tables.append(member.entry())

    def close(self, user_id: UUID, created_at: datetime) -> Manifest:
        """Write the manifest, close the zip and flush it to disk."""
        manifest = Manifest(user_id=user_id, created_at=created_at, tables=self.tables)
        self._zip.writestr(MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)))
        self._zip.close()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())
        return manifest

    def abandon(self) -> None:
        """Close without a manifest and delete the file (the job failed)."""
        try:
            self._zip.close()
        finally:
            self.path.unlink(missing_ok=True)


def verify(path: Path) -> Manifest:
    """Read an archive's manifest and check every member against it; raise ``ValueError``."""
    with zipfile.ZipFile(path) as archive:
        manifest = msgspec.json.decode(archive.read(MANIFEST), type=Manifest)
        for table in manifest.tables:
            digest, rows, size = hashlib.sha256(), 0, 0
            with archive.open(table.file) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    digest.update(block)
                    rows += block.count(b"\n")
                    size += len(block)
            if (digest.hexdigest(), rows, size) != (table.sha256, table.rows, table.bytes):
                raise ValueError(f"{table.file} does not match the manifest")
    return manifest
