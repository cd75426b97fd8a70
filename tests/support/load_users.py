"""A real HTTP/1.1 keep-alive server in the test, and a simulated load user pointed at it.

For the load generator's own tests: the server answers every request with one canned response,
counts the connections it accepts, and can run a hook before each answer (to stand for what
happens on the user's socket meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import Shared, SimUser


@dataclass
class KeepAliveServer:
    """Answers every request (its body read) with ``status`` and ``body``, as JSON."""

    status: bytes = b"200 OK"
    body: bytes = b"{}"
    close_after_each: bool = False
    before_answer: Callable[[], None] = field(default=lambda: None)
    port: int = 0
    accepted: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(_content_length(head))
                self.before_answer()
                writer.write(
                    b"HTTP/1.1 "
                    + self.status
                    + b"\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(self.body)}\r\n\r\n".encode()
                    + self.body
                )
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return int(value)
    return 0


@asynccontextmanager
async def serving(server: KeepAliveServer) -> AsyncIterator[KeepAliveServer]:
    """``server`` listening on a free loopback port for the duration of the block."""
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def sim_user(port: int, recorder: Recorder, tag: str) -> SimUser:
    """User 0 of a run against ``127.0.0.1:port``, with a token the server does not check."""
    shared = Shared(
        base_url=f"http://127.0.0.1:{port}",
        tls=None,
        codes=None,
        recorder=recorder,
        cycle_seconds=60.0,
        stop=asyncio.Event(),
    )
    return SimUser(0, shared, tag, token="not-checked")
