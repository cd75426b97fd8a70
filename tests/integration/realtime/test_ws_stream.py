"""The event stream over the WebSocket: fan-out, ping, resume, resync, back-pressure, limits."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed

from tests.integration.realtime.conftest import (
    REALTIME,
    close_code,
    open_socket,
    receive,
    send,
    token_of,
)
from tests.support.accounts import Caller
from wingman.domain.realtime import connection
from wingman.domain.realtime.events import EventBus
from wingman.domain.realtime.protocol import MAX_CLIENT_FRAME_BYTES, CloseCode


def small_receive_buffer(url: str) -> socket.socket:
    """A connected TCP socket with a small, fixed receive window: a client that stops reading
    pushes back on the server after kilobytes, not the megabytes autotuning allows."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", int(urlsplit(url).port or 0)))
    sock.setblocking(False)
    return sock


async def next_event(ws: Any) -> dict[str, Any]:
    """The next frame that is not a server heartbeat."""
    while (frame := await receive(ws))["type"] == "ping":
        pass
    return frame


async def started(ws: Any, last_event_id: int | None = None) -> dict[str, Any]:
    """Read ``hello`` and start the stream with ``resume``; returns the ``hello`` frame."""
    hello = await receive(ws)
    assert hello["type"] == "hello"
    await send(ws, {"type": "resume", "last_event_id": last_event_id})
    return hello


async def test_ping_is_answered_with_pong(ws_url: str, caller: Caller) -> None:
    async with open_socket(ws_url, token_of(caller)) as ws:
        await started(ws)
        assert (await next_event(ws))["type"] == "resumed"
        await send(ws, {"type": "ping"})
        assert await next_event(ws) == {"type": "pong", "data": {}}


async def test_live_events_reach_every_socket_of_the_user_only(
    ws_url: str, caller: Caller, bus: EventBus, engine: Any, ws_settings: Any
) -> None:
    from tests.support.accounts import create_caller

    other = await create_caller(engine, ws_settings)
    async with (
        open_socket(ws_url, token_of(caller)) as phone,
        open_socket(ws_url, token_of(caller)) as laptop,
        open_socket(ws_url, token_of(other)) as stranger,
    ):
        for ws in (phone, laptop, stranger):
            await started(ws)
            assert (await next_event(ws))["type"] == "resumed"
        event_id = await bus.publish(caller.id, "session.updated", {"session_id": "s1"})
        for ws in (phone, laptop):
            frame = await next_event(ws)
            assert (frame["event_id"], frame["type"], frame["data"]) == (
                event_id,
                "session.updated",
                {"session_id": "s1"},
            )
            assert frame["at"]
        await send(stranger, {"type": "ping"})
        assert (await next_event(stranger))["type"] == "pong"  # and no event before it


async def test_resume_returns_exactly_the_missed_events_once_and_in_order(
    ws_url: str, caller: Caller, bus: EventBus
) -> None:
    first = await bus.publish(caller.id, "message.delta", {"n": 0})
    for n in range(1, 3):
        await bus.publish(caller.id, "message.delta", {"n": n})
    async with open_socket(ws_url, token_of(caller)) as ws:
        hello = await receive(ws)
        assert hello["data"]["event_id"] == first + 2
        # Published after the subscription and before the replay: in the history *and* queued
        # live; the client must see each once.
        await bus.publish(caller.id, "message.delta", {"n": 3})
        await bus.publish(caller.id, "message.delta", {"n": 4})
        await send(ws, {"type": "resume", "last_event_id": first})
        replayed = [await next_event(ws) for _ in range(4)]
        assert [f["event_id"] for f in replayed] == [first + n for n in range(1, 5)]
        assert [f["data"]["n"] for f in replayed] == [1, 2, 3, 4]
        assert await next_event(ws) == {
            "type": "resumed",
            "data": {"event_id": first + 4, "replayed": 4},
        }
        await bus.publish(caller.id, "message.completed", {"n": 5})
        live = await next_event(ws)
        assert (live["event_id"], live["type"]) == (first + 5, "message.completed")


async def test_resume_beyond_the_history_asks_for_resync(
    ws_url: str, caller: Caller, bus: EventBus
) -> None:
    # The server keeps 20 events per user in these tests.
    ids = [await bus.publish(caller.id, "message.delta", {"n": n}) for n in range(25)]
    async with open_socket(ws_url, token_of(caller)) as ws:
        await started(ws, last_event_id=ids[0])
        assert await next_event(ws) == {"type": "resync_required", "data": {"event_id": ids[-1]}}
        await bus.publish(caller.id, "session.updated", {})
        assert (await next_event(ws))["event_id"] == ids[-1] + 1
    async with open_socket(ws_url, token_of(caller)) as ws:
        # An id the server never issued (the sequence was lost): resync too.
        await started(ws, last_event_id=ids[-1] + 500)
        assert (await next_event(ws))["type"] == "resync_required"


async def test_malformed_client_frame_closes_4000(ws_url: str, caller: Caller) -> None:
    async with open_socket(ws_url, token_of(caller)) as ws:
        await started(ws)
        await ws.send("{not json")
        assert await close_code(ws) == CloseCode.BAD_FRAME


async def test_a_client_that_does_not_read_is_closed_while_others_keep_up(
    ws_url: str, caller: Caller, bus: EventBus, socket_logs: list[dict[str, Any]]
) -> None:
    async with (
        open_socket(ws_url, token_of(caller)) as reader,
        open_socket(
            ws_url, token_of(caller), max_queue=1, sock=small_receive_buffer(ws_url)
        ) as sleeper,
    ):
        for ws in (reader, sleeper):
            await started(ws)
        assert (await next_event(reader))["type"] == "resumed"
        # 8 MB: more than the kernel buffers of the sleeper's connection (4 MB at most here)
        # and its outbound queue together.
        payload = "x" * 4000
        count = 2000
        received = 0

        async def read_all() -> None:
            # A well-behaved client: it answers the server's heartbeat pings while it reads.
            nonlocal received
            while received < count:
                frame = await receive(reader)
                if frame["type"] == "ping":
                    await send(reader, {"type": "pong"})
                elif "event_id" in frame:
                    received += 1

        reading = asyncio.create_task(read_all())
        async with asyncio.timeout(60):
            for n in range(count):
                await bus.publish(caller.id, "message.delta", {"n": n, "text": payload})
                # A brisk stream the reader keeps up with: never more than half the outbound
                # queue (64 here) ahead of it, however slow the host is at the moment. The
                # sleeper falls behind by the whole stream.
                while n + 1 - received > REALTIME.outbound_queue_size // 2:  # noqa: ASYNC110  # polls a counter
                    await asyncio.sleep(0.002)
                if n % 100 == 0:
                    # The sleeper does not read but still writes (a client whose screen froze):
                    # it is closed for being slow, not for a heartbeat timeout.
                    with contextlib.suppress(ConnectionClosed):
                        await send(sleeper, {"type": "pong"})
            await reading
        assert received == count
        # The server closed it for being slow; the close frame itself reaches the client only
        # if it reads again within ``close_timeout_seconds``, else the connection is dropped.
        assert await close_code(sleeper, within=15) in (CloseCode.TOO_SLOW, 1006)
        closed = await closed_lines(socket_logs, 1)
        assert [entry["code"] for entry in closed] == [CloseCode.TOO_SLOW]


async def test_opening_more_sockets_than_allowed_closes_the_oldest(
    ws_url: str, caller: Caller
) -> None:
    # The limit is 3 per user in these tests. Each socket is registered before its ``hello``.
    sockets = [open_socket(ws_url, token_of(caller)) for _ in range(4)]
    opened = []
    for pending in sockets:
        ws = await pending.__aenter__()
        assert (await receive(ws))["type"] == "hello"
        opened.append(ws)
    oldest, *rest = opened
    try:
        assert await close_code(oldest) == CloseCode.REPLACED
        for ws in rest:
            await send(ws, {"type": "ping"})
            assert (await next_event(ws))["type"] == "pong"
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)


async def test_heartbeat_pings_and_closes_a_silent_peer(ws_url: str, caller: Caller) -> None:
    # Interval 1 s, timeout 3 s in these tests.
    async with (
        open_socket(ws_url, token_of(caller)) as silent,
        open_socket(ws_url, token_of(caller)) as alive,
    ):
        await started(silent)
        await started(alive)
        assert (await receive(silent))["type"] == "resumed"
        assert (await receive(silent, within=3))["type"] == "ping"
        assert (await receive(alive))["type"] == "resumed"

        async def answer_pings() -> None:
            while True:
                if (await receive(alive))["type"] == "ping":
                    await send(alive, {"type": "pong"})

        answering = asyncio.create_task(answer_pings())
        try:
            assert await close_code(silent) == CloseCode.HEARTBEAT_TIMEOUT
            assert not answering.done()  # the answering peer is still open
        finally:
            answering.cancel()


@pytest.fixture
def socket_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the socket handler logs during the test. Its module logger was cached with the
    output of an earlier test; a fresh one, first used here, reaches ``capture_logs``."""
    with capture_logs() as logs:
        monkeypatch.setattr(connection, "log", structlog.get_logger(connection.__name__))
        yield logs


async def closed_lines(logs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``realtime_socket_closed`` entries, once ``count`` are there (the handler logs just
    after the close frame went out)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        closed = [entry for entry in logs if entry["event"] == "realtime_socket_closed"]
        if len(closed) >= count or asyncio.get_running_loop().time() > deadline:
            return closed
        await asyncio.sleep(0.05)


async def test_deeply_nested_frame_closes_4000_with_one_log_line(
    ws_url: str,
    caller: Caller,
    socket_logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Under the size cap, but nested far deeper than the decoder's recursion limit.
    depth = 5000
    frame = '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"
    assert len(frame) < MAX_CLIENT_FRAME_BYTES
    async with open_socket(ws_url, token_of(caller)) as ws:
        await started(ws)
        await ws.send(frame)
        assert await close_code(ws) == CloseCode.BAD_FRAME
    closed = await closed_lines(socket_logs, 1)
    assert [(entry["code"], entry["log_level"]) for entry in closed] == [(4000, "info")]
    assert [entry for entry in socket_logs if entry["log_level"] != "info"] == []
    assert not [record for record in caplog.records if record.exc_info]


async def test_frames_over_the_cap_close_1009_before_decoding(
    ws_url: str,
    caller: Caller,
    socket_logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames: list[str | bytes] = [
        "[" * 100_000,
        '{"type": "auth", "token": "' + "x" * MAX_CLIENT_FRAME_BYTES + '"}',
        b"\x00" * (MAX_CLIENT_FRAME_BYTES + 1),
    ]
    for frame in frames:
        async with open_socket(ws_url, token_of(caller), max_size=None) as ws:
            await started(ws)
            await ws.send(frame)
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG
    # Before authenticating too: the first frame is read under the same cap.
    async with open_socket(ws_url, max_size=None) as ws:
        await ws.send("{" * 100_000)
        assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG
    closed = await closed_lines(socket_logs, 4)
    assert [entry["code"] for entry in closed] == [1009] * 4
    assert [entry for entry in socket_logs if entry["log_level"] != "info"] == []
    assert not [record for record in caplog.records if record.exc_info]
