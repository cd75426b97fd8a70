"""The coordinator's side of K generator processes: start, pin, command, collect.

Each generator is pinned to a CPU of its own (``os.sched_setaffinity``) when there are at least
as many CPUs as generators, the last CPUs first, so that two generators never take turns on one
core while the scheduler moves the server's processes around them. With more generators than
CPUs nothing is pinned, and the results say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field

import msgspec

from wingman.loadtest.generator import Finished, GeneratorPlan, Ramped, Report

_decoder: msgspec.json.Decoder[Report] = msgspec.json.Decoder(Report)
# A generator's reports are one line each; its Finished line carries every reply id it posted.
LINE_LIMIT = 64 * 2**20


def split_users(users: int, generators: int) -> list[tuple[int, int]]:
    """(first user index, user count) per generator: shares differ by at most one user."""
    base, extra = divmod(users, generators)
    shares, first = [], 0
    for n in range(generators):
        count = base + (1 if n < extra else 0)
        shares.append((first, count))
        first += count
    return shares


def pick_cpus(generators: int, available: set[int]) -> list[int] | None:
    """A distinct CPU per generator, highest first; None when there are too few."""
    if generators > len(available):
        return None
    return sorted(available, reverse=True)[:generators]


async def _send(proc: asyncio.subprocess.Process, line: bytes) -> None:
    if proc.stdin is None:  # pragma: no cover - started with a pipe
        raise RuntimeError("a load generator has no input pipe")
    proc.stdin.write(line + b"\n")
    await proc.stdin.drain()


@dataclass
class Fleet:
    plans: list[GeneratorPlan]
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    cpus: list[int] | None = None
    pinning: str = ""

    @property
    def pids(self) -> dict[str, int]:
        return {plan.name: proc.pid for plan, proc in zip(self.plans, self.processes, strict=True)}

    async def start(self) -> None:
        available = os.sched_getaffinity(0)
        self.cpus = pick_cpus(len(self.plans), available)
        for index, plan in enumerate(self.plans):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wingman.loadtest.generator",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            self.processes.append(proc)
            if self.cpus is not None:
                os.sched_setaffinity(proc.pid, {self.cpus[index]})
            await _send(proc, msgspec.json.encode(plan))
        if self.cpus is not None:
            self.pinning = "each generator on a CPU of its own: " + ", ".join(
                f"{plan.name} on CPU {cpu}" for plan, cpu in zip(self.plans, self.cpus, strict=True)
            )
        else:
            self.pinning = (
                f"not pinned: {len(self.plans)} generators and only {len(available)} CPUs "
                "available to this process"
            )

    async def _report(self, proc: asyncio.subprocess.Process) -> Report:
        if proc.stdout is None:  # pragma: no cover - started with a pipe
            raise RuntimeError("a load generator has no output pipe")
        line = await proc.stdout.readline()
        if not line:
            code = await proc.wait()
            raise RuntimeError(f"a load generator exited (code {code}) before reporting")
        return _decoder.decode(line)

    async def wait_ramped(self) -> None:
        reports = await asyncio.gather(*(self._report(p) for p in self.processes))
        for report in reports:
            if not isinstance(report, Ramped):
                raise RuntimeError(f"generator {report.name} reported {report} before ramping up")

    async def send(self, command: str) -> None:
        for proc in self.processes:
            await _send(proc, command.encode())

    async def finish(self) -> list[Finished]:
        reports = await asyncio.gather(*(self._report(p) for p in self.processes))
        for proc in self.processes:
            await proc.wait()
        finished = [r for r in reports if isinstance(r, Finished)]
        if len(finished) != len(reports):
            raise RuntimeError("a load generator did not report its results")
        return finished

    async def close(self) -> None:
        """Stop any generator still running (after an error or a timeout)."""
        for proc in self.processes:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
