"""One pipelined Redis connection per process and role, for the calls every request makes.

A cached read answers after two Redis calls (the request limiter's script, which also brings
the read cache's version, and the read cache's ``GET``). Through redis-py each call checks a
connection out of the pool, arms a timeout, goes through the retry wrapper and the client's
observability hooks, writes, reads and checks the connection back in.
scripts/bench_redis_mux.py measures the CPU of both ways per call; with 16 calls in flight on the
2-core benchmark host the pipelined connection spends a fraction of redis-py's
(bench/results/*-redis-mux.md).

:class:`RedisMux` keeps one connection. Commands asked for in the same turn of the event loop
leave together in one write at the end of that turn (a system call costs more than the rest of a
call on a virtual machine); Redis answers in order, so replies are matched to callers first in,
first out, many of them from one read. Replies are parsed by ``hiredis``.

Only single commands with one reply each are allowed (no SUBSCRIBE, no blocking commands, no
MULTI): anything else would break the order. Errors are redis-py's exceptions, so callers handle
both clients alike:

- an error reply raises :class:`redis.exceptions.ResponseError` for that caller only, except
  ``LOADING`` (a restarted server still reading its data), which raises redis-py's
  :class:`~redis.exceptions.BusyLoadingError`, a connection error: the server is not there yet;
- a lost connection fails every pending call with :class:`redis.exceptions.ConnectionError`;
  the next call reconnects;
- a call not answered within ``timeout`` raises :class:`redis.exceptions.TimeoutError` and
  drops the connection (a late reply would otherwise go to the wrong caller).

Scripts are run with ``EVALSHA``; after a ``NOSCRIPT`` (a restarted or flushed server) the
script is sent in full once and the call answered from that.

The event bus's publish script (per message posted and per streamed delta) and the read
cache's version bump use it too. Everything else (the job queue, subscriptions, cache misses and
stores) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        # Callers in the order their commands were sent, each with the time its reply is due by.
        self.waiting: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.timeout = timeout
        # Commands asked for in this turn of the event loop, written together at its end.
        self.outgoing: list[bytes] = []
        # One timer for the whole connection instead of one per call: replies come in order, so
        # only the oldest caller can be overdue, and the timer sleeps until its deadline.
        self._watchdog: asyncio.TimerHandle | None = None

    def call(self, command: bytes) -> asyncio.Future[Reply]:
        """Queue ``command``; the future gets its reply (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self.waiting.append((future, loop.time() + self.timeout))
        if not self.outgoing:
            loop.call_soon(self.flush)
        self.outgoing.append(command)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check_overdue)
        return future

    def flush(self) -> None:
        commands, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(commands))

    def _check_overdue(self) -> None:
        self._watchdog = None
        if self.lost or not self.waiting:
            return
        loop = asyncio.get_running_loop()
        future, due = self.waiting[0]
        if due > loop.time():
            self._watchdog = loop.call_at(due, self._check_overdue)
            return
        if not future.done():
            future.set_exception(RedisTimeoutError(f"No reply from Redis within {self.timeout} s"))
        # Later replies would go to the wrong callers: start again on a new connection.
        self._abandon(RedisConnectionError("Dropped after a Redis call timed out"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:  # a reply nobody asked for: the stream is out of step
                self._abandon(RedisConnectionError("Redis sent an unexpected reply"))
                return
            future, _ = self.waiting.popleft()
            if future.done():  # its caller was cancelled; the reply is its, and dropped
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._abandon(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def _abandon(self, error: Exception) -> None:
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class RedisMux:
    """A pipelined connection to the Redis server of ``url`` (``redis://``, ``rediss://`` or
    ``unix://``, with password and database as redis-py reads them)."""

    def __init__(self, url: str, *, timeout: float = 5.0, name: str = "wingman") -> None:
        self.url = url
        self._settings = _parse(url)  # a bad URL fails here, at start-up
        self.timeout = timeout
        self.name = name
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._scripts: dict[str, bytes] = {}
        # Called with each answered call's seconds (the Redis latency histogram).
        self.observe: Callable[[float], None] | None = None

    async def execute(self, *args: str | bytes | int | float) -> Reply:
        """Send one command and wait for its reply."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        if self.observe is None:
            return await self._send(protocol, args)
        start = time.perf_counter()
        try:
            return await self._send(protocol, args)
        finally:
            self.observe(time.perf_counter() - start)

    async def evalsha(
        self, script: str, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Reply:
        """Run ``script`` (by its digest; in full once after a ``NOSCRIPT``)."""
        digest = self._scripts.get(script)
        if digest is None:
            digest = self._scripts[script] = _digest(script)
        try:
            return await self.execute("EVALSHA", digest, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Reply]:
        if protocol.transport is None:
            raise RedisConnectionError("Not connected to Redis")
        return protocol.call(hiredis.pack_command(args))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            started = time.monotonic()
            try:
                protocol = await asyncio.wait_for(self._open(), self.timeout)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(
                    f"Cannot connect to Redis ({type(exc).__name__}: {exc})"
                ) from exc
            settings = self._settings
            remaining = max(0.1, self.timeout - (time.monotonic() - started))
            hello: list[tuple[Any, ...]] = []
            if settings["password"] is not None:
                auth = [settings["username"]] if settings["username"] else []
                hello.append(("AUTH", *auth, settings["password"]))
            if settings["db"]:
                hello.append(("SELECT", settings["db"]))
            hello.append(("CLIENT", "SETNAME", self.name))
            try:
                for command in hello:
                    await asyncio.wait_for(self._send(protocol, command), remaining)
            except TimeoutError as exc:
                # A server busy past the timeout (a long script): a Redis error like any other
                # call's, never the bare TimeoutError callers do not expect.
                failure = RedisTimeoutError(
                    f"No reply to the connection set-up within {remaining:.1f} s"
                )
                protocol._abandon(failure)
                raise failure from exc
            except BaseException:
                protocol._abandon(RedisConnectionError("Redis refused the connection set-up"))
                raise
            self._protocol = protocol
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        settings = self._settings

        def make() -> _Protocol:
            return _Protocol(self.timeout)

        if settings["path"]:
            _, protocol = await loop.create_unix_connection(make, settings["path"])
        else:
            _, protocol = await loop.create_connection(
                make,
                settings["host"],
                settings["port"],
                ssl=ssl.create_default_context() if settings["tls"] else None,
            )
        return protocol


def _error(reply: ResponseError) -> Exception:
    """The exception redis-py raises for this error reply (only the one callers tell apart)."""
    message = str(reply)
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return reply


def _digest(script: str) -> bytes:
    """The name Redis knows a script by (SHA-1 is Redis's choice, not a security measure)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()


def _parse(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"Unsupported Redis URL scheme: {parsed.scheme!r}")
    db = parsed.path.lstrip("/") if parsed.scheme != "unix" else ""
    query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
    return {
        "tls": parsed.scheme == "rediss",
        "path": parsed.path if parsed.scheme == "unix" else None,
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 6379,
        "username": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password is not None else None,
        "db": int(query.get("db") or db or 0),
    }
