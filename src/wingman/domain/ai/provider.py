"""What every reply provider offers: one streaming call, and two kinds of failure.

A provider turns a :class:`ReplyRequest` into a stream of :class:`TextDelta` pieces ending with
one :class:`Usage`. It raises :class:`TransientProviderError` when trying again may help
(connection refused, 429, 5xx, a timeout, a stream cut short) and
:class:`PermanentProviderError` when it cannot (400, 401, 404: a wrong key or model). Both carry
the provider's own words in ``detail`` for operators; users are only ever shown a plain reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    messages: list[PromptMessage]
    model: str
    max_tokens: int
    temperature: float
    # Hints for the offline provider, which cannot read the prompt as a model would: the
    # session's tone slug and the user's preferred reply length.
    tone: str | None = None
    reply_length: str = "medium"


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    model: str
    tokens_in: int
    tokens_out: int


StreamItem = TextDelta | Usage


class ProviderError(Exception):
    """A reply could not be produced. ``reason`` is a short label (metrics, logs)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientProviderError(ProviderError):
    """Worth another try; ``retry_after`` is the provider's own wait in seconds, if it gave one."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """Another try would fail the same way."""


class Provider(Protocol):
    name: str

    def stream(self, request: ReplyRequest) -> AsyncIterator[StreamItem]:
        """Text pieces in order, then exactly one :class:`Usage`."""
        ...

    async def close(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """About four characters a token: good enough for budgets when a provider gives no count."""
    return (len(text) + 3) // 4
