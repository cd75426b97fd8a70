"""``wingmanctl users export|delete|restore``: JSON for scripts, exit codes, audited."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller
from tests.support.cli import users_ctl
from wingman.config import Settings
from wingman.db.models import AuditLogEntry

EXIT_USAGE = 64


async def test_export_delete_and_restore_from_the_command_line(
    privacy_settings: Settings, privacy_engine: AsyncEngine, alice: Caller, tmp_path: Path
) -> None:
    who = str(alice.id)
    exported = users_ctl(privacy_settings, tmp_path, "export", who, "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["status"] == "pending"
    unconfirmed = users_ctl(privacy_settings, tmp_path, "delete", who)
    assert unconfirmed.returncode == EXIT_USAGE
    assert "--yes" in unconfirmed.stderr
    deleted = users_ctl(privacy_settings, tmp_path, "delete", who, "--yes", "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["status"] == "deleted"
    restored = users_ctl(privacy_settings, tmp_path, "restore", who, "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["status"] == "active"

    async with privacy_engine.connect() as connection:
        actions = list(
            await connection.scalars(
                select(AuditLogEntry.action)
                .where(AuditLogEntry.target == f"user:{alice.id}")
                .order_by(AuditLogEntry.created_at)
            )
        )
    assert actions == ["users.export", "users.delete", "users.restore"]
