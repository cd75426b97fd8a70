"""Private PostgreSQL and Redis for the test session, started with the dev stack's own classes."""

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
from wingman.devstack.postgres import PostgresCluster
from wingman.devstack.processes import free_port, wait_for
from wingman.devstack.redis import RedisServer


@dataclass
class PrivateServices:
    root: Path
    postgres: PostgresCluster
    redis_queue: RedisServer
    redis_cache: RedisServer

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

    def stop(self) -> None:
        for server in (self.redis_queue, self.redis_cache):
            server.stop()
        self.postgres.stop(mode="fast")
        shutil.rmtree(self.root, ignore_errors=True)

    def settings(self, database: str, **overrides: object) -> Settings:
        base = Settings(
            env="test",
            database=DatabaseSettings(url=self.postgres.url(database), pool_size=5, max_overflow=5),
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
