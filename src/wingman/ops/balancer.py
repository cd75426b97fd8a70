"""HAProxy in front of several app nodes: the config ``wingmanctl lb render`` writes.

What it is built for (docs/scale-out.md):

- **Health**: every node's ``/health/ready`` every second (HTTP/1.1, with a Host header); two
  failures take a node out, two passes put it back. A node that is stopping answers 503 for
  ``node.drain_seconds`` while it still serves, so it is out before it stops accepting.
- **No stickiness**: ``leastconn`` over all nodes, for requests and WebSockets alike; a user's
  events reach any node through Redis, and ``resume`` replays what a reconnect missed.
- **WebSockets**: once upgraded, a connection is a tunnel whose timeout is far above the
  realtime heartbeat (the server pings an idle socket every ``heartbeat_interval_seconds``), so
  the balancer never cuts a quiet, healthy socket.
- **Keep-alive** on both sides (HTTP/1.1); connections to the nodes are reused.
- **Failures**: a request that could not reach a node (refused, reset before any answer) is
  retried on another node (``retry-on`` + ``redispatch``): every write the API takes is safe to
  repeat (messages carry an idempotency key, the rest are keyed updates).
- **No node to answer**: HAProxy's own 503 (every node down or out) speaks the API's problem
  format (``application/problem+json``, ``urn:wingman:problem:unavailable``) with
  ``Retry-After``, like the app's own 503s, so a client backs off and retries the same way.
- **Client addresses**: ``X-Forwarded-For`` gets the client's address appended; the app trusts
  it only from the balancer's address (``server.trusted_proxies`` on each app node).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from wingman.config import RealtimeSettings

CHECK_INTERVAL_S = 1
CHECK_FALL = 2
CHECK_RISE = 2
# Seconds a client is told to wait when no node can answer (the app's own 503s say the same).
NO_NODE_RETRY_AFTER_S = 2
NO_NODE_PROBLEM = (
    '{"type":"urn:wingman:problem:unavailable","title":"Service Unavailable","status":503,'
    '"detail":"No server can answer right now; try again shortly."}'
)
# A WebSocket idle longer than this is cut by the balancer: hours, against a heartbeat of seconds.
MIN_TUNNEL_TIMEOUT_S = 3600
_SERVER_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class BalancerConfigError(ValueError):
    """A backend or listen address the balancer cannot use."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One app node's web server, as the balancer reaches it."""

    host: str
    port: int
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Backend:
        """``host:port`` or ``name=host:port``; IPv6 as ``[::1]:8000``."""
        name, _, address = text.rpartition("=")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BalancerConfigError(f"backend {text!r}: host:port expected")
        return cls(host, int(port), _SERVER_NAME.sub("_", name))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    backends: list[Backend]
    bind: str = "0.0.0.0:80"
    # A PEM with certificate and key: the balancer terminates TLS (HTTP/2 and HTTP/1.1).
    tls_pem: str = ""
    maxconn: int = 20_000
    # HAProxy's runtime API (``show stat``: which nodes are up), owner-only; empty: none.
    stats_socket: str = ""
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)

    @property
    def tunnel_timeout_s(self) -> int:
        heartbeat = max(
            self.realtime.heartbeat_interval_seconds, self.realtime.heartbeat_timeout_seconds
        )
        return max(MIN_TUNNEL_TIMEOUT_S, math.ceil(heartbeat * 2))


def render(config: BalancerConfig) -> str:
    """The whole ``haproxy.cfg``."""
    if not config.backends:
        raise BalancerConfigError("at least one backend (an app node's host:port) is needed")
    names = [b.name or f"node{i + 1}" for i, b in enumerate(config.backends)]
    if len(set(names)) != len(names):
        raise BalancerConfigError("backend names must differ")
    bind = f"bind {config.bind}"
    if config.tls_pem:
        bind += f" ssl crt {config.tls_pem} alpn h2,http/1.1"
    checks = f"inter {CHECK_INTERVAL_S}s fall {CHECK_FALL} rise {CHECK_RISE}"
    lines = [
        "# Rendered by `wingmanctl lb render`; render again rather than edit (docs/scale-out.md).",
        "global",
        f"    maxconn {config.maxconn}",
        "    log stderr format short local0 notice",
        *(
            [f"    stats socket {config.stats_socket} mode 600 level user"]
            if config.stats_socket
            else []
        ),
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    # HTTP/1.1 keep-alive with clients and, reusing idle connections, with the nodes.",
        "    option http-keep-alive",
        "    http-reuse safe",
        "    timeout connect 3s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 60s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    # An upgraded WebSocket: far above the realtime heartbeat "
        f"({config.realtime.heartbeat_interval_seconds:g} s ping, "
        f"{config.realtime.heartbeat_timeout_seconds:g} s dead-peer timeout).",
        f"    timeout tunnel {config.tunnel_timeout_s}s",
        "    timeout client-fin 30s",
        "    # A request no node answered (refused, reset before any answer) goes to another.",
        "    retries 3",
        "    option redispatch 1",
        "    # The whole request is buffered first, so that a retry can send it again.",
        "    option http-buffer-request",
        "    retry-on conn-failure empty-response junk-response response-timeout",
        "    # No node to answer: a 503 in the API's problem format, with Retry-After.",
        "    http-error status 503 content-type application/problem+json "
        f"string '{NO_NODE_PROBLEM}' hdr Retry-After {NO_NODE_RETRY_AFTER_S}",
        "",
        "frontend wingman",
        f"    {bind}",
        "    # The client's address, appended: each app node believes it from this balancer only.",
        "    option forwardfor",
        "    default_backend app_nodes",
        "",
        "backend app_nodes",
        "    # No stickiness: any node serves any user (fan-out and history live in Redis).",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host wingman-balancer",
        "    http-check expect status 200",
        f"    default-server check {checks}",
    ]
    for name, backend in zip(names, config.backends, strict=True):
        lines.append(f"    server {name} {backend.address}")
    return "\n".join(lines) + "\n"
