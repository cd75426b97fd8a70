"""A reply can finish before its post is answered: the simulated user still counts it.

A real HTTP server in the test answers the post only after the reply's frames have reached the
user's socket reader (here: handed to it, as its reader would); the user must take them when it
starts watching the reply, not wait for frames that already came and time out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import EARLY_REPLIES, Shared, SimUser

AI_ID = "01a2b3c4-0000-7000-8000-000000000001"


class PostServer:
    """Answers every request with a message pair; calls ``before_answer`` first."""

    def __init__(self) -> None:
        self.port = 0
        self.before_answer: Callable[[], None] = lambda: None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.before_answer()
                body = json.dumps(
                    {"user_message": {"id": "u"}, "ai_message": {"id": AI_ID}}
                ).encode()
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[PostServer]:
    posts = PostServer()
    listener = await asyncio.start_server(posts.handle, "127.0.0.1", 0)
    posts.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield posts


def _user(server: PostServer, recorder: Recorder) -> SimUser:
    shared = Shared(
        base_url=f"http://127.0.0.1:{server.port}",
        tls=None,
        codes=None,
        recorder=recorder,
        cycle_seconds=60.0,
        stop=asyncio.Event(),
    )
    user = SimUser(0, shared, "early-frames-test", token="not-checked")
    user.session_id = "s"
    return user


async def test_frames_before_the_post_is_answered_complete_the_reply(server: PostServer) -> None:
    recorder = Recorder(measuring=True)
    user = _user(server, recorder)

    def reply_finishes_first() -> None:
        user._on_reply_frame("message.delta", {"message_id": AI_ID, "offset": 0, "text": "Hi"})
        user._on_reply_frame("message.completed", {"id": AI_ID})

    server.before_answer = reply_finishes_first
    try:
        async with asyncio.timeout(5):
            await user.send_message()
    finally:
        await user.http.aclose()
    assert not recorder.errors
    assert recorder.histograms["reply_first_delta"].count == 1
    assert recorder.histograms["reply_completed"].count == 1
    assert user.early == {}
    assert user.shared.completions == {AI_ID: 1}


def test_frames_of_replies_never_watched_are_bounded() -> None:
    shared = Shared(
        base_url="http://127.0.0.1:9",
        tls=None,
        codes=None,
        recorder=Recorder(measuring=True),
        cycle_seconds=60.0,
        stop=asyncio.Event(),
    )
    user = SimUser(0, shared, "early-frames-test", token="not-checked")
    for n in range(EARLY_REPLIES * 3):
        user._on_reply_frame("message.completed", {"id": f"other-{n}"})
    assert len(user.early) == EARLY_REPLIES
    # The newest are kept.
    assert f"other-{EARLY_REPLIES * 3 - 1}" in user.early
