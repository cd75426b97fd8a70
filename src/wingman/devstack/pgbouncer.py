"""A private PgBouncer in transaction pooling mode in front of a private PostgreSQL cluster.

Run from the distribution's binary (Debian's ``pgbouncer`` package), like the dev stack's other
servers. It exists so that the tests can drive the application the way a scaled-out deployment
does (``database.pooler = "pgbouncer"``, docs/scale-out.md): every transaction may land on a
different server connection, so nothing the application does may lean on session state.

Clients authenticate with SCRAM against a generated ``userlist.txt`` (the PostgreSQL role's
password, readable by its owner only); PgBouncer logs in to PostgreSQL with the same password.
Every database name is forwarded to the cluster (a ``*`` entry), so a test's private databases
work through it too. ``ignore_startup_parameters`` is left empty on purpose: a client that sends
a startup parameter PgBouncer does not track (``options``, ``search_path``) is refused, exactly
as a default production PgBouncer refuses it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from wingman.devstack.access import unreachable_reason
from wingman.devstack.binaries import MissingBinaryError
from wingman.devstack.processes import (
    RunAs,
    launch,
    pid_alive,
    port_open,
    read_pid,
    service_identity,
    wait_for,
)
from wingman.ops.templates import write_private

PGBOUNCER_INSTALL_HINT = (
    "pgbouncer not found; install it with: sudo apt-get install pgbouncer "
    "(scripts/bootstrap does it when run as root)"
)


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started; carries its log tail."""


@functools.cache
def find_pgbouncer() -> str:
    """Path of the ``pgbouncer`` binary (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise MissingBinaryError(PGBOUNCER_INSTALL_HINT)
    return found


@dataclass
class PgBouncer:
    """``root/`` holds ``pgbouncer.ini``, ``userlist.txt``, the log and the pid file."""

    root: Path
    port: int
    server_port: int
    user: str
    password: str
    # Server connections per (database, user) pair, and in total per database.
    pool_size: int = 20
    max_db_connections: int = 40
    max_client_conn: int = 400
    binary: str = field(default_factory=find_pgbouncer)
    run_as: RunAs = field(default_factory=service_identity)
    # Where it listens, where PostgreSQL is, and the network namespace it runs in (empty: the
    # machine's).
    host: str = "127.0.0.1"
    server_host: str = "127.0.0.1"
    netns: str = ""

    @property
    def ini_file(self) -> Path:
        return self.root / "pgbouncer.ini"

    @property
    def userlist(self) -> Path:
        return self.root / "userlist.txt"

    @property
    def pid_file(self) -> Path:
        return self.root / "pgbouncer.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "pgbouncer.log"

    def url(self, database: str = "wingman", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def admin_conninfo(self) -> str:
        """PgBouncer's own console (``SHOW POOLS``, ``SHOW STATS``): the ``pgbouncer`` database."""
        return self.url("pgbouncer", driver="postgresql")

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_as.own(self.root)
        ini = "\n".join(
            [
                "[databases]",
                f"* = host={self.server_host} port={self.server_port}",
                "",
                "[pgbouncer]",
                f"listen_addr = {self.host}",
                f"listen_port = {self.port}",
                # TCP only, like the private PostgreSQL: no socket paths in deep test folders.
                "unix_socket_dir =",
                "pool_mode = transaction",
                "auth_type = scram-sha-256",
                f"auth_file = {self.userlist}",
                f"admin_users = {self.user}",
                f"stats_users = {self.user}",
                f"default_pool_size = {self.pool_size}",
                f"max_db_connections = {self.max_db_connections}",
                f"max_client_conn = {self.max_client_conn}",
                f"logfile = {self.log_file}",
                f"pidfile = {self.pid_file}",
                # Quiet: one line per connection would drown the log in a test run.
                "log_connections = 0",
                "log_disconnections = 0",
                # SHOW STATS totals refresh every second (the default is a minute).
                "stats_period = 1",
                "",
            ]
        )
        write_private(self.ini_file, ini)
        self.run_as.own(self.ini_file)
        quoted = self.password.replace('"', '""')
        write_private(self.userlist, f'"{self.user}" "{quoted}"\n')
        self.run_as.own(self.userlist)

    def start(self, timeout: float = 30) -> bool:
        """Start (daemonized) and wait until it forwards a query; False if it already ran."""
        if self.running():
            return False
        self.write_config()
        reason = unreachable_reason(self.root, self.run_as)
        if reason is not None:
            raise PgBouncerError(f"pgbouncer: {reason}")
        argv, identity = launch([self.binary, "-d", str(self.ini_file)], self.run_as, self.netns)
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            start_new_session=True,
            **identity,
        )
        if result.returncode != 0 or not wait_for(
            lambda: self.running() and port_open(self.port, self.host) and self._serving(),
            timeout,
            0.1,
        ):
            tail = ""
            if self.log_file.is_file():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-10:])
            raise PgBouncerError(
                f"pgbouncer did not start on port {self.port}: "
                f"{result.stderr.strip() or result.stdout.strip()}\n{tail}".strip()
            )
        return True

    def _serving(self) -> bool:
        try:
            with psycopg.connect(self.admin_conninfo(), autocommit=True, connect_timeout=2) as c:
                c.execute("SHOW VERSION")
        except psycopg.Error:
            return False
        return True

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM (PgBouncer's immediate shutdown: it closes every connection and exits), then
        SIGKILL. Not the process group: daemonized, PgBouncer is not its group's leader."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not pid_alive(pid), timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not pid_alive(pid), 5)
        return True

    def stats(self, database: str = "wingman") -> dict[str, int]:
        """``SHOW STATS`` totals for ``database``: transactions and queries it forwarded."""
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            # The admin console speaks only the simple query protocol.
            cursor = conn.cursor()
            cursor.execute("SHOW STATS", prepare=False)
            names = [column.name for column in cursor.description or []]
            for row in cursor.fetchall():
                entry = dict(zip(names, row, strict=True))
                if entry["database"] == database:
                    # Counters come back as numeric (Decimal).
                    return {k: int(v) for k, v in entry.items() if k != "database"}
        return {}
