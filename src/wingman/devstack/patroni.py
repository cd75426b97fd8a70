"""A Patroni cluster on loopback: one etcd member and PostgreSQL nodes managed by Patroni.

For the PostgreSQL failover tests and for trying a Patroni topology locally (docs/scale-out.md).
Everything runs from the distribution's packages (``patroni``, ``etcd-server``) and the host's
PostgreSQL binaries, on free ports under ``root``. Patroni keeps the leader key in etcd (its v3
API); the node holding it runs the primary, the others stream from it. Synchronous mode is on,
so a transaction is acknowledged only once a standby has it: a failover loses no committed
write (Patroni promotes only the synchronous standby, and drops the requirement while no
standby is left, so a lone primary keeps taking writes). Short ``ttl`` and ``loop_wait`` make
a failover take seconds instead of the production defaults' half a minute.

Patroni's configuration is YAML; the files are written as JSON, which YAML reads as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from wingman.devstack.binaries import MissingBinaryError, PostgresBinaries, find_postgres
from wingman.devstack.postgres import SUPERUSER
from wingman.devstack.processes import (
    RunAs,
    free_port,
    pid_alive,
    service_identity,
    stop_process_group,
    wait_for,
)
from wingman.ops.backups import Connection
from wingman.ops.templates import write_private

PATRONI_INSTALL_HINT = (
    "patroni or etcd not found; install them with: sudo apt-get install patroni etcd-server "
    "(scripts/bootstrap does it when run as root)"
)
REPLICATION_USER = "replicator"


class PatroniError(RuntimeError):
    """The cluster could not be started or did not reach the expected state; carries log tails."""


def find_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        raise MissingBinaryError(PATRONI_INSTALL_HINT)
    return found


def _get(url: str) -> int | None:
    """HTTP status of a GET (Patroni answers its role checks with 200 or 503), None if no answer."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - loopback http
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class EtcdServer:
    """A one-member etcd (the store Patroni keeps its leader key and configuration in)."""

    dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 30) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        client, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        with (self.dir / "etcd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    find_tool("etcd"),
                    "--name=etcd0",
                    f"--data-dir={self.dir / 'data'}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=etcd0={peer}",
                    "--initial-cluster-state=new",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for(lambda: _get(f"{client}/health") == 200, timeout):
            self.stop()
            raise PatroniError(f"etcd did not start: {_tail(self.dir / 'etcd.log')}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process.pid, 10)
            self.process.wait(5)


@dataclass
class PatroniNode:
    """One Patroni member: its configuration, PostgreSQL data directory and log under ``dir``."""

    name: str
    dir: Path
    pg_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "patroni.log"

    def rest(self, check: str) -> int | None:
        """Patroni's role check ``check`` (``primary``, ``replica``, ``sync``...): 200 = yes."""
        return _get(f"http://127.0.0.1:{self.rest_port}/{check}")

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            return pid if pid_alive(pid) else None
        return None


@dataclass
class PatroniCluster:
    """``size`` PostgreSQL nodes under Patroni and one etcd, sharing ``password`` for the
    superuser (``wingman``, as in the rest of the dev stack) and the replication role."""

    root: Path
    password: str
    size: int = 2
    scope: str = "wingman"
    ttl: int = 10
    loop_wait: int = 1
    retry_timeout: int = 4
    binaries: PostgresBinaries = field(default_factory=find_postgres)
    run_as: RunAs = field(default_factory=service_identity)
    etcd: EtcdServer | None = None
    nodes: list[PatroniNode] = field(default_factory=list)

    def url(self, database: str = "wingman") -> str:
        """A multi-host URL naming every member; libpq picks the one that takes writes."""
        hosts = "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)
        return (
            f"postgresql+psycopg://{SUPERUSER}:{self.password}@/{database}"
            f"?{hosts}&target_session_attrs=read-write"
        )

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` on the primary if it is not there (standbys follow)."""
        conninfo = Connection.from_url(self.url("postgres")).conninfo()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def start(self, timeout: float = 90) -> None:
        """Start etcd and every node; wait for a leader and every standby streaming in sync."""
        patroni = find_tool("patroni")
        self.etcd = EtcdServer(self.root / "etcd")
        self.etcd.start()
        for index in range(self.size):
            node = PatroniNode(f"pg{index}", self.root / f"pg{index}")
            node.dir.mkdir(parents=True, exist_ok=True)
            self.run_as.own(node.dir)
            write_private(node.config_file, json.dumps(self._config(node), indent=2))
            self.run_as.own(node.config_file)
            self.nodes.append(node)
            self._launch(patroni, node)
            if index == 0 and not wait_for(lambda: self.leader() is not None, timeout):
                raise PatroniError(f"no leader was elected: {_tail(node.log_file)}")
        if not wait_for(self.healthy, timeout):
            raise PatroniError(
                "the standbys did not start streaming: "
                + " | ".join(_tail(node.log_file) for node in self.nodes)
            )

    def leader(self) -> PatroniNode | None:
        """The node whose PostgreSQL is the primary, by Patroni's own check."""
        return next((node for node in self.nodes if node.rest("primary") == 200), None)

    def healthy(self) -> bool:
        """One primary, every other node a streaming standby and one of them synchronous."""
        leader = self.leader()
        if leader is None:
            return False
        others = [node for node in self.nodes if node is not leader]
        return all(node.rest("replica") == 200 for node in others) and (
            not others or any(node.rest("sync") == 200 for node in others)
        )

    def kill_leader(self) -> PatroniNode:
        """``kill -9`` the leader's Patroni and its PostgreSQL (every backend with them)."""
        leader = self.leader()
        if leader is None or leader.process is None:
            raise PatroniError("there is no leader to kill")
        postmaster = leader.postmaster_pid()
        for pid in (leader.process.pid, postmaster):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
        leader.process.wait(5)
        wait_for(lambda: leader.postmaster_pid() is None, 10)
        return leader

    def wait_for_new_leader(self, old: PatroniNode, timeout: float) -> PatroniNode | None:
        found: list[PatroniNode] = []

        def promoted() -> bool:
            leader = self.leader()
            if leader is None or leader is old or not self._writable(leader):
                return False
            found.append(leader)
            return True

        return found[-1] if wait_for(promoted, timeout) else None

    def _writable(self, node: PatroniNode) -> bool:
        """The node's PostgreSQL has finished promotion (Patroni says primary a moment before)."""
        conninfo = psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=node.pg_port,
            user=SUPERUSER,
            password=self.password,
            dbname="postgres",
            connect_timeout=2,
            target_session_attrs="read-write",
        )
        try:
            with psycopg.connect(conninfo, autocommit=True):
                return True
        except psycopg.Error:
            return False

    def restart(self, node: PatroniNode, timeout: float = 90) -> None:
        """Start a stopped node again; Patroni rejoins it as a standby (``pg_rewind`` if needed)."""
        self._launch(find_tool("patroni"), node)
        if not wait_for(self.healthy, timeout):
            raise PatroniError(f"{node.name} did not rejoin: {_tail(node.log_file)}")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                stop_process_group(node.process.pid, 30)
            postmaster = node.postmaster_pid()
            if postmaster is not None:  # Patroni stops it; this is for a Patroni that could not
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(postmaster), signal.SIGKILL)
        if self.etcd is not None:
            self.etcd.stop()

    def _launch(self, patroni: str, node: PatroniNode) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(node.dir)}
        with node.log_file.open("ab") as log:
            node.process = subprocess.Popen(
                [patroni, str(node.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=node.dir,
                env=env,
                start_new_session=True,
                user=self.run_as.uid,
                group=self.run_as.gid,
                extra_groups=self.run_as.extra_groups,
            )

    def _config(self, node: PatroniNode) -> dict[str, object]:
        if self.etcd is None:
            raise PatroniError("start etcd before writing a node's configuration")
        address = f"127.0.0.1:{node.pg_port}"
        return {
            "scope": self.scope,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.rest_port}",
                "connect_address": f"127.0.0.1:{node.rest_port}",
            },
            "etcd3": {"hosts": [self.etcd.endpoint]},
            "bootstrap": {
                "dcs": {
                    "ttl": self.ttl,
                    "loop_wait": self.loop_wait,
                    "retry_timeout": self.retry_timeout,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "parameters": {"wal_log_hints": "on", "max_connections": 100},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": address,
                "connect_address": address,
                "data_dir": str(node.data_dir),
                "bin_dir": str(self.binaries.bin_dir),
                "pgpass": str(node.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": self.password},
                    "replication": {"username": REPLICATION_USER, "password": self.password},
                    "rewind": {"username": SUPERUSER, "password": self.password},
                },
                "pg_hba": [
                    "local all all trust",
                    f"host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
                "parameters": {
                    "unix_socket_directories": "",  # TCP only, as the rest of the dev stack
                    "password_encryption": "scram-sha-256",
                },
            },
            "tags": {"nofailover": False, "noloadbalance": False},
        }


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"
