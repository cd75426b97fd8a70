"""A private PostgreSQL cluster under a data folder, run from the host's binaries."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from wingman.devstack.access import unreachable_reason
from wingman.devstack.binaries import PostgresBinaries, find_postgres
from wingman.devstack.processes import RunAs, launch, pid_alive, service_identity, wait_for
from wingman.ops.templates import render, write_private

SUPERUSER = "wingman"

# Small settings for a development cluster; the appliance renders the same template from the
# tuning plan instead.
DEV_POSTGRES_VALUES: dict[str, object] = {
    "max_connections": 100,
    "shared_buffers": "128MB",
    "effective_cache_size": "512MB",
    "work_mem": "4MB",
    "maintenance_work_mem": "64MB",
    "min_wal_size": "80MB",
    "max_wal_size": "1GB",
    "random_page_cost": 1.1,
    "effective_io_concurrency": 200,
    # PostgreSQL's own defaults.
    "max_worker_processes": 8,
    "max_parallel_workers": 8,
    "max_parallel_workers_per_gather": 2,
    "max_parallel_maintenance_workers": 2,
}


class PostgresError(RuntimeError):
    """PostgreSQL could not be initialised, started or stopped; carries the server's log tail."""


@dataclass
class PostgresCluster:
    """One cluster: ``root/data`` (PGDATA) and ``root/postgresql.log``, on loopback ``port``."""

    root: Path
    port: int
    password: str
    binaries: PostgresBinaries = field(default_factory=find_postgres)
    run_as: RunAs = field(default_factory=service_identity)
    # The address it listens on besides loopback, the network (CIDR) whose clients may log in
    # there, and the network namespace it runs in (empty: the machine's).
    host: str = "127.0.0.1"
    clients: str = ""
    netns: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dropin(self) -> Path:
        """The Wingman settings file that postgresql.conf includes."""
        return self.data_dir / "wingman.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, database: str = "wingman", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return self.url(database, driver="postgresql")

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _recorded_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        pid = self._recorded_pid()
        return pid if pid is not None and pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def init(self) -> bool:
        """Create the cluster if it does not exist yet; returns True when it did."""
        if self.initialised:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_as.own(self.root)
        self._check_reachable()
        pwfile = self.root / ".initdb-password"
        write_private(pwfile, self.password + "\n")
        self.run_as.own(pwfile)
        try:
            self._run(
                self.binaries["initdb"],
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--data-checksums",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        hba = render("postgresql/pg_hba.conf.tmpl", {})
        if self.clients:
            hba += f"host    all       all   {self.clients}  scram-sha-256\n"
        (self.data_dir / "pg_hba.conf").write_text(hba)
        self.run_as.own(self.data_dir / "pg_hba.conf")
        return True

    def write_config(self, values: dict[str, object] | None = None) -> None:
        """Render the Wingman drop-in and include it from postgresql.conf (once)."""
        rendered = render(
            "postgresql/wingman.conf.tmpl",
            {
                "listen_addresses": ",".join(dict.fromkeys(["127.0.0.1", self.host])),
                "port": self.port,
                # TCP only: keeps socket paths (length-limited) out of deep test folders.
                "socket_dir": "",
                **DEV_POSTGRES_VALUES,
                **(values or {}),
            },
        )
        self.dropin.write_text(rendered)
        self.run_as.own(self.dropin)
        main_conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'wingman.conf'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(f"\n# Wingman settings live in the drop-in.\n{include}\n")

    def start(self, timeout: int = 60) -> bool:
        """Start the server and wait until it accepts connections; False if it already ran."""
        if self.running():
            return False
        self._check_reachable()
        stale = self._recorded_pid()
        if stale is not None:
            # After a crash the old postmaster can linger as a zombie until it is reaped, and
            # PostgreSQL refuses to start while its pid still exists.
            wait_for(lambda: not Path(f"/proc/{stale}").exists(), 10)
        self._run(
            self.binaries["pg_ctl"],
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--wait",
            "--timeout",
            str(timeout),
        )
        return True

    def stop(self, mode: str = "fast", timeout: int = 60) -> bool:
        """Stop with PostgreSQL's fast shutdown (rolls back open transactions, flushes, exits)."""
        if not self.running():
            return False
        self._run(
            self.binaries["pg_ctl"],
            "stop",
            "--pgdata",
            str(self.data_dir),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(timeout),
        )
        return True

    def ensure_database(self, name: str) -> bool:
        """Create database ``name`` if missing; returns True when it was created."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _check_reachable(self) -> None:
        """Fail with the fix before a server process meets a folder it cannot enter."""
        reason = unreachable_reason(self.root, self.run_as)
        if reason is not None:
            raise PostgresError(f"postgres: {reason}")

    def _run(self, *args: str) -> None:
        argv, identity = launch(list(args), self.run_as, self.netns)
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            start_new_session=True,
            **identity,
        )
        if result.returncode != 0:
            tail = ""
            if self.log_file.is_file():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise PostgresError(
                f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} failed "
                f"(exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                + (f"\n--- {self.log_file} ---\n{tail}" if tail else "")
            )
