"""A Redis master, its replicas and a quorum of Sentinels on one address (loopback unless told),
run from the host's binary.

For failover tests and for trying ``redis+sentinel://`` settings locally. Each data server is a
:class:`~wingman.devstack.redis.RedisServer` (the role's own config) with replication lines
added; each Sentinel is ``redis-server <file> --sentinel`` with a file of its own, which it
rewrites as it learns the topology. Short ``down_after_ms`` / ``failover_timeout_ms`` make a
failover take seconds instead of the production defaults' half a minute or more.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError as RedisClientError

from wingman.devstack.binaries import find_redis
from wingman.devstack.processes import (
    RunAs,
    free_port,
    launch,
    read_pid,
    service_identity,
    stop_process_group,
    wait_for,
)
from wingman.devstack.redis import RedisError, RedisRole, RedisServer
from wingman.ops.templates import write_private


@dataclass
class SentinelProcess:
    """One Sentinel: ``dir/sentinel.conf`` (rewritten by the Sentinel), its log and pid."""

    dir: Path
    port: int
    binary: str
    run_as: RunAs
    host: str = "127.0.0.1"

    @property
    def conf_file(self) -> Path:
        return self.dir / "sentinel.conf"

    @property
    def pid_file(self) -> Path:
        return self.dir / "sentinel.pid"

    def client(self, password: str) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=password,
            socket_timeout=1,
            socket_connect_timeout=1,
        )


@dataclass
class SentinelGroup:
    """A master (``nodes[0]`` at first), ``replicas`` replicas and ``quorum`` + 1 Sentinels.

    The data servers and the Sentinels share ``password`` (``requirepass`` on both).
    """

    root: Path
    password: str
    master_name: str = "wingman"
    role: RedisRole = "queue"
    replicas: int = 1
    sentinel_count: int = 3
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    binary: str = field(default_factory=find_redis)
    run_as: RunAs = field(default_factory=service_identity)
    nodes: list[RedisServer] = field(default_factory=list)
    sentinels: list[SentinelProcess] = field(default_factory=list)
    # The address every server and Sentinel listens on, and the network namespace they run in
    # (empty: the machine's).
    host: str = "127.0.0.1"
    netns: str = ""

    def url(self, db: int = 0) -> str:
        """The ``redis+sentinel://`` URL the settings take for this group."""
        hosts = ",".join(f"{self.host}:{sentinel.port}" for sentinel in self.sentinels)
        return (
            f"redis+sentinel://:{self.password}@{hosts}/{self.master_name}/{db}"
            f"?sentinel_password={self.password}"
        )

    def start(self, timeout: float = 30) -> None:
        """Start everything and wait until every Sentinel sees the replicas and its peers."""
        for index in range(1 + self.replicas):
            node = RedisServer(
                self.root / f"node{index}",
                self.role,
                free_port(),
                self.password,
                host=self.host,
                netns=self.netns,
            )
            node.write_config()
            extra = [f'masterauth "{self.password}"']
            if index:
                extra.append(f"replicaof {self.host} {self.nodes[0].port}")
            with node.conf_file.open("a") as conf:
                conf.write("\n".join(extra) + "\n")
            self.nodes.append(node)
            node.start(timeout)
        if not wait_for(lambda: self._replicas_linked(self.nodes[0]), timeout):
            raise RedisError("sentinel group: the replicas did not catch up with the master")
        for index in range(self.sentinel_count):
            sentinel = SentinelProcess(
                self.root / f"sentinel{index}", free_port(), self.binary, self.run_as, self.host
            )
            self._start_sentinel(sentinel, timeout)
            self.sentinels.append(sentinel)
        if not wait_for(self._sentinels_agree, timeout):
            raise RedisError("sentinel group: the Sentinels did not find each other")

    def _start_sentinel(self, sentinel: SentinelProcess, timeout: float) -> None:
        sentinel.dir.mkdir(parents=True, exist_ok=True)
        self.run_as.own(sentinel.dir)
        name, master = self.master_name, self.nodes[0]
        lines = [
            f"bind {self.host}",
            f"port {sentinel.port}",
            "daemonize yes",
            f'dir "{sentinel.dir}"',
            f'pidfile "{sentinel.pid_file}"',
            f'logfile "{sentinel.dir / "sentinel.log"}"',
            f'requirepass "{self.password}"',
            f'sentinel sentinel-pass "{self.password}"',
            f"sentinel monitor {name} {self.host} {master.port} {self.quorum}",
            f'sentinel auth-pass {name} "{self.password}"',
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        write_private(sentinel.conf_file, "\n".join(lines) + "\n")
        self.run_as.own(sentinel.conf_file)
        argv, identity = launch(
            [self.binary, str(sentinel.conf_file), "--sentinel"], self.run_as, self.netns
        )
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=sentinel.dir,
            start_new_session=True,
            **identity,
        )
        if result.returncode != 0 or not wait_for(
            lambda: self._answers(sentinel.client(self.password)), timeout
        ):
            raise RedisError(
                f"sentinel did not start on port {sentinel.port}: {result.stderr.strip()}"
            )

    def master(self) -> RedisServer:
        """The data server the Sentinels currently name as master."""
        _, port = self._ask_any("SENTINEL", "get-master-addr-by-name", self.master_name)
        return next(node for node in self.nodes if node.port == int(port))

    def kill_master(self) -> RedisServer:
        """``kill -9`` the current master (no AOF flush, no goodbye to clients or replicas)."""
        master = self.master()
        pid = master.pid()
        if pid is None:
            raise RedisError("sentinel group: the master is not running")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: master.pid() is None, 5)
        return master

    def wait_for_new_master(self, old: RedisServer, timeout: float) -> RedisServer | None:
        """The new master once every Sentinel names it and it says it is one; None on timeout."""
        found: list[RedisServer] = []

        def promoted() -> bool:
            try:
                answers = {
                    tuple(
                        self._ask(sentinel, "SENTINEL", "get-master-addr-by-name", self.master_name)
                    )
                    for sentinel in self.sentinels
                }
            except RedisClientError:
                return False
            if len(answers) != 1:
                return False
            port = int(next(iter(answers))[1])
            if port == old.port:
                return False
            node = next(node for node in self.nodes if node.port == port)
            client = redis.Redis(
                host=self.host, port=port, password=self.password, socket_timeout=1
            )
            try:
                if client.execute_command("ROLE")[0] != b"master":  # type: ignore[no-untyped-call]
                    return False
            except RedisClientError:
                return False
            finally:
                client.close()
            found.append(node)
            return True

        return found[-1] if wait_for(promoted, timeout) else None

    def heal(self, timeout: float = 30) -> RedisServer:
        """Every server running again, the stopped ones as replicas of the current master, and
        every Sentinel seeing them healthy: ready for the next failover. Returns the master.

        A restarted former master still says it is the master until a Sentinel turns it into a
        replica, which Sentinel does only after 8 s (four publish periods); ``REPLICAOF`` here
        does at once what it would do. The master is asked again on every try, of every
        Sentinel, and the other servers pointed at it again (a no-op for those that follow it),
        so a view that changes meanwhile is followed: once in a full test run the single
        early answer led to a wait that timed out.
        """
        first = self.master()
        for node in self.nodes:
            if node is not first:
                node.start(timeout)
        healed: list[RedisServer] = []

        def linked() -> bool:
            master = self._agreed_master()
            if master is None:
                return False
            for node in self.nodes:
                if node is not master:
                    self._follow(node, master)
            if self._replicas_linked(master) and self._replicas_seen():
                healed.append(master)
                return True
            return False

        if not wait_for(linked, timeout, interval=0.5):
            raise RedisError("sentinel group: the replicas did not come back")
        return healed[-1]

    def _agreed_master(self) -> RedisServer | None:
        """The master every Sentinel names, None while they differ or one does not answer."""
        try:
            answers = {
                int(self._ask(sentinel, "SENTINEL", "get-master-addr-by-name", self.master_name)[1])
                for sentinel in self.sentinels
            }
        except RedisClientError:
            return None
        if len(answers) != 1:
            return None
        (port,) = answers
        return next((node for node in self.nodes if node.port == port), None)

    def _follow(self, node: RedisServer, master: RedisServer) -> None:
        client = redis.Redis(
            host=self.host, port=node.port, password=self.password, socket_timeout=1
        )
        try:
            client.execute_command("REPLICAOF", self.host, master.port)  # type: ignore[no-untyped-call]
        except RedisClientError:
            pass  # not serving yet: the next try
        finally:
            client.close()

    def _replicas_seen(self) -> bool:
        """Every Sentinel sees every replica up, linked to the master."""
        for sentinel in self.sentinels:
            try:
                replicas = self._ask(sentinel, "SENTINEL", "REPLICAS", self.master_name)
            except RedisClientError:
                return False
            healthy = [
                state
                for state in replicas
                if state[b"flags"] == b"slave" and state[b"master-link-status"] == b"ok"
            ]
            if len(healthy) != self.replicas:
                return False
        return True

    def stop(self) -> None:
        for sentinel in self.sentinels:
            pid = read_pid(sentinel.pid_file)
            if pid is not None:
                stop_process_group(pid, 10)
        for node in self.nodes:
            node.stop(10)

    def _ask(self, sentinel: SentinelProcess, *command: Any) -> Any:
        client = sentinel.client(self.password)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def _ask_any(self, *command: Any) -> Any:
        failures = []
        for sentinel in self.sentinels:
            try:
                return self._ask(sentinel, *command)
            except RedisClientError as exc:
                failures.append(str(exc))
        raise RedisError(f"sentinel group: no Sentinel answered: {'; '.join(failures)}")

    def _replicas_linked(self, master: RedisServer) -> bool:
        client = redis.Redis(
            host=self.host, port=master.port, password=self.password, socket_timeout=1
        )
        try:
            info = client.info("replication")
        except RedisClientError:
            return False
        finally:
            client.close()
        online = [
            value
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        ]
        return len(online) == self.replicas

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            try:
                state = self._ask(sentinel, "SENTINEL", "MASTER", self.master_name)
            except RedisClientError:
                return False
            if (int(state[b"num-slaves"]), int(state[b"num-other-sentinels"])) != (
                self.replicas,
                self.sentinel_count - 1,
            ):
                return False
        return True

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except RedisClientError:
            return False
        finally:
            client.close()
