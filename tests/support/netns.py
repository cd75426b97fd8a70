"""Network namespaces on one machine, each with its own address on a private bridge.

A multi-node topology for tests: every namespace gets a veth pair whose host end is on a bridge
that carries a private /24, and the machine's side of the bridge gets ``.1``, so the test process
reaches every namespace and every namespace reaches the others; nothing is routed beyond the
bridge. Names and the subnet are derived from the test process's pid, so two runs on one machine
do not meet. :meth:`Namespaces.remove` kills what still runs inside and removes every namespace
and the bridge; it is safe to call after a failed :meth:`Namespaces.create`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"wmprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Namespaces:
    """``names`` → namespace, each with an address in ``10.77.<n>.0/24``."""

    names: list[str]
    tag: str = field(default_factory=lambda: str(os.getpid() % 100000))
    created: list[str] = field(default_factory=list)
    bridge_made: bool = False

    @property
    def subnet(self) -> str:
        return f"10.77.{int(self.tag) % 200 + 20}"

    @property
    def network(self) -> str:
        return f"{self.subnet}.0/24"

    @property
    def gateway(self) -> str:
        """The machine's own address on the bridge (where the test process connects from)."""
        return f"{self.subnet}.1"

    @property
    def bridge(self) -> str:
        return f"wmbr{self.tag}"[:15]

    def netns(self, name: str) -> str:
        return f"wm{self.tag}-{name}"

    def address(self, name: str) -> str:
        return f"{self.subnet}.{10 + self.names.index(name)}"

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.bridge_made = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index, name in enumerate(self.names):
            netns = self.netns(name)
            _ip("netns", "add", netns)
            self.created.append(netns)
            host_end = f"wmv{self.tag}x{index}"[:15]
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", host_end, "master", self.bridge, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")

    def pids(self, name: str) -> list[int]:
        """Every process running inside namespace ``name``."""
        result = subprocess.run(
            ["ip", "netns", "pids", self.netns(name)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in result.stdout.split()]

    def kill_all(self, name: str) -> list[int]:
        """SIGKILL every process inside ``name`` (a node losing power); returns their pids."""
        pids = self.pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def remove(self) -> None:
        """Kill what runs inside, delete the namespaces (their veth ends go too) and the bridge."""
        for netns in reversed(self.created):
            name = netns.removeprefix(f"wm{self.tag}-")
            self.kill_all(name)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        self.created.clear()
        if self.bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            self.bridge_made = False
