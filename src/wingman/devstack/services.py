"""PostgreSQL, a queue Redis and a cache Redis from the host's binaries, under one folder.

The dev stack (``var/``), the test session and the benchmark scripts all run this trio; this is
where it is assembled. ``root`` holds::

    postgres/       the cluster (data/ and postgresql.log)
    redis/          queue/ and cache/ (config, AOF, log, pid)

Ports default to free ones and passwords to generated ones; a caller that keeps them between
runs (the dev stack's ``devstack.json``) passes its own, so an existing folder starts as before.
Servers that a test stops, kills or restarts on their own, and the Patroni, PgBouncer and
Sentinel variants, build on :class:`PostgresCluster` and :class:`RedisServer` directly.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wingman.config import DatabaseSettings, RedisSettings, SecuritySettings, Settings
from wingman.devstack.postgres import PostgresCluster
from wingman.devstack.processes import free_port
from wingman.devstack.redis import RedisRole, RedisServer

Report = Callable[[str], None]
DATABASE = "wingman"
REDIS_ROLES = ("queue", "cache")


def quiet(_: str) -> None:
    pass


def scratch_folder(prefix: str) -> Path:
    """A new temporary folder for servers' data, removed by the caller."""
    # Not under a private temporary folder: the servers may run as the unprivileged service
    # user, who must be able to reach their folders.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


class PrivateServices:
    """PostgreSQL (``postgres``) and the two Redis roles (``redis_queue``, ``redis_cache``)."""

    def __init__(
        self,
        root: Path,
        *,
        postgres_port: int | None = None,
        postgres_password: str | None = None,
        redis_queue_port: int | None = None,
        redis_cache_port: int | None = None,
        redis_password: str | None = None,
    ) -> None:
        self.root = root
        self.postgres = PostgresCluster(
            root / "postgres",
            postgres_port or free_port(),
            postgres_password or secrets.token_urlsafe(24),
        )
        redis_password = redis_password or secrets.token_urlsafe(24)
        self.redis_queue = RedisServer(
            root / "redis", "queue", redis_queue_port or free_port(), redis_password
        )
        self.redis_cache = RedisServer(
            root / "redis", "cache", redis_cache_port or free_port(), redis_password
        )

    def redis(self, role: str) -> RedisServer:
        return self.redis_queue if role == "queue" else self.redis_cache

    def servers(self) -> dict[str, PostgresCluster | RedisServer]:
        """Each server by the name the dev stack's status shows, in start order."""
        return {"postgres": self.postgres, **{f"redis-{r}": self.redis(r) for r in REDIS_ROLES}}

    def start(
        self,
        config: dict[str, object] | None = None,
        *,
        database: str | None = None,
        report: Report = quiet,
    ) -> None:
        """Start whatever is not running yet (safe to repeat), creating ``database`` if given.

        ``config``: PostgreSQL settings written when the cluster has no drop-in yet (``None``:
        small development values); after that the drop-in is left to ``wingmanctl tune``."""
        pg = self.postgres
        if pg.init():
            report(f"postgres: initialised a new cluster in {pg.data_dir}")
        if not pg.dropin.is_file():
            pg.write_config(config)
        report(f"postgres: {'started' if pg.start() else 'already running'} on 127.0.0.1:{pg.port}")
        if database is not None and pg.ensure_database(database):
            report(f"postgres: created database {database}")
        for role in REDIS_ROLES:
            server = self.redis(role)
            verb = "started" if server.start() else "already running"
            report(f"redis-{role}: {verb} on 127.0.0.1:{server.port}")

    def stop(self, report: Report = quiet) -> None:
        """Stop Redis, then PostgreSQL (fast shutdown); what is not running is left alone."""
        for role in REDIS_ROLES:
            if self.redis(role).stop():
                report(f"redis-{role}: stopped")
        if self.postgres.stop(mode="fast"):
            report("postgres: stopped (fast shutdown)")

    def stopped(self) -> list[str]:
        """The names of the servers that are not running."""
        return [name for name, server in self.servers().items() if not server.running()]

    def pids(self) -> dict[str, int]:
        """Root pids of the running servers (PostgreSQL's postmaster), by name."""
        pids = {name: server.pid() for name, server in self.servers().items()}
        return {name: pid for name, pid in pids.items() if pid is not None}

    def redis_settings(self) -> RedisSettings:
        return RedisSettings(queue_url=self.redis_queue.url(), cache_url=self.redis_cache.url())

    def settings(self, database: str = DATABASE, **database_fields: Any) -> Settings:
        """Test-environment settings on ``database`` and both Redis roles, with a fresh secret
        key; ``database_fields``: further :class:`DatabaseSettings` fields (pool sizes)."""
        return Settings(
            env="test",
            database=DatabaseSettings(url=self.postgres.url(database), **database_fields),
            redis=self.redis_settings(),
            security=SecuritySettings(secret_key=secrets.token_urlsafe(48)),
        )


@contextmanager
def throwaway_services(
    prefix: str, config: dict[str, object] | None = None, *, database: str | None = None
) -> Iterator[PrivateServices]:
    """Started services under a new temporary folder, stopped and removed afterwards."""
    root = scratch_folder(prefix)
    services = PrivateServices(root)
    try:
        services.start(config, database=database)
        yield services
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def private_redis(prefix: str, role: RedisRole = "queue") -> Iterator[RedisServer]:
    """One started Redis server under a new temporary folder, stopped and removed afterwards
    (tests that stop, restart or kill it; benchmarks of Redis calls alone)."""
    root = scratch_folder(prefix)
    server = RedisServer(root, role, free_port(), secrets.token_urlsafe(16))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
