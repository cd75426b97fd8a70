"""``wingman_backup_last_success_timestamp_seconds``: read from the backup folder at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
from prometheus_client import REGISTRY

from wingman.ops.backups import BackupManifest
from wingman.server.metrics_endpoint import sample_backup_time

GAUGE = "wingman_backup_last_success_timestamp_seconds"


def manifest(folder: Path, stamp: str, created_at: datetime) -> None:
    record = BackupManifest(
        format=1,
        file=f"wingman-{stamp}.dump",
        wingman_version="0",
        migration_head="head",
        database_revision="head",
        postgres_version="15.0",
        postgres_major=15,
        database="wingman",
        size=1,
        sha256="0" * 64,
        created_at=created_at,
    )
    (folder / f"wingman-{stamp}.manifest.json").write_bytes(msgspec.json.encode(record))


def test_newest_backup_sets_the_time(tmp_path: Path) -> None:
    older = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    newer = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    manifest(tmp_path, "20260101T030000Z", older)
    manifest(tmp_path, "20260102T030000Z", newer)
    sample_backup_time(tmp_path)
    assert REGISTRY.get_sample_value(GAUGE) == newer.timestamp()


def test_folder_without_backups_leaves_the_gauge_alone(tmp_path: Path) -> None:
    newest = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
    manifest(tmp_path, "20260201T030000Z", newest)
    sample_backup_time(tmp_path)
    sample_backup_time(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    sample_backup_time(tmp_path / "empty")
    assert REGISTRY.get_sample_value(GAUGE) == newest.timestamp()
