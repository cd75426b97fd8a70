"""The moving-window limiter on real Redis: exact allowances, all-or-nothing across scopes, the
budget figures, and the same window layout the ``limits`` package reads."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from wingman.config import Settings
from wingman.server.errors import Problem
from wingman.server.ratelimit import KEY_PREFIX, RateLimiter, RateRule
from wingman.server.redis import RedisClients


@pytest.fixture
async def limiter(settings: Settings) -> AsyncIterator[RateLimiter]:
    clients = RedisClients.from_settings(settings.redis, process="tests")
    yield RateLimiter.on_redis(clients)
    await clients.close()


def fresh_id() -> str:
    return uuid.uuid4().hex


async def test_exactly_the_allowance_then_a_refusal(limiter: RateLimiter) -> None:
    rule = RateRule.parse("test:exact", "3/minute")
    who = fresh_id()
    decisions = [await limiter.hit(rule, who) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    # The oldest hit leaves the window in (just under) a minute.
    assert 58 <= decisions[-1].reset_after <= 60
    assert decisions[-1].headers()["Retry-After"] == str(decisions[-1].reset_after)
    # Someone else's window is untouched.
    assert (await limiter.hit(rule, fresh_id())).remaining == 2


async def test_a_refusal_counts_in_no_scope(limiter: RateLimiter) -> None:
    chat, ai = RateRule.parse("test:chat", "5/minute"), RateRule.parse("test:ai", "1/minute")
    who = fresh_id()
    await limiter.enforce((chat, who), (ai, who))
    with pytest.raises(Problem) as refused:
        await limiter.enforce((chat, who), (ai, who))
    assert refused.value.status_code == 429
    assert refused.value.extra["scope"] == "test:ai"
    # The refused request spent nothing of the chat allowance.
    refused_index, decisions = await limiter.hit_all([(chat, who)])
    assert refused_index is None
    assert decisions[0].remaining == 3  # 5 - the first request - this one


async def test_a_check_reads_keys_in_the_same_call(
    limiter: RateLimiter, settings: Settings
) -> None:
    rule = RateRule.parse("test:reading", "1/minute")
    who, present, missing = fresh_id(), f"test:read:{fresh_id()}", f"test:read:{fresh_id()}"
    clients = RedisClients.from_settings(settings.redis, process="tests")
    try:
        await clients.queue.set(present, b"41")
        decision, values = await limiter.check_reading(rule, who, [present, missing])
        assert decision is not None
        assert decision.allowed
        assert decision.remaining == 0
        assert values == [b"41", None]
        # A refused hit still reads, and counts nothing.
        decision, values = await limiter.check_reading(rule, who, [present])
        assert decision is not None
        assert not decision.allowed
        assert values == [b"41"]
        refused, _, values = await limiter.hit_all_reading([(rule, who)], [])
        assert refused == 0
        assert values == []
    finally:
        await clients.queue.delete(present)
        await clients.close()


async def test_the_first_full_window_is_named(limiter: RateLimiter) -> None:
    one, two = RateRule.parse("test:one", "1/hour"), RateRule.parse("test:two", "1/hour")
    who = fresh_id()
    await limiter.hit_all([(one, who), (two, who)])
    refused_index, decisions = await limiter.hit_all([(one, who), (two, who)])
    assert refused_index == 0
    assert not any(d.allowed for d in decisions)
    assert 3590 <= decisions[0].reset_after <= 3600


async def test_limits_reads_the_same_window(limiter: RateLimiter, settings: Settings) -> None:
    """Kept in the ``limits`` layout: its own moving-window reader sees our hits."""
    rule = RateRule.parse("test:layout", "10/minute")
    who = fresh_id()
    for _ in range(4):
        await limiter.hit(rule, who)
    storage = RedisStorage(
        "async+" + settings.redis.queue_url, implementation="redispy", key_prefix=KEY_PREFIX
    )
    _, remaining = await MovingWindowRateLimiter(storage).get_window_stats(
        rule.item, rule.scope, who
    )
    assert remaining == 6
    await limiter.clear(rule, who)
    assert (await limiter.hit(rule, who)).remaining == 9


async def test_hits_leave_the_window_when_it_passes(limiter: RateLimiter) -> None:
    rule = RateRule.parse("test:second", "2/second")
    who = fresh_id()
    assert (await limiter.hit(rule, who)).allowed
    assert (await limiter.hit(rule, who)).allowed
    assert not (await limiter.hit(rule, who)).allowed
    await asyncio.sleep(1.05)  # the window passing is what is tested: let the second go by
    again = await limiter.hit(rule, who)
    assert again.allowed
    assert again.remaining == 1


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    allowances=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    requests=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), max_size=20),
)
async def test_matches_a_model_of_the_windows(
    limiter: RateLimiter, allowances: list[int], requests: list[list[bool]]
) -> None:
    """Within one window: a request is counted iff every scope it names has room, and then in
    all of them; remaining is the allowance minus what was counted."""
    who = fresh_id()
    rules = [RateRule.parse(f"test:model{i}", f"{n}/hour") for i, n in enumerate(allowances)]
    used = [0] * len(rules)
    for picks in requests:
        chosen = [i for i in range(len(rules)) if picks[i % len(picks)]] or [0]
        refused, decisions = await limiter.hit_all([(rules[i], who) for i in chosen])
        full = [i for i in chosen if used[i] >= allowances[i]]
        assert (refused is None) == (not full)
        if full:
            assert refused == chosen.index(full[0])
        else:
            for i in chosen:
                used[i] += 1
        for i, decision in zip(chosen, decisions, strict=True):
            assert decision.remaining == allowances[i] - used[i]


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    allowances=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    steps=st.lists(
        st.tuples(
            # Seconds before the request: often none, sometimes exactly a window's length.
            st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0, 9.5, 10.0, 10.5, 25.0]),
            st.lists(st.booleans(), min_size=3, max_size=3),
        ),
        max_size=30,
    ),
)
async def test_matches_a_moving_window_as_time_passes(
    settings: Settings,
    allowances: list[int],
    steps: list[tuple[float, list[bool]]],
) -> None:
    """Against a plain model of moving windows of 10 s: a request is counted iff every scope it
    names holds fewer than its allowance of counted hits from the last 10 s (a hit exactly 10 s
    old still counts), and then in all of them; remaining and reset follow from that model."""
    clock = Clock()
    clients = RedisClients.from_settings(settings.redis, process="tests")
    limiter = RateLimiter(clients.queue, clients.queue_mux, clock=clock)
    try:
        who = fresh_id()
        rules = [
            RateRule.parse(f"test:moving{i}", f"{n}/10 seconds") for i, n in enumerate(allowances)
        ]
        counted: list[list[float]] = [[] for _ in rules]
        for pause, picks in steps:
            clock.now += pause
            chosen = [i for i in range(len(rules)) if picks[i]] or [0]
            window = {i: [t for t in counted[i] if t >= clock.now - 10] for i in chosen}
            full = [i for i in chosen if len(window[i]) >= allowances[i]]
            refused, decisions = await limiter.hit_all([(rules[i], who) for i in chosen])
            assert refused == (chosen.index(full[0]) if full else None)
            for i, decision in zip(chosen, decisions, strict=True):
                if not full:
                    counted[i].append(clock.now)
                    window[i].append(clock.now)
                assert decision.allowed is (not full)
                assert decision.remaining == allowances[i] - len(window[i])
                oldest = min(window[i], default=clock.now)
                assert decision.reset_after == max(1, math.ceil(oldest + 10 - clock.now))
    finally:
        await clients.close()
