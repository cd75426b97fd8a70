"""The built-in offline provider: replies without a network, the appliance's embedded default.

It is not a language model. It writes a plausible suggestion from phrase banks, one per tone, so
that a fresh appliance works end to end (post, stream, store) before an admin configures a real
endpoint, and so that load tests exercise the whole pipeline without paying for one. Output is
deterministic: the same tone, length and conversation give the same text; different tones give
visibly different text. Tokens (words) are streamed with a configurable pause, like a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator

from wingman.domain.ai.provider import (
    ReplyRequest,
    StreamItem,
    TextDelta,
    Usage,
    estimate_tokens,
)

MODEL = "wingman-offline"

# Words per reply for each length preference (a medium reply is about 60 tokens).
TARGET_WORDS = {"short": 20, "medium": 50, "long": 110}

# (openers, middles, closers) per tone. ``{topic}`` is a word taken from the other person's
# message, so the suggestion visibly answers it.
PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "friendly": (
        ("Oh, that sounds really nice!", "Aw, I love hearing that.", "Hey, that's great news!"),
        (
            "I've been curious about {topic} for a while, so tell me more.",
            "Honestly, {topic} is one of my favourite things to talk about.",
            "It's so good to hear how things are going for you.",
            "I'd really like to know what got you into {topic} in the first place.",
            "That made me smile, thanks for sharing it with me.",
        ),
        ("How has the rest of your week been?", "What's next for you?", "Tell me everything!"),
    ),
    "playful": (
        ("Wait, wait, wait.", "Okay, plot twist:", "Hold on, I need the full story."),
        (
            "You can't just mention {topic} and expect me to stay calm.",
            "I'm officially declaring myself the judge of all things {topic}.",
            "This is either genius or a little chaotic, and I'm here for both.",
            "I bet you have a secret ranking of {topic} and I demand to see it.",
            "Careful, you're dangerously close to being interesting.",
        ),
        ("Prove me wrong 😄", "Your move.", "Go on, I'm listening... suspiciously."),
    ),
    "flirty": (
        (
            "Well, now you've got my attention.",
            "You know, that's kind of charming.",
            "Hmm, I like the way you think.",
        ),
        (
            "The way you talk about {topic} is honestly a little irresistible.",
            "I have a feeling you'd make even {topic} sound exciting in person.",
            "You keep surprising me, and I don't mind it one bit.",
            "Something tells me there's a great story behind {topic}.",
            "I could get used to conversations like this.",
        ),
        (
            "Maybe you could tell me over coffee?",
            "What else should I know about you?",
            "Don't keep me waiting too long.",
        ),
    ),
    "confident": (
        ("Good call.", "That's exactly right.", "Here's what I think."),
        (
            "{topic} is worth doing properly, so let's make a plan.",
            "I know a great place that fits {topic} perfectly.",
            "Let's pick a day this week and make it happen.",
            "I'm in, and I'll sort out the details.",
            "No overthinking needed: it's a great idea.",
        ),
        ("Saturday works for me.", "Let's do it.", "I'll see you there."),
    ),
    "formal": (
        (
            "Thank you for your message.",
            "I appreciate you letting me know.",
            "Thank you for sharing that.",
        ),
        (
            "I would be glad to hear more about {topic} when it suits you.",
            "Your perspective on {topic} is most interesting.",
            "Please let me know whether a meeting later this week would be convenient.",
            "I have given your points careful consideration.",
            "I look forward to continuing our conversation.",
        ),
        ("Kind regards.", "With best wishes.", "I look forward to your reply."),
    ),
    "witty": (
        (
            "Ah, a person of culture.",
            "Bold of you to bring that up.",
            "Well, that escalated nicely.",
        ),
        (
            "Not everyone can make {topic} sound like a heist movie.",
            "If {topic} were an Olympic sport, you'd be on the podium.",
            "I'd say I'm impressed, but my ego is still recovering.",
            "Somewhere a philosopher just sighed about {topic}.",
            "I'll allow it, purely for the plot.",
        ),
        ("Your turn to be clever.", "Top that.", "I'll wait."),
    ),
}
FALLBACK_TONE = "friendly"

_WORD = re.compile(r"[^\W\d_]{4,}")


def topic_of(text: str) -> str:
    """The longest word of four letters or more (first of equals), or a neutral stand-in."""
    words = _WORD.findall(text)
    return max(words, key=len).lower() if words else "that"


def compose(request: ReplyRequest) -> str:
    """The whole reply, chosen deterministically from the request."""
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    tone = request.tone if request.tone in PHRASES else FALLBACK_TONE
    seed_text = "\x1f".join(
        [request.tone or "", request.reply_length, last_user]
        + [m.content for m in request.messages]
    )
    # Deterministic phrase choice, not a secret: a seeded PRNG is exactly what is wanted.
    rng = random.Random(hashlib.sha256(seed_text.encode()).digest())  # noqa: S311
    openers, middles, closers = PHRASES[tone]
    topic = topic_of(last_user)
    target = TARGET_WORDS.get(request.reply_length, TARGET_WORDS["medium"])
    parts = [rng.choice(openers)]
    pool = list(middles)
    rng.shuffle(pool)
    words = len(parts[0].split())
    while words < target:
        if not pool:
            pool = list(middles)
            rng.shuffle(pool)
        sentence = pool.pop().format(topic=topic)
        parts.append(sentence)
        words += len(sentence.split())
    parts.append(rng.choice(closers))
    return " ".join(parts)


class OfflineProvider:
    name = "offline"

    def __init__(self, token_interval_ms: float) -> None:
        self._interval = max(0.0, token_interval_ms) / 1000.0

    async def stream(self, request: ReplyRequest) -> AsyncIterator[StreamItem]:
        words = compose(request).split(" ")
        budget = max(1, request.max_tokens)
        sent = 0
        for index, word in enumerate(words[:budget]):
            if self._interval:
                await asyncio.sleep(self._interval)
            yield TextDelta(word if index == 0 else " " + word)
            sent += 1
        prompt_tokens = sum(estimate_tokens(m.content) for m in request.messages)
        yield Usage(model=MODEL, tokens_in=prompt_tokens, tokens_out=sent)

    async def close(self) -> None:
        return None
