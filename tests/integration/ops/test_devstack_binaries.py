"""The versions read from this host's server binaries are the versions the servers report."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support.services import PrivateServices
from wingman.devstack.binaries import (
    MIN_POSTGRES_MAJOR,
    MIN_REDIS_MAJOR,
    MissingBinaryError,
    find_postgres,
    find_redis_server,
)


def test_postgres_binaries_match_the_running_server(services: PrivateServices) -> None:
    binaries = find_postgres()
    assert binaries.major >= MIN_POSTGRES_MAJOR
    with psycopg.connect(services.postgres.conninfo()) as conn:
        number = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    assert binaries.major == number // 10000


def test_redis_binary_matches_the_running_server(services: PrivateServices) -> None:
    binary = find_redis_server()
    assert binary.version[0] >= MIN_REDIS_MAJOR
    client = redis.Redis.from_url(services.redis_queue.url())
    try:
        info = client.info("server")
    finally:
        client.close()
    # Valkey reports the Redis version it is compatible with, and its own beside it.
    reported = str(info.get("valkey_version") or info["redis_version"])
    assert binary.version_text == reported


def fake_server(folder: Path, name: str, version_line: str) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_a_redis_too_old_on_path_is_refused_by_name_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server(tmp_path, "redis-server", "Redis server v=6.0.16 sha=00000000:0 bits=64")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/nonexistent")
    with pytest.raises(MissingBinaryError) as caught:
        find_redis_server.__wrapped__()
    assert "redis-server 6.0.16" in str(caught.value)
    assert "Redis 7 or newer" in str(caught.value)


def test_valkey_alone_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server(tmp_path, "valkey-server", "Valkey server v=8.1.1 sha=00000000:0 bits=64")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_redis_server.__wrapped__()
    assert (found.name, found.version) == ("valkey-server", (8, 1, 1))
