"""A reply can finish before its post is answered: the simulated user still counts it.

A real HTTP server in the test answers the post only after the reply's frames have reached the
user's socket reader (here: handed to it, as its reader would); the user must take them when it
starts watching the reply, not wait for frames that already came and time out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tests.support.load_users import KeepAliveServer, serving, sim_user
from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import EARLY_REPLIES

AI_ID = "01a2b3c4-0000-7000-8000-000000000001"


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    pair = {"user_message": {"id": "u"}, "ai_message": {"id": AI_ID}}
    async with serving(KeepAliveServer(b"202 Accepted", json.dumps(pair).encode())) as posts:
        yield posts


async def test_frames_before_the_post_is_answered_complete_the_reply(
    server: KeepAliveServer,
) -> None:
    recorder = Recorder(measuring=True)
    user = sim_user(server.port, recorder, "early-frames-test")
    user.session_id = "s"

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
    user = sim_user(9, Recorder(measuring=True), "early-frames-test")
    for n in range(EARLY_REPLIES * 3):
        user._on_reply_frame("message.completed", {"id": f"other-{n}"})
    assert len(user.early) == EARLY_REPLIES
    # The newest are kept.
    assert f"other-{EARLY_REPLIES * 3 - 1}" in user.early
