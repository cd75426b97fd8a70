"""Typed settings for every Wingman process.

Layers, later ones win: built-in defaults < ``wingman.toml`` < ``tuning.toml`` < ``WINGMAN_*``
environment variables. The file paths come from ``WINGMAN_CONFIG`` (default
``/etc/wingman/wingman.toml``) and ``WINGMAN_TUNING`` (default ``tuning.toml`` beside the main
file). Nested keys are spelled with a double underscore in the environment:
``WINGMAN_DATABASE__POOL_SIZE=20`` sets ``[database] pool_size``.

Everything is decoded into one msgspec Struct tree that rejects unknown keys, so a typo or a wrong
type stops the process at start-up with a message naming the key and where it came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from wingman.ops.os_updates import RestartWindow
from wingman.redis_address import url_problem

DEFAULT_CONFIG_PATH = Path("/etc/wingman/wingman.toml")
ENV_PREFIX = "WINGMAN_"
# Environment variables that select files rather than set values, and the set-up scripts' own
# switches (scripts/bootstrap, scripts/ci-debian13), which a shell may still export when the
# services start.
_META_ENV = {
    "WINGMAN_CONFIG",
    "WINGMAN_TUNING",
    "WINGMAN_NO_APT",
    "WINGMAN_NO_WEB_TOOLS",
}

Environment = Literal["development", "test", "production"]
QueueName = Literal["ai", "default", "heavy"]
QUEUE_NAMES: tuple[QueueName, ...] = ("ai", "default", "heavy")

# Placeholder secrets used outside production; production refuses to start with them.
INSECURE_SECRET = "insecure-development-secret-change-me"  # noqa: S105 - a known placeholder
INSECURE_JWT_KEY = "insecure-development-jwt-key-change-me"
INSECURE_OTP_HASH_KEY = "insecure-development-otp-key-change-me"


class SettingsError(Exception):
    """Settings could not be loaded; the message names the key and its source."""


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for settings sections: unknown keys are an error, never silently ignored."""


class DatabaseSettings(Section):
    url: str = "postgresql+psycopg://wingman@127.0.0.1:5432/wingman"
    # Connections each process's pool may hold open: SQLAlchemy's pool_size. The pool is fixed
    # (SQLAlchemy's max_overflow is 0): a connection, once opened, stays until pool_recycle.
    pool_size: int = 10
    # Deprecated: the pool never overflows. Tuning files written before pool_size meant the whole
    # pool set pool_size and max_overflow both; their sum is the pool (``effective_pool_size``),
    # and a process that runs with one logs a warning. Set pool_size to the sum instead.
    max_overflow: int = 0
    pool_timeout: int = 10
    connect_timeout: float = 5.0
    # Recycle connections so that a restarted PostgreSQL or a failover is picked up cleanly.
    pool_recycle: int = 1800
    statement_timeout_ms: int = 30_000
    echo: bool = False
    # What ``url`` reaches: PostgreSQL itself, or PgBouncer in transaction pooling mode in front
    # of it (docs/scale-out.md). Behind PgBouncer each transaction may run on another server
    # connection, so the engine keeps no session state: no server-side prepared statements, and
    # the statement timeout is set per transaction instead of in the startup packet.
    pooler: Literal["none", "pgbouncer"] = "none"
    # PostgreSQL itself, for what must bypass the pooler: migrations, backups and restores,
    # `wingmanctl tune --apply`. Empty: ``url``. Only with a pooler.
    direct_url: str = ""

    @property
    def effective_direct_url(self) -> str:
        return self.direct_url or self.url

    @property
    def effective_pool_size(self) -> int:
        """The pool each process opens: pool_size plus the deprecated max_overflow."""
        return self.pool_size + self.max_overflow


class RedisSettings(Section):
    # One server (redis://, rediss://, unix://) or a master watched by Sentinels:
    # redis+sentinel://[:password@]host:26379,host:26379/<master-name>/<db> (redis_address.py).
    queue_url: str = "redis://127.0.0.1:6379/0"
    # Cache role; empty means "share the queue instance" (fine in development).
    cache_url: str = ""
    socket_timeout: float = 5.0
    # Connections per process and role; a command past this waits for a free one.
    max_connections: int = 100

    @property
    def effective_cache_url(self) -> str:
        return self.cache_url or self.queue_url


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Connections the kernel queues for accept(); Linux caps it at net.core.somaxconn (4096 by
    # default since 5.4). It only absorbs connect bursts: what a worker holds open is below.
    backlog: int = 4096
    # Connections one web worker holds open at once (Granian's backpressure): keep-alive clients
    # and WebSockets both count. Past it new connections wait in the backlog, unanswered, so it is
    # sized for the users a host is planned for (`wingmanctl tune`), never left at Granian's
    # backlog / workers, which walls the whole host at about a thousand clients.
    connections_per_worker: int = 10_000
    # Seconds Granian waits for in-flight requests on shutdown.
    graceful_timeout: int = 20
    cors_allow_origins: list[str] = msgspec.field(default_factory=list)
    # Proxies (addresses or CIDR blocks) whose X-Forwarded-For is believed; empty: use the peer.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # Requests in flight plus open WebSockets one client IP may hold per process; 0 = no cap.
    max_connections_per_ip: int = 0
    # Request headers: in total and per line (name and value), answered 431 above either; see
    # server/header_limits.py for the hard cap Granian holds on top.
    max_header_bytes: int = 16384
    max_header_line_bytes: int = 8192
    # Largest request body accepted (413 above it); the appliance's front proxy enforces the same.
    max_body_bytes: int = 10_000_000
    # The per-tier request allowances (global config ``rate_limits``); off only for measurements.
    rate_limits: bool = True


class QueueSettings(Section):
    concurrency: int = 10
    # Seconds a job may run before SAQ aborts it.
    timeout: int = 60
    retries: int = 3
    # A job whose worker stops sending heartbeats for this long is considered lost and retried.
    heartbeat: int = 30
    retry_delay: float = 1.0
    retry_backoff: bool = True
    # Worker processes for this queue: `wingmanctl worker --queue <queue>` (the unit
    # wingman-worker@<queue>) supervises this many; set by `wingmanctl tune` from the host.
    processes: int = 1


def _default_queues() -> dict[str, QueueSettings]:
    return {
        "ai": QueueSettings(concurrency=50, timeout=120, retries=3, heartbeat=30),
        "default": QueueSettings(concurrency=10, timeout=60, retries=5, heartbeat=30),
        "heavy": QueueSettings(concurrency=1, timeout=3600, retries=2, heartbeat=60),
    }


class WorkerSettings(Section):
    queues: dict[str, QueueSettings] = msgspec.field(default_factory=_default_queues)
    shutdown_grace: int = 30
    # Seconds between sweeps for running jobs whose worker died (stopped reporting in) or whose
    # heartbeat lapsed; a sweep costs one LRANGE and one MGET (see wingman/job_recovery.py).
    sweep_seconds: int = 10

    def queue(self, name: str) -> QueueSettings:
        return self.queues.get(name) or _default_queues()[name]


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "auto": console renderer on a terminal, JSON otherwise (and always JSON in production).
    format: Literal["auto", "console", "json"] = "auto"
    sql: bool = False


class SecuritySettings(Section):
    secret_key: str = INSECURE_SECRET
    # Signs access tokens (HS256). Production refuses the placeholder.
    jwt_key: str = INSECURE_JWT_KEY
    # Keys the HMAC-SHA256 of one-time codes, destinations and refresh tokens, so a database dump
    # alone cannot be brute-forced. Changing it invalidates pending codes and refresh tokens.
    otp_hash_key: str = INSECURE_OTP_HASH_KEY


class AuthSettings(Section):
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    # Per-process cache of user status and tier, so requests do not each query the account.
    # Changes are announced to every process, which forgets the account at once; while a process
    # cannot hear the announcements (Redis lost) an entry lives this many seconds, the longest a
    # disabled user's live access tokens keep working then. 0 turns the cache off.
    status_cache_seconds: int = 30
    # How long an entry lives while the process hears the announcements: a change made around
    # Wingman (SQL by hand) reaches the process within this.
    status_cache_heard_seconds: int = 300
    issuer: str = "wingman"


class OtpSettings(Section):
    code_ttl_seconds: int = 600
    max_attempts: int = 5


class SmtpSettings(Section):
    host: str = ""
    port: int = 587
    # "starttls" upgrades a plain connection; "tls" is implicit TLS (port 465); "none" is plain.
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    sender: str = "Wingman <no-reply@localhost>"
    subject: str = "Your Wingman sign-in code"
    timeout: float = 10.0


class WebhookSettings(Section):
    url: str = ""
    # Signs each request body (HMAC-SHA256) so the gateway can tell it came from this server.
    secret: str = ""
    timeout: float = 10.0


TWILIO_API = "https://api.twilio.com"


class TwilioSettings(Section):
    """An SMS provider's Twilio-style Messages API (Twilio itself, or a compatible one).

    Codes go as ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, form-encoded,
    with HTTP basic auth ``account_sid:auth_token``.
    """

    # Up to, not including, ``/2010-04-01``; a compatible provider gives its own.
    base_url: str = TWILIO_API
    account_sid: str = ""
    # Secret: sent only in the Authorization header, never logged or printed.
    auth_token: str = ""
    # The sender: a number in E.164 form, or else a messaging service (one of the two).
    from_number: str = ""
    messaging_service_sid: str = ""
    timeout: float = 10.0

    @property
    def messages_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    @property
    def account_url(self) -> str:
        """The account resource: reading it checks the credentials and sends nothing."""
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}.json"


class DeliverySettings(Section):
    """Which backend carries one-time codes, per channel; ``disabled``: the channel is not
    offered (its code requests are refused)."""

    email: Literal["log", "smtp", "webhook", "disabled"] = "log"
    sms: Literal["log", "webhook", "twilio", "disabled"] = "log"
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)
    webhook: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    twilio: TwilioSettings = msgspec.field(default_factory=TwilioSettings)


class BackupSettings(Section):
    """Where ``wingmanctl backup`` writes its archives and how many it keeps."""

    # The appliance's folder; a development stack uses ``<data dir>/backups`` unless this is set.
    dir: str = "/var/lib/wingman/backups"
    # Newest archives kept; older ones are deleted after each successful backup.
    keep: int = 7


class ExportSettings(Section):
    """Where account exports (``POST /me/export``) are written and how long they are kept."""

    # Private to the service user (created 0700 when missing); a development stack uses
    # ``<data dir>/exports``.
    dir: str = "/var/lib/wingman/exports"
    # A finished archive can be downloaded for this long; then a cron deletes the file.
    ttl_hours: int = 72


class OpenAISettings(Section):
    """An OpenAI-compatible ``/v1/chat/completions`` server (OpenAI, vLLM, Ollama, llama.cpp).

    Used when the global config ``ai.provider`` is ``"openai"``; model, temperature and token
    limits are global config too, so an admin changes them live.
    """

    # Up to and including ``/v1``: "https://api.openai.com/v1", "http://127.0.0.1:11434/v1".
    base_url: str = ""
    api_key: str = ""
    connect_timeout: float = 5.0
    # Longest silence allowed between two streamed chunks.
    read_timeout: float = 30.0


class OfflineProviderSettings(Section):
    """The built-in provider: no network, deterministic, paced like a real model."""

    # Pause before each token: 33 ms gives about 60 tokens in 2 s.
    token_interval_ms: float = 33.0


class AiSettings(Section):
    """How the ``ai`` workers run replies (what they generate is global config ``ai``)."""

    openai: OpenAISettings = msgspec.field(default_factory=OpenAISettings)
    offline: OfflineProviderSettings = msgspec.field(default_factory=OfflineProviderSettings)
    # Deltas are coalesced: one event per tick of this many milliseconds (a clock all replies of
    # a worker process share), or sooner at this many tokens (the first piece goes at once). Ten
    # a second reads as smooth typing; every event is a publish on the queue Redis, a fan-out in
    # the web process holding the socket and a frame, so 50 ms (about one event per token at 30
    # tokens/s) cost twice the events for no visible gain.
    delta_interval_ms: int = 100
    delta_max_tokens: int = 16
    # Transient provider errors (connection, 429, 5xx) retried within one run, with exponential
    # backoff from ``retry_delay`` up to ``retry_max_delay`` seconds (a Retry-After wins).
    provider_retries: int = 3
    retry_delay: float = 0.5
    retry_max_delay: float = 20.0
    # Runs a message may use (crashed workers, lost queues) before it is failed.
    max_attempts: int = 3
    # The reconciler looks at in-flight replies untouched for this long ...
    stale_after_seconds: int = 60
    # ... every this many seconds (a divisor of 60: it becomes a cron step).
    reconcile_every_seconds: int = 30

    def __post_init__(self) -> None:
        if self.reconcile_every_seconds < 1 or 60 % self.reconcile_every_seconds:
            raise ValueError("ai.reconcile_every_seconds must divide 60 (1, 2, 3, 5, ... 30, 60)")
        if self.max_attempts < 1 or self.provider_retries < 0:
            raise ValueError("ai.max_attempts must be at least 1, ai.provider_retries at least 0")


class RealtimeSettings(Section):
    """The per-user event stream (domain/realtime) and the WebSocket that delivers it."""

    # Events kept per user for ``resume``: the newest this many ...
    history_size: int = 1000
    # ... and none older than this; a longer gap makes the client resync over REST.
    history_seconds: int = 600
    # WebSocket (/api/v1/ws). A client that authenticates with an ``auth`` frame must send it
    # within this many seconds of connecting.
    auth_timeout_seconds: float = 5.0
    # Frames waiting to be sent to one socket; a client that falls this far behind is closed
    # (4008) and resumes after reconnecting, so a slow reader never grows the server's memory.
    outbound_queue_size: int = 256
    # The server sends a ``ping`` frame after this many idle seconds ...
    heartbeat_interval_seconds: float = 25.0
    # ... and closes a socket (4010) that sent nothing for this long (a dead peer).
    heartbeat_timeout_seconds: float = 60.0
    # Sockets one user may hold across all web workers; a new one closes the oldest (4009).
    max_sockets_per_user: int = 5
    # After ``hello`` the server holds live events until the client's first frame (normally
    # ``resume``) or this many seconds, so replayed and live events arrive in order.
    resume_wait_seconds: float = 2.0
    # Longest a close may wait for its frame to be written before the connection is dropped.
    close_timeout_seconds: float = 2.0


class MetricsSettings(Section):
    """Where web and worker processes keep their Prometheus values (``GET /metrics``)."""

    # The instance's metrics folder, shared by its web and worker processes (each kind writes a
    # subfolder, wiped when that service starts). Empty: ``<temp dir>/wingman-metrics-<port>``.
    dir: str = ""


class ImportSettings(Section):
    """Chat transcripts uploaded to ``POST /sessions/{id}/imports``, kept until parsed."""

    # Shared by web (writes) and the heavy worker (reads, then deletes). Empty:
    # ``<temp dir>/wingman-imports-<port>``; the appliance sets its state folder.
    dir: str = ""
    # Largest transcript accepted; a larger upload is refused (413) while it streams in.
    max_bytes: int = 10 * 1024 * 1024
    # An import still ``queued`` this long after its upload is taken for a lost job and
    # enqueued again by the ``reconcile_imports`` cron.
    stale_after_seconds: int = 300

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.stale_after_seconds < 1:
            raise ValueError("imports.max_bytes and imports.stale_after_seconds must be at least 1")


class CacheSettings(Section):
    """The read cache on the cache-role Redis (session list first page, session detail)."""

    enabled: bool = True
    # Longest a cached read lives; writes invalidate sooner (a per-user version bump).
    ttl_seconds: int = 300
    # A cold key is loaded by one caller; the others wait up to this long before loading too.
    lock_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.ttl_seconds < 1 or self.lock_seconds <= 0:
            raise ValueError("cache.ttl_seconds must be at least 1, cache.lock_seconds above 0")


class PublicSettings(Section):
    """How the appliance faces its users: the front proxy (Caddy) on 80/443, see ops/proxy.py.

    No domain: a certificate from the proxy's own CA for whatever name or address the host is
    reached by. A domain: certificates over ACME (Let's Encrypt unless ``acme_ca`` says
    otherwise). ``certificate = "imported"``: the team's own (``wingmanctl tls import``).
    """

    domain: str = ""
    acme_email: str = ""
    # ACME directory URL; the default is Let's Encrypt's production directory.
    acme_ca: str = "https://acme-v02.api.letsencrypt.org/directory"
    # A PEM root to trust for the ACME server only (a private ACME CA).
    acme_ca_root: str = ""
    # "auto": ACME with a domain, the internal CA without; "imported": the files in cert_dir.
    certificate: Literal["auto", "imported"] = "auto"
    # More names the site answers to (ACME or imported certificates).
    extra_names: list[str] = msgspec.field(default_factory=list)
    # Addresses or CIDR blocks of a load balancer in front: their X-Forwarded-* are believed.
    behind_proxy: list[str] = msgspec.field(default_factory=list)
    http_port: int = 80
    https_port: int = 443
    # The proxy's storage (certificates, ACME account, the internal CA and its keys).
    state_dir: str = "/var/lib/wingman/proxy"
    # An imported certificate and key (cert.pem, key.pem).
    cert_dir: str = "/var/lib/wingman/tls"
    # The rendered Caddyfile and where the proxy's admin endpoint listens (reloads).
    config_path: str = "/etc/wingman/Caddyfile"
    admin_address: str = "unix//run/wingman-proxy/admin.sock"


class MonitoringSettings(Section):
    """The appliance's Prometheus and Alertmanager (docs/monitoring.md), both on loopback.

    Alerts reach the admin through the backend that carries e-mailed sign-in codes
    (``delivery.email``): SMTP mail to ``alert_email``, or the code webhook's URL (or
    ``alert_webhook_url``), in Alertmanager's own webhook format.
    """

    # The admin's address for alert mail (with delivery.email = "smtp"); empty: no mail.
    alert_email: str = ""
    # Alerts to this URL as well; empty: the code webhook's URL when a channel uses it.
    alert_webhook_url: str = ""
    # How long Alertmanager gathers alerts of one group before the first notice, between
    # notices of a changing group, and before repeating an unchanged one.
    group_wait_seconds: float = 30.0
    group_interval_seconds: float = 300.0
    repeat_interval_seconds: float = 4 * 3600.0


NodeRole = Literal["all-in-one", "app", "data"]
NODE_ROLES: tuple[NodeRole, ...] = ("all-in-one", "app", "data")


class NodeSettings(Section):
    """What this host is in a cluster (docs/scale-out.md): one image, one settings file.

    ``all-in-one`` runs everything; ``app`` runs web and workers against PostgreSQL and Redis
    elsewhere (the database and Redis URLs point there), behind a load balancer; ``data`` runs
    PostgreSQL and both Redis roles for the app nodes.
    """

    role: NodeRole = "all-in-one"
    # This node's name in `wingmanctl status`; empty: the host name.
    name: str = ""
    # Where the load balancer reaches this node's web server (host:port), shown in the cluster
    # list; empty: server.host:server.port.
    address: str = ""
    # A stopping web process on an app node answers /health/ready with 503 for this long,
    # still serving, so the balancer takes it out before it stops accepting (> the balancer's
    # check interval x fall; `wingmanctl lb render` checks every second, down after 2).
    drain_seconds: float = 3.0


class UpdatesSettings(Section):
    """Operating-system security upgrades on the appliance (docs/appliance.md, "Updates").

    Debian's unattended-upgrades installs them daily; units left running replaced programs or
    libraries (web, workers, Redis, the proxy) are restarted by ``wingman-restarts.timer``.
    """

    # Empty: restart them within 15 minutes of the upgrade. Otherwise only in this window,
    # local time: "03:00-05:00" every day, "sat,sun 02:00-04:00", "sun 23:00-01:00".
    restart_window: str = ""

    def __post_init__(self) -> None:
        if self.restart_window:
            RestartWindow.parse(self.restart_window)


class Settings(Section):
    env: Environment = "development"
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    security: SecuritySettings = msgspec.field(default_factory=SecuritySettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    otp: OtpSettings = msgspec.field(default_factory=OtpSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    backup: BackupSettings = msgspec.field(default_factory=BackupSettings)
    exports: ExportSettings = msgspec.field(default_factory=ExportSettings)
    realtime: RealtimeSettings = msgspec.field(default_factory=RealtimeSettings)
    ai: AiSettings = msgspec.field(default_factory=AiSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    imports: ImportSettings = msgspec.field(default_factory=ImportSettings)
    public: PublicSettings = msgspec.field(default_factory=PublicSettings)
    monitoring: MonitoringSettings = msgspec.field(default_factory=MonitoringSettings)
    node: NodeSettings = msgspec.field(default_factory=NodeSettings)
    updates: UpdatesSettings = msgspec.field(default_factory=UpdatesSettings)

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise SettingsError(f"{path}: cannot be read: {exc.strerror}") from exc


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``WINGMAN_A__B=v`` becomes ``{"a": {"b": "v"}}``; values stay strings for lax decoding."""
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _META_ENV:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = layer
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"environment variable {name} conflicts with another variable")
            node = child
        node[path[-1]] = _env_value(value)
    return layer


def _env_value(raw: str) -> Any:
    # Lists and tables come as JSON literals: WINGMAN_SERVER__CORS_ALLOW_ORIGINS='["a"]'.
    stripped = raw.strip()
    if stripped[:1] in "[{":
        try:
            return msgspec.json.decode(stripped)
        except msgspec.DecodeError:
            return raw
    return raw


def config_paths(environ: Mapping[str, str]) -> tuple[Path, Path]:
    main = Path(environ.get("WINGMAN_CONFIG", str(DEFAULT_CONFIG_PATH)))
    tuning = Path(environ.get("WINGMAN_TUNING", str(main.with_name("tuning.toml"))))
    return main, tuning


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from files and environment, or raise :class:`SettingsError`."""
    environ = os.environ if environ is None else environ
    main_path, tuning_path = config_paths(environ)
    layers: list[tuple[str, dict[str, Any]]] = []
    for path in (main_path, tuning_path):
        if path.is_file():
            layers.append((str(path), _read_toml(path)))
        elif "WINGMAN_CONFIG" in environ and path == main_path:
            raise SettingsError(f"{path}: WINGMAN_CONFIG points at a file that does not exist")
    layers.append(("environment", _env_layer(environ)))

    # Decode each layer on its own first so an error names the source that caused it.
    for source, data in layers:
        _decode(data, source, strict=source != "environment")
    # Start from the defaults so that a partial table (one queue, say) keeps the other defaults.
    merged: dict[str, Any] = msgspec.to_builtins(Settings())
    for _, data in layers:
        merged = _deep_merge(merged, data)
    settings = _decode(merged, "settings", strict=False)
    validate(settings)
    return settings


def parse_settings(data: dict[str, Any], source: str = "settings") -> Settings:
    """One complete settings table, as ``wingman.toml`` would hold it, decoded and validated
    exactly as :func:`load_settings` does; :class:`SettingsError` names every problem."""
    _decode(data, source, strict=True)
    settings = _decode(_deep_merge(msgspec.to_builtins(Settings()), data), source, strict=False)
    validate(settings)
    return settings


def _decode(data: dict[str, Any], source: str, *, strict: bool) -> Settings:
    try:
        return msgspec.convert(data, Settings, strict=strict)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{source}: {_explain(exc)}") from None


def _explain(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's ``... - at `$.database.pool_size``` into ``database.pool_size: ...``."""
    message = str(exc)
    what, _, where = message.partition(" - at `$")
    # msgspec writes dict keys as `[...]`; show them as `*`.
    prefix = (
        where.rstrip("`")
        .replace("[...]", ".*")
        .replace("[", ".")
        .replace("]", "")
        .replace("'", "")
        .replace('"', "")
    )
    prefix = prefix.lstrip(".")
    if what.startswith("Object contains unknown field `"):
        field = what.removeprefix("Object contains unknown field `").rstrip("`")
        return f"{prefix + '.' if prefix else ''}{field}: unknown key"
    return f"{prefix}: {what}" if prefix else what


def validate(settings: Settings) -> None:
    """Cross-field rules that types alone cannot express."""
    problems: list[str] = []
    db = settings.database
    if db.pool_size < 1:
        problems.append("database.pool_size: must be at least 1")
    if db.max_overflow < 0:
        problems.append("database.max_overflow: must not be negative")
    if not db.url.startswith("postgresql+psycopg://"):
        problems.append("database.url: must use the psycopg driver (postgresql+psycopg://...)")
    problems.extend(_pooler_problems(db))
    problems.extend(_server_problems(settings.server))
    problems.extend(_redis_problems(settings.redis))
    for name, queue in settings.worker.queues.items():
        if name not in QUEUE_NAMES:
            problems.append(
                f"worker.queues.{name}: unknown queue (known: {', '.join(QUEUE_NAMES)})"
            )
        if queue.concurrency < 1:
            problems.append(f"worker.queues.{name}.concurrency: must be at least 1")
        if queue.processes < 1:
            problems.append(f"worker.queues.{name}.processes: must be at least 1")
    if settings.is_production and (
        settings.security.secret_key == INSECURE_SECRET or len(settings.security.secret_key) < 32
    ):
        problems.append(
            "security.secret_key: production needs a generated secret of at least 32 characters"
        )
    problems.extend(_account_problems(settings))
    if settings.backup.keep < 1:
        problems.append("backup.keep: must be at least 1")
    problems.extend(_public_problems(settings.public))
    if settings.exports.ttl_hours < 1:
        problems.append("exports.ttl_hours: must be at least 1")
    problems.extend(_node_problems(settings.node))
    if problems:
        raise SettingsError("; ".join(problems))


def _redis_problems(redis: RedisSettings) -> list[str]:
    urls = {"queue_url": redis.queue_url, "cache_url": redis.cache_url}
    found = ((key, url_problem(url)) for key, url in urls.items() if url)
    return [f"redis.{key}: {problem}" for key, problem in found if problem]


def _pooler_problems(db: DatabaseSettings) -> list[str]:
    if not db.direct_url:
        return []
    if db.pooler == "none":
        return [
            'database.direct_url: only with database.pooler = "pgbouncer" '
            "(without a pooler database.url already reaches PostgreSQL)"
        ]
    if not db.direct_url.startswith("postgresql+psycopg://"):
        return ["database.direct_url: must use the psycopg driver (postgresql+psycopg://...)"]
    if db.direct_url == db.url:
        return ["database.direct_url: must reach PostgreSQL itself, not the pooler at database.url"]
    return []


def _server_problems(server: ServerSettings) -> list[str]:
    problems: list[str] = []
    if server.max_body_bytes < 1024:
        problems.append("server.max_body_bytes: must be at least 1024")
    if not 0 < server.port < 65536:
        problems.append("server.port: must be between 1 and 65535")
    if server.workers < 1:
        problems.append("server.workers: must be at least 1")
    if server.backlog < 128:
        problems.append("server.backlog: must be at least 128")
    if server.connections_per_worker < 1:
        problems.append("server.connections_per_worker: must be at least 1")
    for entry in server.trusted_proxies:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            problems.append(f"server.trusted_proxies: not an IP address or CIDR block: {entry!r}")
    if server.max_connections_per_ip < 0:
        problems.append("server.max_connections_per_ip: must not be negative (0 turns it off)")
    return problems


def _node_problems(node: NodeSettings) -> list[str]:
    problems: list[str] = []
    if node.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", node.name):
        problems.append(f"node.name: letters, digits, '.', '_' and '-' only: {node.name!r}")
    if node.address:
        host, _, port = node.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"node.address: host:port expected: {node.address!r}")
    if not 0 <= node.drain_seconds <= 60:
        problems.append("node.drain_seconds: must be between 0 and 60")
    return problems


_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def valid_domain(name: str) -> bool:
    """A DNS name the proxy can get a certificate for (``*.`` allowed in front)."""
    labels = name.lower().removeprefix("*.").split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_DOMAIN_LABEL.match(x) for x in labels)


def _public_problems(public: PublicSettings) -> list[str]:
    problems: list[str] = []
    if public.domain and not valid_domain(public.domain):
        problems.append(f"public.domain: not a DNS name: {public.domain!r}")
    for name in public.extra_names:
        if not valid_domain(name):
            problems.append(f"public.extra_names: not a DNS name: {name!r}")
    if public.acme_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", public.acme_email):
        problems.append(f"public.acme_email: not an email address: {public.acme_email!r}")
    if not public.acme_ca.startswith("https://"):
        problems.append("public.acme_ca: an https:// ACME directory URL is needed")
    for entry in public.behind_proxy:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            problems.append(f"public.behind_proxy: not an IP address or CIDR block: {entry!r}")
    for key in ("http_port", "https_port"):
        if not 0 < getattr(public, key) < 65536:
            problems.append(f"public.{key}: must be between 1 and 65535")
    if public.http_port == public.https_port:
        problems.append("public.http_port and public.https_port must differ")
    return problems


def _account_problems(settings: Settings) -> list[str]:
    """Secrets, token lifetimes and code delivery (the accounts area)."""
    problems: list[str] = []
    security, delivery = settings.security, settings.delivery
    if settings.is_production:
        for key, value, placeholder in (
            ("jwt_key", security.jwt_key, INSECURE_JWT_KEY),
            ("otp_hash_key", security.otp_hash_key, INSECURE_OTP_HASH_KEY),
        ):
            if value == placeholder or len(value) < 32:
                problems.append(
                    f"security.{key}: production needs a generated secret of at least 32 characters"
                )
        # The log backend writes codes into the log: fine on a laptop, never on a real host.
        for channel in ("email", "sms"):
            if getattr(delivery, channel) == "log":
                problems.append(f"delivery.{channel}: the log backend is refused in production")
        if delivery.email == delivery.sms == "disabled":
            problems.append(
                "delivery: both channels are disabled, so nobody could sign in; "
                "set delivery.email or delivery.sms to a backend"
            )
    if not 1 <= settings.auth.access_token_minutes <= 60:
        problems.append("auth.access_token_minutes: must be between 1 and 60")
    if settings.auth.refresh_token_days < 1:
        problems.append("auth.refresh_token_days: must be at least 1")
    if not 0 <= settings.auth.status_cache_seconds <= 60:
        problems.append("auth.status_cache_seconds: must be between 0 and 60")
    if not 0 <= settings.auth.status_cache_heard_seconds <= 3600:
        problems.append("auth.status_cache_heard_seconds: must be between 0 and 3600")
    if settings.otp.max_attempts < 1 or settings.otp.code_ttl_seconds < 30:
        problems.append("otp: max_attempts must be at least 1 and code_ttl_seconds at least 30")
    problems.extend(_delivery_problems(delivery))
    return problems


def _delivery_problems(delivery: DeliverySettings) -> list[str]:
    problems: list[str] = []
    if "webhook" in (delivery.email, delivery.sms):
        if not delivery.webhook.url.startswith(("http://", "https://")):
            problems.append("delivery.webhook.url: an http(s) URL is needed by the webhook backend")
        if len(delivery.webhook.secret) < 16:
            problems.append("delivery.webhook.secret: at least 16 characters are needed to sign")
    if delivery.email == "smtp" and not delivery.smtp.host:
        problems.append("delivery.smtp.host: needed by the smtp backend")
    if delivery.sms == "twilio":
        twilio = delivery.twilio
        if not twilio.base_url.startswith(("http://", "https://")):
            problems.append("delivery.twilio.base_url: an http(s) URL is needed")
        if not (twilio.account_sid and twilio.auth_token):
            problems.append(
                "delivery.twilio.account_sid and auth_token: both are needed by the twilio backend"
            )
        if bool(twilio.from_number) == bool(twilio.messaging_service_sid):
            problems.append(
                "delivery.twilio: set exactly one of from_number and messaging_service_sid"
            )
    return problems
