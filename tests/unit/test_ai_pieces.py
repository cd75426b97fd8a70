"""Pure parts of the AI pipeline: the offline provider, delta coalescing, backoff, SSE errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from tests.support.polling import eventually
from wingman.config import AiSettings
from wingman.domain.ai.generation import DeltaCoalescer, backoff
from wingman.domain.ai.offline import PHRASES, OfflineProvider, compose, topic_of
from wingman.domain.ai.openai import error_message, retry_after_seconds
from wingman.domain.ai.provider import PromptMessage, ReplyRequest, TextDelta, Usage

TONES = sorted(PHRASES)


def request(text: str, tone: str | None = "friendly", length: str = "medium") -> ReplyRequest:
    return ReplyRequest(
        messages=[PromptMessage("system", "Be nice."), PromptMessage("user", text)],
        model="wingman-offline",
        max_tokens=256,
        temperature=0.8,
        tone=tone,
        reply_length=length,
    )


@given(st.text(max_size=300), st.sampled_from([*TONES, None, "unknown-tone"]))
def test_offline_replies_are_deterministic(text: str, tone: str | None) -> None:
    first = compose(request(text, tone))
    assert first == compose(request(text, tone))
    assert first.strip()


@given(st.text(min_size=1, max_size=200))
def test_every_tone_writes_a_different_reply(text: str) -> None:
    replies = {tone: compose(request(text, tone)) for tone in TONES}
    assert len(set(replies.values())) == len(TONES)


def test_length_preference_changes_the_reply_size() -> None:
    words = {
        length: len(compose(request("How was the concert?", length=length)).split())
        for length in ("short", "medium", "long")
    }
    assert words["short"] < words["medium"] < words["long"]


def test_topic_is_taken_from_the_message() -> None:
    assert topic_of("I went sailing yesterday") == "yesterday"
    assert topic_of("ok 123") == "that"
    assert "sailing" in compose(request("sailing sailing sailing"))


async def test_offline_stream_ends_with_usage_and_respects_max_tokens() -> None:
    provider = OfflineProvider(token_interval_ms=0)
    limited = ReplyRequest(
        messages=[PromptMessage("user", "Hello there")],
        model="m",
        max_tokens=5,
        temperature=0.5,
        tone="witty",
    )
    items = [item async for item in provider.stream(limited)]
    deltas = [i for i in items if isinstance(i, TextDelta)]
    assert len(deltas) == 5
    assert items[-1] == Usage(model="wingman-offline", tokens_in=3, tokens_out=5)
    assert "".join(d.text for d in deltas) == " ".join(compose(limited).split(" ")[:5])


async def test_coalescer_sends_first_piece_at_once_then_batches() -> None:
    sent: list[tuple[int, str]] = []

    async def send(offset: int, text: str) -> None:
        sent.append((offset, text))

    coalescer = DeltaCoalescer(send, interval=60.0, max_pieces=3)
    for piece in ["a", "b", "c", "d", "e"]:
        await coalescer.add(piece)
    await coalescer.flush()
    assert sent == [(0, "a"), (1, "bcd"), (4, "e")]
    coalescer.restart()
    await coalescer.add("x")
    assert sent[-1] == (0, "x")


def recorded() -> tuple[list[str], DeltaCoalescer]:
    """A coalescer with a 50 ms tick, and the texts it sends."""
    sent: list[str] = []

    async def send(offset: int, text: str) -> None:
        sent.append(text)

    return sent, DeltaCoalescer(send, interval=0.05, max_pieces=100)


async def test_coalescer_sends_at_the_next_tick_without_another_piece() -> None:
    sent, coalescer = recorded()
    await coalescer.add("a")
    await coalescer.add("b")
    await coalescer.add("c")
    assert sent == ["a"]
    await asyncio.sleep(0.12)  # a tick passing is what is tested
    assert sent == ["a", "bc"]
    await coalescer.add("d")
    await coalescer.flush()
    assert sent == ["a", "bc", "d"]


async def test_coalescers_share_one_clock() -> None:
    # Two replies whose pieces arrive at different moments send on the same tick: one turn of
    # the event loop, so their publishes share one write to the queue Redis.
    loop = asyncio.get_running_loop()
    sent: list[tuple[str, float]] = []

    def sender(name: str) -> Callable[[int, str], Awaitable[None]]:
        async def send(offset: int, text: str) -> None:
            sent.append((name + text, loop.time()))

        return send

    interval = 0.2
    one = DeltaCoalescer(sender("one:"), interval, max_pieces=100)
    two = DeltaCoalescer(sender("two:"), interval, max_pieces=100)
    await one.add("a")
    await two.add("a")
    # Just past a boundary, so that both later pieces fall within one tick.
    await asyncio.sleep(interval - loop.time() % interval + 0.01)
    await one.add("b")
    await asyncio.sleep(0.03)
    await two.add("b")
    await asyncio.sleep(interval)
    ticked = [(text, at) for text, at in sent if text.endswith("b")]
    assert [text for text, _ in ticked] == ["one:b", "two:b"]
    ticks = {round(at / interval) for _, at in ticked}
    assert len(ticks) == 1, ticked


async def test_a_cancelled_coalescer_sends_nothing_more() -> None:
    sent, coalescer = recorded()
    await coalescer.add("a")
    await coalescer.add("b")
    coalescer.cancel()
    await asyncio.sleep(0.12)
    assert sent == ["a"]


async def test_cancelling_stops_every_send_in_flight() -> None:
    # A send slower than the interval: the next tick's send waits behind it. Cancelling the
    # reply stops both, so no delta follows its end.
    started: list[str] = []
    cancelled: list[str] = []
    sent: list[str] = []

    async def send(offset: int, text: str) -> None:
        started.append(text)
        if text != "a":
            try:
                await asyncio.sleep(0.3)
            except asyncio.CancelledError:
                cancelled.append(text)
                raise
        sent.append(text)

    async def seen(found: list[str], text: str) -> bool:
        return text in found

    coalescer = DeltaCoalescer(send, interval=0.05, max_pieces=100)
    await coalescer.add("a")
    await coalescer.add("b")
    await eventually(lambda: seen(started, "b"), 5.0, "b's send to start on its tick")
    await coalescer.add("c")
    await asyncio.sleep(0.08)  # c's tick fires and its send waits behind b's
    coalescer.cancel()
    await eventually(lambda: seen(cancelled, "b"), 5.0, "b's send to be cancelled")
    await asyncio.sleep(0.05)  # had c's send survived, it would start as b's lets go
    assert started == ["a", "b"]
    assert sent == ["a"]


def test_backoff_grows_and_is_capped_and_retry_after_wins() -> None:
    settings = AiSettings(retry_delay=0.5, retry_max_delay=3.0)
    assert [backoff(settings, n, None) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff(settings, 0, 2.5) == 2.5
    assert backoff(settings, 0, 60.0) == 3.0


def test_retry_after_accepts_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp()) == 30.0


def test_error_message_prefers_the_providers_message() -> None:
    assert error_message(b'{"error": {"message": "bad key"}}') == "bad key"
    assert error_message(b'{"error": "plain"}') == "plain"
    assert error_message(b"<html>oops</html>") == "<html>oops</html>"
    assert error_message(b"") == "(empty body)"
