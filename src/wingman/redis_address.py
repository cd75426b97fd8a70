"""Where a Redis role lives: one server (``redis://``, ``rediss://``, ``unix://``) or a master
that Redis Sentinel names (``redis+sentinel://``, ``rediss+sentinel://``).

A Sentinel URL lists the Sentinels, not the master, because the master moves::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>[/<db>]
        [?sentinel_password=...&sentinel_username=...]

The password in front is the Redis servers' (master and replicas share it); the Sentinels'
own password, when they have ``requirepass``, goes in ``sentinel_password``. ``rediss+`` speaks
TLS to both. Ports default to 26379. Pure parsing, no I/O: settings validation and every client
builder (``server/redis.py``, ``server/redis_mux.py``) read URLs through here. Error messages
never repeat the URL, which may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DIRECT_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = {"sentinel_password", "sentinel_username"}


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """A master known by name to a set of Sentinels."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The Sentinel address in ``url``; :class:`ValueError` says what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL (schemes: {', '.join(SENTINEL_SCHEMES)})")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username = password = None
    if userinfo:
        name, colon, secret = userinfo.partition(":")
        username = unquote(name) or None
        password = unquote(secret) if colon else None
        if not colon:  # ``secret@host`` is how redis:// URLs spell a bare password too
            username, password = None, unquote(name)
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise ValueError("no master name: write it after the Sentinels, as /<master-name>")
    if len(parts) > 2:
        raise ValueError("the path is /<master-name>[/<db>], nothing more")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"database must be a number, not {parts[1]!r}")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - _SENTINEL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} (known: {', '.join(sorted(_SENTINEL_OPTIONS))})"
        )
    return SentinelAddress(
        sentinels=sentinels,
        master_name=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username", [None])[-1] or None,
        sentinel_password=options.get("sentinel_password", [None])[-1] or None,
        tls=scheme.lower().startswith("rediss"),
    )


def _host_port(part: str) -> tuple[str, int]:
    part = part.strip()
    if not part:
        raise ValueError("an empty Sentinel address (hosts are host[:port], comma-separated)")
    if part.startswith("["):  # [IPv6]:port
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"bad Sentinel address {part!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f"bad Sentinel address {part!r}: no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad Sentinel port in {part!r}")
    return host, int(port_text)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a Redis role, or None when it can."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in SENTINEL_SCHEMES:
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            return str(exc)
        return None
    if scheme not in DIRECT_SCHEMES:
        known = ", ".join(f"{name}://" for name in DIRECT_SCHEMES + SENTINEL_SCHEMES)
        return f"unsupported scheme (use {known})"
    try:
        urlsplit(url).port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "bad port"
    return None
