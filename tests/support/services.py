"""Private PostgreSQL and Redis for the test session: the dev stack's :class:`PrivateServices`.

With ``TESTS_THROUGH_PGBOUNCER=1`` in the environment the session's settings reach PostgreSQL
through a private PgBouncer in transaction pooling mode (``database.pooler = "pgbouncer"``, the
migrations on ``database.direct_url``): a run of the suite the way a scaled-out deployment
connects. The variable is not a ``WINGMAN_*`` one on purpose: those are settings.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import msgspec

from wingman.config import MetricsSettings, Settings
from wingman.devstack import services
from wingman.devstack.pgbouncer import PgBouncer
from wingman.devstack.postgres import SUPERUSER, PostgresCluster
from wingman.devstack.processes import free_port, wait_for

THROUGH_PGBOUNCER = os.environ.get("TESTS_THROUGH_PGBOUNCER") == "1"
TEST_POSTGRES_CONFIG: dict[str, object] = {"max_connections": 200, "shared_buffers": "64MB"}


class PrivateServices(services.PrivateServices):
    """The session's services, and a PgBouncer in front of its PostgreSQL on demand."""

    pgbouncer: PgBouncer | None = None

    @classmethod
    def start_session(cls) -> PrivateServices:
        started = cls(service_folder("wingman-test-"))
        try:
            started.start(TEST_POSTGRES_CONFIG)
        except Exception:
            started.stop()
            raise
        return started

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

    def stop(self, report: services.Report = services.quiet) -> None:
        if self.pgbouncer is not None:
            self.pgbouncer.stop()
        super().stop(report)
        shutil.rmtree(self.root, ignore_errors=True)

    def settings(
        self, database: str = services.DATABASE, *, pooled: bool | None = None, **overrides: object
    ) -> Settings:
        """Settings for ``database``; ``pooled``: through the session's PgBouncer (by default
        when ``TESTS_THROUGH_PGBOUNCER=1``)."""
        base = super().settings(database, pool_size=10)
        if THROUGH_PGBOUNCER if pooled is None else pooled:
            db = msgspec.structs.replace(
                base.database,
                url=self.start_pgbouncer().url(database),
                pooler="pgbouncer",
                direct_url=self.postgres.url(database),
            )
            base = _replace(base, database=db)
        return _replace(base, **overrides) if overrides else base


# Not under pytest's tmp dir: that is private to root, and the servers may run as the
# unprivileged service user, who must be able to reach their folders.
service_folder = services.scratch_folder


private_redis = services.private_redis


def new_postgres(root: Path, password: str) -> PostgresCluster:
    """An initialised, configured, not yet started PostgreSQL cluster under ``root``."""
    postgres = PostgresCluster(root, free_port(), password)
    postgres.init()
    postgres.write_config(TEST_POSTGRES_CONFIG)
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
