"""The known ``global_config`` keys: each one's msgspec schema, default and public fields.

A key's row may be absent: its default applies. A stored value is decoded with the key's schema,
so a field added later takes its default for rows written before it existed. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]


class ConfigValue(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every key's value: unknown fields are refused, so a typo fails loudly."""


class Features(ConfigValue):
    """Feature switches a client shows or hides."""

    # New accounts are created on a first successful sign-in.
    sign_up: bool = True
    # Suggested replies are streamed token by token over the WebSocket.
    streaming: bool = True
    # POST /messages/{id}/regenerate is offered.
    regenerate: bool = True
    # POST /sessions/{id}/imports (chat transcripts) is offered.
    transcript_imports: bool = True


class MessageLimits(ConfigValue):
    """What a user may send in one message."""

    max_content_length: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 4_000


class AiConfig(ConfigValue):
    """How replies are generated (the AI pipeline reads these)."""

    provider: Literal["offline", "openai"] = "offline"
    # No NUL: PostgreSQL's jsonb cannot store it.
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]+$")] = (
        "wingman-offline"
    )
    # How many earlier messages of the session go into the prompt.
    context_messages: Annotated[int, msgspec.Meta(ge=0, le=200)] = 20
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32_000)] = 256
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.8
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 60.0
    # Estimated tokens of earlier messages the prompt may carry (about 4 characters a token);
    # the oldest are left out first.
    context_tokens: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 3_000


Days = Annotated[int, msgspec.Meta(ge=1, le=36_500)]


class Retention(ConfigValue):
    """How long rows are kept, in days; the daily ``retention_sweep`` deletes older ones."""

    # One-time code requests, counted from their creation (each expires 10 minutes after it).
    otp_requests_days: Days = 7
    # Refresh tokens this long after they expired or were revoked.
    refresh_tokens_days: Days = 30
    # Feedback events (copied, sent, liked, ...).
    session_events_days: Days = 30
    # Records of finished transcript imports (their status and errors; the messages stay).
    session_imports_days: Days = 30
    # Messages of every session; null keeps them until the user deletes them.
    messages_days: Days | None = None
    # Rows examined per short transaction: the longest any row lock is held.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1_000


Period = Literal["second", "minute", "hour", "day"]


class RateLimit(ConfigValue):
    """``limit`` requests per ``period``."""

    limit: Positive
    period: Period

    @property
    def notation(self) -> str:
        """The allowance in the ``limits`` package's notation: ``"20/minute"``."""
        return f"{self.limit}/{self.period}"


def _allow(limit: int, period: Period) -> RateLimit:
    # A factory: struct defaults must not be shared mutable instances.
    return msgspec.field(default_factory=lambda: RateLimit(limit=limit, period=period))


class RateLimits(ConfigValue):
    """Per tier and scope (DESIGN section 8); ``*_premium`` applies to the premium tier."""

    anon: RateLimit = _allow(100, "hour")  # per IP
    user: RateLimit = _allow(10_000, "hour")
    premium: RateLimit = _allow(50_000, "hour")
    otp: RateLimit = _allow(5, "minute")  # per destination and per IP
    chat: RateLimit = _allow(60, "minute")
    chat_premium: RateLimit = _allow(300, "minute")
    ai: RateLimit = _allow(20, "minute")
    ai_premium: RateLimit = _allow(100, "minute")
    export: RateLimit = _allow(3, "day")  # account exports requested, per user

    def for_tier(self, scope: Literal["api", "chat", "ai"], premium: bool) -> RateLimit:
        """The allowance of a signed-in caller: ``api`` is the overall request budget (``user``
        or ``premium``), ``chat`` and ``ai`` their own scopes with a premium variant."""
        if scope == "api":
            return self.premium if premium else self.user
        allowance: RateLimit = getattr(self, f"{scope}_premium" if premium else scope)
        return allowance


class PrivacyConfig(ConfigValue):
    """Account deletion (docs/privacy.md)."""

    # Days between ``DELETE /me`` and the purge of every row; 0 purges at the next sweep.
    deletion_grace_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 7


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One known key: its schema, its default and which of its fields clients may read."""

    name: str
    schema: type[ConfigValue]
    description: str
    public_fields: tuple[str, ...] = ()

    @property
    def default(self) -> ConfigValue:
        return self.schema()

    @property
    def is_public(self) -> bool:
        return bool(self.public_fields)


REGISTRY: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey(
            "features",
            Features,
            "Feature switches.",
            public_fields=tuple(Features.__struct_fields__),
        ),
        ConfigKey(
            "limits.message",
            MessageLimits,
            "Limits on a message a user sends.",
            public_fields=("max_content_length",),
        ),
        ConfigKey("ai", AiConfig, "Reply generation: provider, model and prompt budget."),
        ConfigKey("retention", Retention, "How many days old rows are kept (daily sweep)."),
        ConfigKey(
            "rate_limits",
            RateLimits,
            "Request allowances per tier and scope.",
            # What a client may show ("60 messages a minute"); the rest is operator business.
            public_fields=("chat", "chat_premium", "ai", "ai_premium"),
        ),
        ConfigKey(
            "privacy",
            PrivacyConfig,
            "Account deletion: the grace period before a deleted account is purged.",
            public_fields=("deletion_grace_days",),
        ),
    )
}


class UnknownConfigKey(KeyError):
    """No such key in :data:`REGISTRY`."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why a value was refused: the dotted field path (``""`` for the value itself) and why."""

    field: str
    message: str


class InvalidConfigValue(ValueError):
    def __init__(self, key: str, error: FieldError) -> None:
        where = f" at {error.field}" if error.field else ""
        super().__init__(f"invalid value for {key}{where}: {error.message}")
        self.key = key
        self.error = error


_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.DOTALL)


def field_error(exc: msgspec.ValidationError) -> FieldError:
    """The field path and message out of msgspec's ``"Expected ... - at `$.a.b`"``."""
    text = str(exc)
    match = _PATH.match(text)
    message, path = (match["message"], match["path"].lstrip(".")) if match else (text, "")
    unknown = _UNKNOWN.match(message)
    if unknown is not None:
        # Name the offending field itself, not the object that holds it.
        path = f"{path}.{unknown['name']}" if path else unknown["name"]
    return FieldError(path, message)


def lookup(key: str) -> ConfigKey:
    try:
        return REGISTRY[key]
    except KeyError:
        raise UnknownConfigKey(key) from None


def validate(key: str, value: Any) -> ConfigValue:
    """``value`` (decoded JSON) as ``key``'s schema; omitted fields take their defaults."""
    spec = lookup(key)
    try:
        return msgspec.convert(value, spec.schema, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidConfigValue(key, field_error(exc)) from None


def to_json(value: ConfigValue) -> dict[str, Any]:
    """The value as JSON-ready builtins (what is stored in ``global_config.value``)."""
    data: dict[str, Any] = msgspec.to_builtins(value)
    return data


def public_view(values: dict[str, ConfigValue]) -> dict[str, dict[str, Any]]:
    """Only the public keys, and of each only its public fields."""
    view: dict[str, dict[str, Any]] = {}
    for name, spec in REGISTRY.items():
        if not spec.is_public:
            continue
        data = to_json(values.get(name, spec.default))
        view[name] = {field: data[field] for field in spec.public_fields}
    return view
