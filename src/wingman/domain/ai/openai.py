"""The OpenAI-compatible provider: ``POST {base_url}/chat/completions`` with ``stream: true``.

Speaks the protocol that OpenAI, vLLM, Ollama and the llama.cpp server share: server-sent events,
one ``data: {json}`` chunk per piece with ``choices[0].delta.content``, an optional ``usage``
chunk (asked for with ``stream_options.include_usage``; servers that ignore it get an estimate),
and ``data: [DONE]``. Failures are sorted for the caller: connection errors, timeouts, 408, 409,
429, 5xx and streams cut short are transient (``Retry-After`` kept); other 4xx are permanent.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from wingman.config import OpenAISettings
from wingman.domain.ai.provider import (
    PermanentProviderError,
    ReplyRequest,
    StreamItem,
    TextDelta,
    TransientProviderError,
    Usage,
    estimate_tokens,
)

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
# An error body is read for its message, never kept whole.
MAX_ERROR_BODY = 4096


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    model: str | None = None
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(body: bytes) -> str:
    """The provider's ``error.message`` (or the start of the body) for operators."""
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace")
    try:
        decoded = msgspec.json.decode(body[:MAX_ERROR_BODY])
    except msgspec.DecodeError:
        return text.strip() or "(empty body)"
    if isinstance(decoded, dict):
        error = decoded.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return text.strip()


class OpenAICompatibleProvider:
    name = "openai"

    def __init__(self, settings: OpenAISettings, *, max_connections: int) -> None:
        if not settings.base_url:
            raise PermanentProviderError(
                "not_configured", "ai.openai.base_url is not set in the settings"
            )
        headers = {"Accept": "text/event-stream"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.connect_timeout,
                pool=settings.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _body(self, request: ReplyRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def stream(self, request: ReplyRequest) -> AsyncIterator[StreamItem]:
        try:
            async with self._client.stream("POST", self._url, json=self._body(request)) as response:
                if response.status_code >= 400:
                    await self._raise_for(response)
                async for item in self._events(response, request):
                    yield item
        except httpx.TimeoutException as exc:
            raise TransientProviderError(
                "timeout", f"{type(exc).__name__} from {self._url}"
            ) from None
        except httpx.TransportError as exc:
            raise TransientProviderError("connect", f"{type(exc).__name__}: {exc}") from None

    async def _raise_for(self, response: httpx.Response) -> None:
        body = b""
        async for part in response.aiter_bytes():
            body += part
            if len(body) >= MAX_ERROR_BODY:
                break
        status = response.status_code
        detail = f"HTTP {status}: {error_message(body)}"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientProviderError(
                f"http_{status}",
                detail,
                retry_after_seconds(response.headers.get("retry-after")),
            )
        raise PermanentProviderError(f"http_{status}", detail)

    async def _events(
        self, response: httpx.Response, request: ReplyRequest
    ) -> AsyncIterator[StreamItem]:
        model = request.model
        usage: _Usage | None = None
        produced: list[str] = []
        finished = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments (": keep-alive"), event names and blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                finished = True
                break
            try:
                chunk = _chunk_decoder.decode(data)
            except msgspec.DecodeError:
                raise TransientProviderError(
                    "protocol", f"undecodable chunk: {data[:200]!r}"
                ) from None
            if chunk.error is not None:
                message = chunk.error.get("message", chunk.error)
                raise TransientProviderError("stream_error", f"error in stream: {message}")
            model = chunk.model or model
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta.content:
                    produced.append(choice.delta.content)
                    yield TextDelta(choice.delta.content)
                if choice.finish_reason is not None:
                    finished = True
        if not finished:
            raise TransientProviderError("incomplete", "the stream ended before [DONE]")
        if usage is not None:
            yield Usage(
                model=model, tokens_in=usage.prompt_tokens, tokens_out=usage.completion_tokens
            )
        else:
            yield Usage(
                model=model,
                tokens_in=sum(estimate_tokens(m.content) for m in request.messages),
                tokens_out=estimate_tokens("".join(produced)),
            )
