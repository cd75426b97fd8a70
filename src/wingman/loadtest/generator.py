"""One generator process: a share of the simulated users, driven by the coordinator.

``wingmanctl bench load --generators K`` starts K of these (``python -m
wingman.loadtest.generator``), because one asyncio process spends about 0.6 of a core per
1,000 users and cannot drive a big host alone. The coordinator (``runner.py``) talks to each
over its standard streams, one JSON line or word a step:

1. stdin: a :class:`GeneratorPlan`; the generator starts its users over the ramp and writes
   :class:`Ramped` on stdout;
2. stdin ``measure``: samples count from now on (every generator starts measuring together);
3. stdin ``stop``: it counts the users still held, stops measuring, lets replies in flight
   drain and writes :class:`Finished` (its histograms, errors and the replies it posted) and
   exits. End of input counts as ``stop``, so a generator never outlives its coordinator.

Progress goes to stderr, which the generator shares with the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from pathlib import Path

import msgspec

from wingman.loadtest.codes import LogCodes
from wingman.loadtest.stats import EncodedRecorder, Recorder
from wingman.loadtest.user import Shared, SimUser

DRAIN_SECONDS = 60.0


class GeneratorPlan(msgspec.Struct, frozen=True):
    name: str
    base_url: str
    # The development stack's ``default`` worker log, where sign-in codes are delivered.
    codes_log: str
    first_index: int
    users: int
    ramp: float
    cycle_seconds: float
    run_tag: str


class Ramped(msgspec.Struct, frozen=True, tag=True):
    name: str


class Finished(msgspec.Struct, frozen=True, tag=True):
    name: str
    users_held: int
    measured: EncodedRecorder
    # AI message ids this generator's users posted, and how many of them the socket completed
    # more than once (a message's frames only reach its own user, so no other generator's).
    posted: list[str]
    completed_twice: int


Report = Ramped | Finished


async def _next_command(commands: asyncio.StreamReader) -> str:
    """The next word from the coordinator; end of input reads as ``stop``."""
    line = await commands.readline()
    return line.decode().strip() or "stop"


async def generate(plan: GeneratorPlan, commands: asyncio.StreamReader) -> Finished:
    """Run ``plan``'s users through ramp, measurement and drain, following ``commands``."""
    recorder = Recorder()
    stop = asyncio.Event()
    async with LogCodes(Path(plan.codes_log)) as codes:
        shared = Shared(
            base_url=plan.base_url,
            tls=ssl.create_default_context(),
            codes=codes,
            recorder=recorder,
            cycle_seconds=plan.cycle_seconds,
            stop=stop,
        )
        users = [SimUser(plan.first_index + n, shared, plan.run_tag) for n in range(plan.users)]
        tasks: list[asyncio.Task[None]] = []
        spacing = plan.ramp / max(1, plan.users)
        for user in users:
            tasks.append(asyncio.create_task(user.run()))
            await asyncio.sleep(spacing)
        _write(Ramped(name=plan.name))
        if await _next_command(commands) == "measure":
            recorder.measuring = True
            await _next_command(commands)  # "stop", or the end of input
        held = sum(1 for u in users if u.connected and not u.failed)
        recorder.measuring = False
        stop.set()
        done, still = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in still:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*still, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                recorder.error(f"user:{type(task.exception()).__name__}")
    return Finished(
        name=plan.name,
        users_held=held,
        measured=recorder.encode(),
        posted=list(shared.posted),
        completed_twice=sum(1 for n in shared.completions.values() if n > 1),
    )


_encoder = msgspec.json.Encoder()


def _write(report: Report) -> None:
    sys.stdout.buffer.write(_encoder.encode(report) + b"\n")
    sys.stdout.buffer.flush()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    plan = msgspec.json.decode(await commands.readline(), type=GeneratorPlan)
    _write(await generate(plan, commands))


if __name__ == "__main__":
    asyncio.run(_main())
