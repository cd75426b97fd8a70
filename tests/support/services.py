"""Private PostgreSQL and Redis for the test session, started with the dev stack's own classes.

With ``TESTS_THROUGH_PGBOUNCER=1`` in the environment the session's settings reach PostgreSQL
through a private PgBouncer in transaction pooling mode (``database.pooler = "pgbouncer"``, the
migrations on ``database.direct_url``): a run of the suite the way a scaled-out deployment
connects. The variable is not a ``WINGMAN_*`` one on purpose: those are settings.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from wingman.config import (
    DatabaseSettings,
    MetricsSettings,
    RedisSettings,
    SecuritySettings,
    Settings,
)
from wingman.devstack.pgbouncer import PgBouncer
from wingman.devstack.postgres import SUPERUSER, PostgresCluster
from wingman.devstack.processes import free_port, wait_for
from wingman.devstack.redis import RedisServer

THROUGH_PGBOUNCER = os.environ.get("TESTS_THROUGH_PGBOUNCER") == "1"


@dataclass
class PrivateServices:
    root: Path
    postgres: PostgresCluster
    redis_queue: RedisServer
    redis_cache: RedisServer
    pgbouncer: PgBouncer | None = None

    @classmethod
    def start(cls) -> PrivateServices:
        root = service_folder("wingman-test-")
        password = secrets.token_urlsafe(16)
        postgres = new_postgres(root / "postgres", password)
        queue = RedisServer(root / "redis", "queue", free_port(), password)
        cache = RedisServer(root / "redis", "cache", free_port(), password)
        services = cls(root, postgres, queue, cache)
        try:
            postgres.start()
            queue.start()
            cache.start()
        except Exception:
            services.stop()
            raise
        return services

    def start_pgbouncer(self) -> PgBouncer:
        """The session's PgBouncer in front of its PostgreSQL, started on first use.

        Raises ``MissingBinaryError`` when the pgbouncer package is not installed."""
        if self.pgbouncer is None:
            self.pgbouncer = PgBouncer(
                self.root / "pgbouncer",
                free_port(),
                self.postgres.port,
                SUPERUSER,
                self.postgres.password,
            )
        self.pgbouncer.start()
        return self.pgbouncer

    def stop(self) -> None:
        if self.pgbouncer is not None:
            self.pgbouncer.stop()
        for server in (self.redis_queue, self.redis_cache):
            server.stop()
        self.postgres.stop(mode="fast")
        shutil.rmtree(self.root, ignore_errors=True)

    def settings(
        self, database: str, *, pooled: bool | None = None, **overrides: object
    ) -> Settings:
        """Settings for ``database``; ``pooled``: through the session's PgBouncer (by default
        when ``TESTS_THROUGH_PGBOUNCER=1``)."""
        db = DatabaseSettings(url=self.postgres.url(database), pool_size=5, max_overflow=5)
        if THROUGH_PGBOUNCER if pooled is None else pooled:
            db = msgspec.structs.replace(
                db,
                url=self.start_pgbouncer().url(database),
                pooler="pgbouncer",
                direct_url=self.postgres.url(database),
            )
        base = Settings(
            env="test",
            database=db,
            redis=RedisSettings(queue_url=self.redis_queue.url(), cache_url=self.redis_cache.url()),
            security=SecuritySettings(secret_key=secrets.token_urlsafe(48)),
        )
        return _replace(base, **overrides) if overrides else base


def service_folder(prefix: str) -> Path:
    """A new folder for servers' data, removed by the caller."""
    # Not under pytest's tmp dir: that is private to root, and the servers may run as the
    # unprivileged service user, who must be able to reach their folders.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def new_postgres(root: Path, password: str) -> PostgresCluster:
    """An initialised, configured, not yet started PostgreSQL cluster under ``root``."""
    postgres = PostgresCluster(root, free_port(), password)
    postgres.init()
    postgres.write_config({"max_connections": 200, "shared_buffers": "64MB"})
    return postgres


def _replace(settings: Settings, **overrides: object) -> Settings:
    return msgspec.structs.replace(settings, **overrides)


def child_env(settings: Settings, folder: Path) -> dict[str, str]:
    """Environment for a child process that must see exactly ``settings`` (written to a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not settings.metrics.dir:
        # The web and worker processes started with this environment share one metrics folder.
        metrics = MetricsSettings(dir=str(folder / "metrics"))
        settings = msgspec.structs.replace(settings, metrics=metrics)
    config = folder / "wingman.toml"
    config.write_bytes(msgspec.toml.encode(settings))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env["WINGMAN_CONFIG"] = str(config)
    env["WINGMAN_TUNING"] = str(folder / "tuning.toml")
    return env


def wait_until_ready(base_url: str, timeout: float = 60.0) -> bool:
    """True once ``base_url``'s ``/health/ready`` answers 200 (a server process has started)."""

    def ready() -> bool:
        try:
            return httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return wait_for(ready, timeout, interval=0.2)
