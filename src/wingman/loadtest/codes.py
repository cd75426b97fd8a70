"""Where the harness reads one-time codes: the development stack's delivery log.

A development stack delivers codes with the ``log`` backend: one JSON line ``otp_code`` with the
request id and the code in the ``default`` worker's log. The harness signs its users in through
the real flow (request, delivery job, verify) and reads each code from that line, as a developer
would. Production refuses the ``log`` backend, so this source cannot exist on an appliance.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec


class _Line(msgspec.Struct):
    event: str = ""
    request_id: str = ""
    code: str = ""


_decoder = msgspec.json.Decoder(_Line)


class LogCodes:
    """Follows a worker log from its current end and hands out codes by request id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._codes: dict[str, str] = {}
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LogCodes:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no worker log (is the stack running?)")
        self._task = asyncio.create_task(self._follow(self.path.stat().st_size))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, offset: int) -> None:
        pending = b""
        while True:
            with self.path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if not chunk:
                await asyncio.sleep(0.05)
                continue
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            found = False
            for line in lines:
                if b'"otp_code"' not in line:
                    continue
                try:
                    parsed = _decoder.decode(line)
                except msgspec.DecodeError:
                    continue
                if parsed.event == "otp_code":
                    self._codes[parsed.request_id] = parsed.code
                    found = True
            if found:
                async with self._arrived:
                    self._arrived.notify_all()

    async def code(self, request_id: str, within: float = 30.0) -> str:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: request_id in self._codes)
            return self._codes.pop(request_id)
