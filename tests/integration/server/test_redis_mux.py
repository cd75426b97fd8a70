"""The pipelined Redis connection on real Redis servers: replies reach their own callers under
concurrency, errors stay with their call, and it survives restarts, flushed scripts and
timeouts."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.support.services import PrivateServices
from wingman.config import Settings
from wingman.devstack.processes import free_port
from wingman.devstack.redis import RedisServer
from wingman.server.redis_mux import RedisMux

ECHO = "return {KEYS[1], ARGV[1]}"
# Busy for 0.6 s of wall time. From Redis 7.2 (and in Valkey) TIME stands still inside a script,
# so there the script's own CPU time (os.clock, absent before 7.2) ends it instead.
BUSY = """
local start = redis.call('TIME')
local os_lib = rawget(_G, 'os')
local cpu = os_lib and os_lib.clock()
while true do
    local now = redis.call('TIME')
    if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 600000 then return 1 end
    if cpu and os_lib.clock() - cpu > 0.45 then return 2 end
end
"""


@pytest.fixture
async def mux(settings: Settings) -> AsyncIterator[RedisMux]:
    connection = RedisMux(settings.redis.queue_url, timeout=2.0, name="tests-mux")
    yield connection
    await connection.close()


@pytest.fixture
def own_redis(services: PrivateServices) -> Iterator[RedisServer]:
    server = RedisServer(
        services.root / f"redis-{secrets.token_hex(4)}", "queue", free_port(), "pw-" + "y" * 16
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.binary(max_size=300), min_size=1, max_size=60))
async def test_concurrent_calls_get_their_own_replies(
    mux: RedisMux, redis_queue: Redis, values: list[bytes]
) -> None:
    prefix = f"tests:mux:{uuid.uuid4().hex}"
    for index, value in enumerate(values):
        await redis_queue.set(f"{prefix}:{index}", value, ex=60)
    await redis_queue.set(f"{prefix}:text", "not a number", ex=60)
    # Interleave successes, errors and script calls, all in flight at once.
    calls = []
    for index in range(len(values)):
        calls.append(mux.execute("GET", f"{prefix}:{index}"))
        calls.append(mux.execute("INCR", f"{prefix}:text"))
        calls.append(mux.evalsha(ECHO, [f"k{index}"], [index]))
    replies = await asyncio.gather(*calls, return_exceptions=True)
    for index, value in enumerate(values):
        got, failed, echoed = replies[3 * index : 3 * index + 3]
        assert got == value
        assert isinstance(failed, ResponseError)
        assert echoed == [f"k{index}".encode(), str(index).encode()]


async def test_an_error_reply_belongs_to_its_call(mux: RedisMux) -> None:
    with pytest.raises(ResponseError, match="unknown command"):
        await mux.execute("NO-SUCH-COMMAND")
    assert await mux.execute("PING") == b"PONG"


async def test_the_password_and_database_are_used(settings: Settings, redis_queue: Redis) -> None:
    url = settings.redis.queue_url.rsplit("/", 1)[0] + "/5"
    connection = RedisMux(url)
    key = f"tests:mux:db:{uuid.uuid4().hex}"
    try:
        await connection.execute("SET", key, "five", "EX", 60)
        assert await redis_queue.get(key) is None  # not in the client's database
        other = Redis.from_url(url)
        assert await other.get(key) == b"five"
        await other.aclose()
        assert await connection.execute("CLIENT", "GETNAME") == b"wingman"
    finally:
        await connection.close()
    wrong = RedisMux(settings.redis.queue_url.replace("://:", "://:wrong"))
    with pytest.raises(ResponseError):
        await wrong.execute("PING")


async def test_scripts_survive_a_flush(mux: RedisMux) -> None:
    assert await mux.evalsha(ECHO, ["a"], ["b"]) == [b"a", b"b"]
    await mux.execute("SCRIPT", "FLUSH")
    assert await mux.evalsha(ECHO, ["c"], ["d"]) == [b"c", b"d"]


async def test_a_restarted_server_is_reconnected(own_redis: RedisServer) -> None:
    connection = RedisMux(own_redis.url(), timeout=1.0)
    try:
        assert await connection.execute("PING") == b"PONG"
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await connection.execute("PING")
        with pytest.raises(RedisConnectionError):
            await connection.execute("PING")  # still down: refused, not hung
        own_redis.start()
        assert await connection.execute("PING") == b"PONG"
    finally:
        await connection.close()


async def test_a_server_still_loading_its_data_is_unavailable_not_an_error(
    own_redis: RedisServer,
) -> None:
    """After a restart Redis accepts connections before its AOF is read and answers every
    command with ``LOADING`` until then: callers see a connection error (the server is not there
    yet), and the dev stack's ``start()`` returns only once the server answers."""
    filler = Redis.from_url(own_redis.url())
    await filler.eval("for i = 1, 5000 do redis.call('SET', 'fill:' .. i, i) end", 0)
    await filler.bgrewriteaof()
    for _ in range(200):  # the rewrite takes milliseconds; at most 10 s
        if not (await filler.info("persistence"))["aof_rewrite_in_progress"]:
            break
        await asyncio.sleep(0.05)
    await filler.aclose()
    # Loading slowed to ~0.5 s (100 us per key), answering clients between every 1 kB read.
    with own_redis.conf_file.open("a") as conf:
        conf.write("key-load-delay 100\nloading-process-events-interval-bytes 1024\n")
    own_redis.stop()

    connection = RedisMux(own_redis.url(), timeout=1.0)
    starting = asyncio.ensure_future(asyncio.to_thread(own_redis.start))
    refusals: list[Exception] = []
    try:
        while not starting.done():
            try:
                await connection.execute("PING")
            except RedisConnectionError as exc:
                refusals.append(exc)
            await asyncio.sleep(0.02)
        await starting
        client = Redis.from_url(own_redis.url())
        # start() returned: the server is past loading, and every key is in.
        assert (await client.info("persistence"))["loading"] == 0
        assert await client.dbsize() == 5000
        await client.aclose()
        assert await connection.execute("PING") == b"PONG"
    finally:
        await connection.close()
    assert any(isinstance(exc, BusyLoadingError) for exc in refusals), refusals


async def test_a_timed_out_call_does_not_shift_later_replies(
    settings: Settings, redis_queue: Redis
) -> None:
    connection = RedisMux(settings.redis.queue_url, timeout=0.3)
    key = f"tests:mux:late:{uuid.uuid4().hex}"
    await redis_queue.set(key, "value", ex=60)
    try:
        # A script that keeps the server busy past the timeout; its late reply must go nowhere.
        slow = asyncio.ensure_future(connection.execute("EVAL", BUSY, 0))
        queued = asyncio.ensure_future(connection.execute("GET", key))
        with pytest.raises(RedisTimeoutError):
            await slow
        with pytest.raises((RedisConnectionError, RedisTimeoutError)):
            await queued
        # The script ends after 0.6 s of wall time; on a busy host later, so a call may still
        # time out for a while. What must never happen is a reply meant for another call.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            await asyncio.sleep(0.1)
            try:
                assert await connection.execute("GET", key) == b"value"
                break
            except (RedisConnectionError, RedisTimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
    finally:
        await connection.close()


async def test_a_connection_set_up_on_a_busy_server_times_out_as_a_redis_error(
    settings: Settings, redis_queue: Redis
) -> None:
    """The set-up commands (AUTH, SELECT, CLIENT SETNAME) of a new connection to a server busy
    past the timeout fail as a Redis timeout, which callers handle, not a bare TimeoutError."""
    connection = RedisMux(settings.redis.queue_url, timeout=0.2)
    # Every client's commands held for 0.6 s: the new connection's set-up gets no answer in time.
    await redis_queue.execute_command("CLIENT", "PAUSE", 600, "ALL")
    try:
        with pytest.raises(RedisTimeoutError):
            await connection.execute("PING")
    finally:
        await redis_queue.execute_command("CLIENT", "UNPAUSE")
        await connection.close()
    # Once the server is free again, the next call connects afresh.
    assert await connection.execute("PING") == b"PONG"
    await connection.close()


async def test_a_cancelled_caller_leaves_the_order_intact(
    mux: RedisMux, redis_queue: Redis
) -> None:
    key = f"tests:mux:cancel:{uuid.uuid4().hex}"
    await redis_queue.set(key, "mine", ex=60)
    first = asyncio.ensure_future(mux.execute("PING"))
    second = asyncio.ensure_future(mux.execute("GET", key))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == b"mine"
    assert await mux.execute("ECHO", "after") == b"after"
