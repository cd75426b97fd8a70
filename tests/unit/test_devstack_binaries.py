"""Reading server versions and choosing the PostgreSQL and Redis (or Valkey) binaries to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from wingman.devstack.binaries import (
    MissingBinaryError,
    PostgresBinaries,
    RedisBinary,
    choose_postgres,
    choose_redis,
    parse_postgres_major,
    parse_redis_version,
)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n", 15),
        ("postgres (PostgreSQL) 17.6 (Debian 17.6-0+deb13u1)\n", 17),
        ("postgres (PostgreSQL) 14.19 (Ubuntu 14.19-0ubuntu0.22.04.1)\n", 14),
        ("postgres (PostgreSQL) 16.10 (Ubuntu 16.10-0ubuntu0.24.04.1)\n", 16),
        ("postgres (PostgreSQL) 9.6.24\n", 9),
        ("postgres (PostgreSQL) 18beta1\n", 18),
        ("", None),
        ("command not found", None),
    ],
)
def test_postgres_major_is_read_from_version_output(output: str, major: int | None) -> None:
    assert parse_postgres_major(output) == major


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1", (7, 0, 15)),
        ("Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=a", (6, 0, 16)),
        ("Redis server v=8.0.2 sha=00000000:1 malloc=jemalloc-5.3.0 bits=64 build=b", (8, 0, 2)),
        ("Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=c", (8, 1, 1)),
        ("", None),
    ],
)
def test_redis_version_is_read_from_version_output(
    output: str, version: tuple[int, int, int] | None
) -> None:
    assert parse_redis_version(output) == version


def pg(major: int) -> PostgresBinaries:
    return PostgresBinaries(Path(f"/usr/lib/postgresql/{major}/bin"), major)


@pytest.mark.parametrize("majors", [[14], [15], [16], [17], [13, 14], [17, 16, 15, 14]])
def test_every_postgres_from_14_is_accepted_and_the_newest_wins(majors: list[int]) -> None:
    assert choose_postgres([pg(m) for m in majors]).major == max(majors)


def test_a_too_old_postgres_is_named_with_its_version() -> None:
    with pytest.raises(MissingBinaryError) as caught:
        choose_postgres([pg(13), pg(12)])
    message = str(caught.value)
    assert "PostgreSQL 13 (/usr/lib/postgresql/13/bin)" in message
    assert "PostgreSQL 12" in message
    assert "too old" in message
    assert "PostgreSQL 14 or newer" in message


def test_no_postgres_at_all_says_how_to_install() -> None:
    with pytest.raises(MissingBinaryError, match=r"not found.*apt-get install postgresql"):
        choose_postgres([])


def redis(name: str, version: tuple[int, int, int]) -> RedisBinary:
    return RedisBinary(f"/usr/bin/{name}", version)


@pytest.mark.parametrize(
    "found",
    [
        [redis("redis-server", (7, 0, 15))],
        [redis("redis-server", (8, 0, 2))],
        [redis("valkey-server", (8, 1, 1))],
        [redis("redis-server", (6, 0, 16)), redis("valkey-server", (8, 1, 1))],
    ],
)
def test_redis_7_or_valkey_is_accepted(found: list[RedisBinary]) -> None:
    chosen = choose_redis(found)
    assert chosen.version[0] >= 7
    assert chosen == next(b for b in found if b.version[0] >= 7)


def test_redis_is_preferred_over_valkey_when_both_fit() -> None:
    both = [redis("redis-server", (8, 0, 2)), redis("valkey-server", (8, 1, 1))]
    assert choose_redis(both).name == "redis-server"


def test_a_too_old_redis_is_named_with_its_version() -> None:
    with pytest.raises(MissingBinaryError) as caught:
        choose_redis([redis("redis-server", (6, 0, 16))])
    message = str(caught.value)
    assert "redis-server 6.0.16 (/usr/bin/redis-server)" in message
    assert "too old" in message
    assert "Redis 7 or newer (or Valkey)" in message


def test_no_redis_at_all_keeps_the_install_hint() -> None:
    with pytest.raises(MissingBinaryError, match=r"redis-server not found.*apt-get install"):
        choose_redis([])
