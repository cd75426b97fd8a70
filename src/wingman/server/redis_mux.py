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

With a Sentinel URL (``redis+sentinel://``, wingman/redis_address.py) every (re)connect asks
the Sentinels, one after another, for the master's address (``SENTINEL
get-master-addr-by-name``) and checks with ``ROLE`` that the server reached is a master (a
Sentinel that has not heard of a failover yet names the old one). A ``READONLY`` reply means
the server was demoted under an open connection: that call and every pending one fail with a
:class:`~redis.exceptions.ConnectionError`, as redis-py's Sentinel client does, and the next
call finds the new master.

Scripts are run with ``EVALSHA``; after a ``NOSCRIPT`` (a restarted or flushed server) the
script is sent in full once and the call answered from that.

The event bus's publish script (per message posted and per streamed delta), the read cache's
version bump, its misses and stores (two scripts) and the web's job enqueue (SAQ's script,
``queues.PipelinedQueue``) use it too. Everything else (the rest of the job queue,
subscriptions, the polls of a read waiting for another's load) stays on redis-py.
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
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wingman.redis_address import SentinelAddress, is_sentinel_url, parse_sentinel_url

Reply = Any


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float, *, follows_master: bool = False) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        # Connected to a Sentinel-named master: READONLY means it was demoted; start again.
        self.follows_master = follows_master
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
                if self.follows_master and str(reply).startswith("READONLY"):
                    demoted = RedisConnectionError("The Redis master was demoted to a replica")
                    future.set_exception(demoted)
                    self._abandon(demoted)
                    return
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
    ``unix://``, with password and database as redis-py reads them), or to the master that the
    Sentinels of a ``redis+sentinel://`` URL name."""

    def __init__(self, url: str, *, timeout: float = 5.0, name: str = "wingman") -> None:
        self.url = url
        # A bad URL fails here, at start-up.
        self._sentinel: SentinelAddress | None = None
        if is_sentinel_url(url):
            self._sentinel = parse_sentinel_url(url)
            self._settings = _master_settings(self._sentinel)
        else:
            self._settings = _parse(url)
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
            if self._sentinel is None:
                protocol = await self._reach(self._settings["host"], self._settings["port"])
            else:
                protocol = await self._reach_master(self._sentinel)
            self._protocol = protocol
            return protocol

    async def _reach_master(self, sentinel: SentinelAddress) -> _Protocol:
        """Connected to the master the Sentinels name, asking each in turn until one names a
        server that is a master."""
        failures: list[str] = []
        for host, port in sentinel.sentinels:
            where = f"Sentinel {host}:{port}"
            try:
                master = await self._ask_sentinel(sentinel, host, port)
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                failures.append(f"{where}: {exc}")
                continue
            if master is None:
                failures.append(f"{where}: does not know {sentinel.master_name!r}")
                continue
            try:
                return await self._reach(master[0], master[1], must_be_master=True)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failures.append(f"{where} named {master[0]}:{master[1]}: {exc}")
        raise MasterNotFoundError(
            f"No Redis master for {sentinel.master_name!r}: {'; '.join(failures)}"
        )

    async def _ask_sentinel(
        self, sentinel: SentinelAddress, host: str, port: int
    ) -> tuple[str, int] | None:
        """``SENTINEL get-master-addr-by-name`` at one Sentinel (None: it knows no such name)."""
        protocol = await self._open_within(host, port, _Protocol(self.timeout))
        try:
            commands: list[tuple[Any, ...]] = []
            if sentinel.sentinel_password is not None:
                auth = [sentinel.sentinel_username] if sentinel.sentinel_username else []
                commands.append(("AUTH", *auth, sentinel.sentinel_password))
            commands.append(("SENTINEL", "get-master-addr-by-name", sentinel.master_name))
            reply = None
            for command in commands:
                reply = await self._set_up(protocol, command, self.timeout)
        finally:
            protocol._abandon(RedisConnectionError("Sentinel query done"))
        if not reply:
            return None
        return reply[0].decode(), int(reply[1])

    async def _reach(self, host: str, port: int, *, must_be_master: bool = False) -> _Protocol:
        """A connection to ``host:port`` with its set-up done (and ``ROLE`` checked)."""
        started = time.monotonic()
        protocol = await self._open_within(
            host, port, _Protocol(self.timeout, follows_master=must_be_master)
        )
        settings = self._settings
        hello: list[tuple[Any, ...]] = []
        if settings["password"] is not None:
            auth = [settings["username"]] if settings["username"] else []
            hello.append(("AUTH", *auth, settings["password"]))
        if settings["db"]:
            hello.append(("SELECT", settings["db"]))
        hello.append(("CLIENT", "SETNAME", self.name))
        if must_be_master:
            hello.append(("ROLE",))
        reply = None
        for command in hello:
            remaining = max(0.1, self.timeout - (time.monotonic() - started))
            reply = await self._set_up(protocol, command, remaining)
        if must_be_master and not (reply and reply[0] == b"master"):
            failure = RedisConnectionError(f"{host}:{port} is not a master (a failover is on)")
            protocol._abandon(failure)
            raise failure
        return protocol

    async def _set_up(self, protocol: _Protocol, command: tuple[Any, ...], within: float) -> Reply:
        """One set-up command's reply; any failure drops the connection."""
        try:
            return await asyncio.wait_for(self._send(protocol, command), within)
        except TimeoutError as exc:
            # A server busy past the timeout (a long script): a Redis error like any other
            # call's, never the bare TimeoutError callers do not expect.
            failure = RedisTimeoutError(f"No reply to the connection set-up within {within:.1f} s")
            protocol._abandon(failure)
            raise failure from exc
        except BaseException:
            protocol._abandon(RedisConnectionError("Redis refused the connection set-up"))
            raise

    async def _open_within(self, host: str, port: int, protocol: _Protocol) -> _Protocol:
        try:
            await asyncio.wait_for(self._open(host, port, protocol), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(
                f"Cannot connect to Redis ({type(exc).__name__}: {exc})"
            ) from exc
        return protocol

    async def _open(self, host: str, port: int, protocol: _Protocol) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        if settings["path"]:
            await loop.create_unix_connection(lambda: protocol, settings["path"])
        else:
            await loop.create_connection(
                lambda: protocol,
                host,
                port,
                ssl=ssl.create_default_context() if settings["tls"] else None,
            )


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


def _master_settings(sentinel: SentinelAddress) -> dict[str, Any]:
    """Connection settings for whichever server the Sentinels name (its address comes later)."""
    return {
        "tls": sentinel.tls,
        "path": None,
        "host": None,
        "port": None,
        "username": sentinel.username,
        "password": sentinel.password,
        "db": sentinel.db,
    }
