"""Boot check: is this Wingman up, and does a user get an AI reply? Over HTTPS and WSS only.

The standard library, and ``websockets`` (a Wingman dependency) for the streamed reply. Every
request goes to the front proxy (Caddy on 443), trusting only the root of the appliance's
internal CA (``/var/lib/wingman/proxy/pki/authorities/local/root.crt``, or ``--cafile``).

Two ways to run it:

``inside``
    In the booted image, by ``wingman-bootcheck.service``, which only starts when the kernel
    (or, in a container, PID 1's) command line holds ``wingman.bootcheck=1``, or the system
    has a credential ``wingman.bootcheck`` (a VM's SMBIOS or fw_cfg). Waits until every
    Wingman unit is active and ``/health/ready`` answers 200 over HTTPS, checks that plain HTTP
    only redirects, that Prometheus and Alertmanager are healthy with every scrape target up,
    that Granian (8000) and the monitoring cannot be reached on the host's own non-loopback
    address while the proxy can, and that ``wingmanctl tls status --json`` reports the served
    certificate, signs in and gets an AI reply streamed over ``wss://``,
    checks ``wingmanctl status --json`` (healthy with every unit and the configured worker
    processes; degraded, naming it, while one worker unit is stopped), that security upgrades
    run daily and that status sees one pending (a local security archive with a newer ``less``)
    and a web server on a replaced library, which ``wingmanctl updates restart`` restarts,
    prints the tuning in force, then stops ``wingman.target``, checks that no Wingman process is
    left, and powers off. The seed file's webhook settings say where the code arrives: this
    script listens there.
    With ``wingman.bootcheck=report`` it only waits for the units and readiness, prints the
    internal CA's root (one ``root:`` line of base64 PEM, for the host to trust) and the tuning
    (a VM whose round trip runs from outside). With ``wingman.bootcheck=again`` (a later
    boot on the data of an earlier one) the user must find the earlier boot's session before
    the round trip; then the tuning is printed and the system powers off.

``remote --base-url URL --cafile ROOT --listen HOST:PORT --secret S``
    From the machine that runs a VM: the same sign-in and reply through a forwarded port, the
    code arriving at a webhook this script serves on ``HOST:PORT``. An ``http://`` base URL (a
    development stack, which has no proxy; the Debian 13 run's ``make run`` check) needs no
    ``--cafile`` and streams over ``ws://``.

Every line starts with ``wingman-bootcheck:``; the last one is ``PASS`` or ``FAIL: why``.
One-time codes come only through the signed webhook; the code itself is never printed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import pwd
import queue
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import connect

UNITS = (
    "wingman-firstboot.service",
    "wingman-tune.service",
    "postgresql@15-main.service",
    "wingman-redis@queue.service",
    "wingman-redis@cache.service",
    "wingman-migrate.service",
    "wingman-web.service",
    "wingman-worker@ai.service",
    "wingman-worker@default.service",
    "wingman-worker@heavy.service",
    "wingman-proxy.service",
    "wingman-prometheus.service",
    "wingman-alertmanager.service",
    "wingman-node-exporter.service",
    "wingman-postgres-exporter.service",
    "wingman-redis-exporter@queue.service",
    "wingman-redis-exporter@cache.service",
)
# The built-in monitoring, on loopback only: Prometheus, Alertmanager, then the exporters.
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
MONITORING_PORTS = (9090, 9093, 9100, 9187, 9121, 9122)
# Prometheus's scrape targets, as job/role.
TARGETS = {"wingman/", "node/", "postgres/", "redis/queue", "redis/cache"}
INTERNAL_ROOT = Path("/var/lib/wingman/proxy/pki/authorities/local/root.crt")
BASE_URL = "https://127.0.0.1"
GRANIAN_PORT = 8000
SEED_PATHS = (
    Path("/etc/wingman/seed.toml"),
    Path("/var/lib/wingman/seed.toml"),
    Path("/sys/firmware/qemu_fw_cfg/by_name/opt/wingman/seed/raw"),
)


class CheckFailed(Exception):
    """One check did not hold; the message says which."""


def say(message: str) -> None:
    print(f"wingman-bootcheck: {message}", flush=True)


# -- the webhook that receives one-time codes ---------------------------------------------------


class CodeInbox:
    """An HTTP server that accepts Wingman's signed code webhook and queues the codes."""

    def __init__(self, listen: str, secret: str) -> None:
        host, _, port = listen.rpartition(":")
        self.codes: queue.Queue[dict[str, Any]] = queue.Queue()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stamp = self.headers.get("X-Wingman-Timestamp", "")
                digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                signed = hmac.compare_digest(
                    self.headers.get("X-Wingman-Signature", ""), "sha256=" + digest.hexdigest()
                )
                self.send_response(204 if signed else 401)
                self.end_headers()
                if signed:
                    inbox.codes.put(json.loads(body))

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, int(port)), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def code_for(self, request_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.codes.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if message.get("request_id") == request_id:
                return str(message["code"])
        raise CheckFailed(f"no code arrived at the webhook within {timeout:.0f} s")

    def close(self) -> None:
        self.server.shutdown()


# -- HTTP ---------------------------------------------------------------------------------------

# Every https:// and wss:// connection verifies against the root given to trust(), and only it
# (no system roots): names and addresses checked, TLS 1.2 at least.
TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def trust(cafile: Path) -> None:
    TLS.load_verify_locations(cafile=str(cafile))


def call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        # 30 s: a VM under TCG on a busy host can take over 10 s to answer one request.
        with urllib.request.urlopen(request, timeout=30, context=TLS) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def expect(status: int, wanted: int, what: str, body: Any) -> None:
    if status != wanted:
        raise CheckFailed(f"{what}: HTTP {status} (wanted {wanted}): {str(body)[:300]}")


def wait_ready(base: str, timeout: float) -> float:
    """Seconds until ``/health/ready`` answered 200."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            status, body = call(base, "GET", "/health/ready")
            if status == 200:
                return time.monotonic() - start
            last = f"HTTP {status}: {str(body)[:200]}"
        except (OSError, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise CheckFailed(f"/health/ready not 200 within {timeout:.0f} s ({last})")


def round_trip(
    base: str, inbox: CodeInbox, email: str, timeout: float, expect_sessions: int = 0
) -> float:
    """Sign in with a code, start a session, send a message; seconds until the reply is done."""
    start = time.monotonic()
    status, body = call(
        base, "POST", "/api/v1/auth/otp/request", {"channel": "email", "destination": email}
    )
    expect(status, 202, "code request", body)
    code = inbox.code_for(body["request_id"], timeout)
    say("code arrived at the webhook")
    status, body = call(
        base, "POST", "/api/v1/auth/otp/verify", {"request_id": body["request_id"], "code": code}
    )
    expect(status, 200, "code verify", body)
    token = body["access_token"]
    say(f"signed in as {body['user']['email']}")
    status, sessions = call(base, "GET", "/api/v1/sessions", None, token)
    expect(status, 200, "sessions", sessions)
    if len(sessions["items"]) < expect_sessions:
        raise CheckFailed(
            f"{len(sessions['items'])} earlier session(s) of this user, wanted {expect_sessions}"
        )
    say(f"{len(sessions['items'])} earlier session(s) of this user")
    if expect_sessions:
        say(read_earlier_session(base, token, sessions["items"]))
    status, session = call(base, "POST", "/api/v1/sessions", {"title": "boot check"}, token)
    expect(status, 201, "session", session)
    # wss:// behind the proxy; ws:// only for a development stack's plain http:// (remote).
    secure = base.startswith("https://")
    ws = ("wss://" if secure else "ws://") + base.split("://", 1)[1] + "/api/v1/ws"
    # The token rides as the second offered subprotocol; the server selects "bearer".
    offered: list[Any] = ["bearer", token]
    tls: dict[str, Any] = {"ssl": TLS} if secure else {}
    with connect(ws, subprotocols=offered, open_timeout=10, **tls) as socket_:
        hello = json.loads(socket_.recv(timeout=10))
        if hello.get("type") != "hello":
            raise CheckFailed(f"the WebSocket did not start with hello: {str(hello)[:200]}")
        socket_.send(json.dumps({"type": "resume", "last_event_id": None}))
        say(f"WebSocket open over {ws.split(':', 1)[0]}:// (hello, resume)")
        status, pair = call(
            base,
            "POST",
            f"/api/v1/sessions/{session['id']}/messages",
            {"content": "She said she loves hiking. What could I answer?"},
            token,
        )
        expect(status, 202, "message", pair)
        ai_id = pair["ai_message"]["id"]
        streamed = stream_reply(socket_, ai_id, timeout)
    status, page = call(base, "GET", f"/api/v1/sessions/{session['id']}/messages", None, token)
    expect(status, 200, "messages", page)
    reply = next(m for m in page["items"] if m["id"] == ai_id)
    if reply["processing_status"] != "done" or not reply["content"].strip():
        raise CheckFailed(
            f"the AI reply is {reply['processing_status']}, {len(reply['content'])} characters"
        )
    if reply["content"] != streamed:
        raise CheckFailed("the streamed text differs from the stored reply")
    scheme = ws.split(":", 1)[0]
    say(f"AI reply streamed over {scheme}:// and stored ({len(reply['content'])} characters)")
    return time.monotonic() - start


def read_earlier_session(base: str, token: str, sessions: list[dict[str, Any]]) -> str:
    """The oldest session (an earlier boot's) still holds its message and the AI reply."""
    oldest = min(sessions, key=lambda item: item["created_at"])
    status, page = call(base, "GET", f"/api/v1/sessions/{oldest['id']}/messages", None, token)
    expect(status, 200, "earlier session's messages", page)
    senders = sorted({m["sender"] for m in page["items"] if m["content"].strip()})
    if not {"user", "ai"} <= set(senders):
        raise CheckFailed(
            f"the earlier session {oldest['id']} has {len(page['items'])} message(s) "
            f"from {senders}: its message and AI reply are gone"
        )
    return (
        f"earlier session {oldest['title']!r} read: {len(page['items'])} messages "
        f"(user and AI reply), created {oldest.get('created_at', '?')}"
    )


def stream_reply(socket_: Any, ai_id: str, timeout: float) -> str:
    """The reply's text as its ``message.delta`` events bring it, until ``message.completed``."""
    text = ""
    deltas = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = json.loads(socket_.recv(timeout=max(0.1, deadline - time.monotonic())))
        data = frame.get("data") or {}
        if frame.get("type") == "ping":
            socket_.send(json.dumps({"type": "pong"}))
        # Deltas name the message (message_id); completed and failed carry the message (id).
        if ai_id not in (data.get("message_id"), data.get("id")):
            continue
        if frame["type"] == "message.delta":
            text = text[: data["offset"]] + data["text"]
            deltas += 1
        elif frame["type"] == "message.completed":
            if deltas == 0:
                raise CheckFailed("the reply completed without any message.delta event")
            say(f"{deltas} message.delta events, then message.completed")
            return text
        elif frame["type"] == "message.failed":
            raise CheckFailed(f"the AI reply failed: {str(data)[:200]}")
    raise CheckFailed(f"the AI reply was not streamed within {timeout:.0f} s")


def plain_http_redirects(host: str) -> str:
    """``http://`` answers only a permanent redirect to the same URL over ``https://``."""
    conn = http.client.HTTPConnection(host, 80, timeout=10)
    try:
        conn.request("GET", "/health/ready")
        response = conn.getresponse()
        location = response.getheader("Location", "")
    finally:
        conn.close()
    if response.status not in (301, 308) or location != f"https://{host}/health/ready":
        raise CheckFailed(
            f"http:// answered {response.status} Location {location!r}, not a redirect"
        )
    return f"{response.status} -> {location}"


# -- inside the booted image --------------------------------------------------------------------


def unit_active(*units: str) -> dict[str, str]:
    result = subprocess.run(
        ["systemctl", "show", "--property=Id,ActiveState", *units],
        capture_output=True,
        text=True,
        check=True,
    )
    states: dict[str, str] = {}
    for block in result.stdout.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[fields.get("Id", "?")] = fields.get("ActiveState", "?")
    return states


def unit_states() -> dict[str, str]:
    return unit_active(*UNITS)


def show_journal(unit: str) -> None:
    """The unit's last log lines on the console, so a failed boot explains itself."""
    result = subprocess.run(
        ["journalctl", "--no-pager", "-o", "cat", "-n", "25", "-u", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        say(f"{unit}: {line}")


def wait_units(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = unit_states()
        failed = [u for u, s in states.items() if s == "failed"]
        if failed:
            for unit in failed:
                show_journal(unit)
            raise CheckFailed(f"failed units: {', '.join(failed)}")
        waiting = [u for u, s in states.items() if s != "active"]
        if not waiting:
            return
        if time.monotonic() > deadline:
            for unit in waiting:
                show_journal(unit)
            raise CheckFailed(f"not active after {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.5)


# The names ``wingmanctl status`` gives the appliance's units.
STATUS_UNITS = (
    "web",
    "worker-ai",
    "worker-default",
    "worker-heavy",
    "postgres",
    "redis-queue",
    "redis-cache",
    "proxy",
)
QUEUES = ("ai", "default", "heavy")


def wingmanctl_status() -> tuple[int, dict[str, Any]]:
    """``wingmanctl status --json``: its exit status and report."""
    result = subprocess.run(
        ["/opt/wingman/bin/wingmanctl", "status", "--json", "--metrics-window", "0.5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise CheckFailed(
            f"wingmanctl status --json printed no report (exit {result.returncode}): "
            f"{result.stderr.strip()[-300:]}"
        ) from None
    return result.returncode, report


def not_ok(report: dict[str, Any]) -> list[str]:
    return [
        f"{row['group']}/{row['name']}: {row['value']}"
        for row in report["rows"]
        if row["state"] != "ok"
    ]


def wait_status(code: int, timeout: float) -> dict[str, Any]:
    """Poll ``wingmanctl status`` until it exits with ``code``; its report."""
    deadline = time.monotonic() + timeout
    while True:
        status, report = wingmanctl_status()
        if status == code:
            return report
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"wingmanctl status exits {status} ({report.get('overall')}), not {code}, "
                f"after {timeout:.0f} s: {not_ok(report)}"
            )
        time.sleep(1)


def expected_worker_processes() -> dict[str, int]:
    """Worker processes per queue: the unit's environment (an override) or the tuning in force."""
    with Path("/etc/wingman/tuning.toml").open("rb") as fh:
        tuned = tomllib.load(fh).get("worker", {}).get("queues", {})
    expected = {}
    for name in QUEUES:
        expected[name] = int(tuned.get(name, {}).get("processes", 1))
        environment = subprocess.run(
            ["systemctl", "show", "--value", "--property=Environment", f"wingman-worker@{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        key = f"WINGMAN_WORKER__QUEUES__{name.upper()}__PROCESSES="
        for word in environment:
            if word.startswith(key):
                expected[name] = int(word.removeprefix(key))
    return expected


def status_check(timeout: float) -> None:
    """``wingmanctl status`` against the systemd units: healthy, then degraded by one worker."""
    # The daily backup timer's job, once: without any backup the appliance's status warns.
    subprocess.run(["systemctl", "start", "wingman-backup.service"], check=True)
    report = wait_status(0, timeout)
    units = {row["name"]: row for row in report["rows"] if row["group"] == "units"}
    missing = [name for name in STATUS_UNITS if name not in units]
    if missing or report["overall"] != "healthy":
        raise CheckFailed(f"wingmanctl status: {report['overall']}, units missing: {missing}")
    down = [name for name, row in units.items() if row["state"] != "ok"]
    if down:
        raise CheckFailed(f"wingmanctl status: healthy but units not up: {down}")
    say(f"wingmanctl status: healthy (exit 0), units up: {', '.join(units)}")
    # Every configured worker process runs and has registered with its queue.
    workers = {
        row["name"]: row["figures"].get("workers")
        for row in report["rows"]
        if row["group"] == "queues"
    }
    expected = expected_worker_processes()
    if workers != expected:
        raise CheckFailed(f"live workers per queue {workers}, configured processes {expected}")
    say(f"worker processes per queue, as configured: {workers}")

    subprocess.run(["systemctl", "stop", "wingman-worker@heavy.service"], check=True)
    try:
        status, report = wingmanctl_status()
        failing = not_ok(report)
        if status != 1 or report["overall"] != "degraded":
            raise CheckFailed(
                f"with wingman-worker@heavy stopped, status exits {status} "
                f"({report['overall']}), not 1 (degraded): {failing}"
            )
        if not any(line.startswith("units/worker-heavy:") for line in failing):
            raise CheckFailed(f"the degraded status does not name worker-heavy: {failing}")
        say(f"wingman-worker@heavy stopped: degraded (exit 1): {'; '.join(failing)}")
    finally:
        subprocess.run(["systemctl", "start", "wingman-worker@heavy.service"], check=True)
    wait_status(0, timeout)
    say("wingman-worker@heavy started again: healthy (exit 0)")


def apt_config(name: str) -> str:
    return subprocess.run(
        ["apt-config", "dump", name], capture_output=True, text=True, check=True
    ).stdout


def outdated_package_config(folder: Path, package: str) -> Path:
    """An apt configuration whose only source is a local security archive that holds a newer
    ``package`` than the installed one: with it, apt sees one pending security upgrade."""
    version, arch = (
        subprocess.run(
            ["dpkg-query", "-W", "-f", f"${{{field}}}", package],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for field in ("Version", "Architecture")
    )
    archive, lists = folder / "archive", folder / "lists"
    for sub in (archive, lists / "partial", folder / "cache" / "archives" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    archive.chmod(0o755)
    (archive / "Packages").write_text(
        f"Package: {package}\nVersion: {version}+wingman1\nArchitecture: {arch}\n"
        f"Maintainer: Wingman <root@localhost>\nFilename: ./{package}.deb\nSize: 1\n"
        "Description: a newer build, for the boot check\n\n"
    )
    (archive / "Release").write_text(
        "Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\n"
        "Codename: bookworm-security\n"
    )
    (folder / "sources.list").write_text(f"deb [trusted=yes] file:{archive} ./\n")
    config = folder / "apt.conf"
    config.write_text(
        f'Dir::Etc::SourceList "{folder}/sources.list";\n'
        f'Dir::Etc::SourceParts "{folder}/none";\n'
        f'Dir::State::Lists "{lists}";\n'
        f'Dir::Cache "{folder}/cache";\n'
    )
    subprocess.run(
        ["apt-get", "update", "-qq"],
        env={**os.environ, "APT_CONFIG": str(config)},
        capture_output=True,
        check=True,
    )
    return config


def updates_row(report: dict[str, Any], name: str) -> dict[str, Any]:
    rows = [r for r in report["rows"] if r["group"] == "updates" and r["name"] == name]
    if not rows:
        raise CheckFailed(f"wingmanctl status has no updates/{name} row")
    return rows[0]


def replace_web_library() -> str:
    """Replace (new file, same content) a shared library that the web server maps and this
    script does not, as a package upgrade does; the path."""
    own = Path("/proc/self/maps").read_text()
    for proc in Path("/proc").iterdir():
        try:
            if "wingman-web.service" not in (proc / "cgroup").read_text():
                continue
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            path = line.split(None, 5)[-1]
            if path.startswith("/opt/wingman/") and path.endswith(".so") and path not in own:
                copy = Path(f"{path}.bootcheck")
                copy.write_bytes(Path(path).read_bytes())
                copy.chmod(Path(path).stat().st_mode)
                copy.replace(path)
                return path
    raise CheckFailed("no library of /opt/wingman mapped by wingman-web.service")


def updates_check(timeout: float) -> str:
    """Security upgrades: enabled daily, seen by ``wingmanctl status`` when one is pending, and
    a service on a replaced library is restarted by ``wingmanctl updates restart``."""
    periodic = apt_config("APT::Periodic")
    if 'APT::Periodic::Unattended-Upgrade "1"' not in periodic:
        raise CheckFailed(f"unattended upgrades are not enabled: {periodic.strip()}")
    if "linux-image-" not in apt_config("Unattended-Upgrade::Package-Blacklist"):
        raise CheckFailed("kernel packages are not held back from unattended upgrades")
    timers = unit_active("apt-daily-upgrade.timer", "wingman-restarts.timer")
    if set(timers.values()) != {"active"}:
        raise CheckFailed(f"upgrade timers not active: {timers}")

    with tempfile.TemporaryDirectory() as folder:
        config = outdated_package_config(Path(folder), "less")
        os.environ["APT_CONFIG"] = str(config)
        try:
            _, report = wingmanctl_status()
        finally:
            del os.environ["APT_CONFIG"]
    security = updates_row(report, "security")
    if "less" not in security["figures"]["packages"]:
        raise CheckFailed(f"a newer 'less' from a security archive is not pending: {security}")
    seen = f"status lists a pending security upgrade ({security['value']})"

    library = replace_web_library()
    status, report = wingmanctl_status()
    restart = updates_row(report, "restart")
    if status != 1 or "wingman-web.service" not in restart["figures"]["wingman"]:
        raise CheckFailed(f"{library} replaced, status exits {status}: {restart}")
    done = subprocess.run(
        ["/opt/wingman/bin/wingmanctl", "updates", "restart", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    rows = json.loads(done.stdout)["restarts"]
    restarted = [row["unit"] for row in rows if row["action"] == "restarted"]
    if done.returncode != 0 or "wingman-web.service" not in restarted:
        raise CheckFailed(f"wingmanctl updates restart exits {done.returncode}: {done.stdout}")
    wait_ready(BASE_URL, timeout)
    report = wait_status(0, timeout)
    if updates_row(report, "restart")["state"] != "ok":
        raise CheckFailed(f"after the restarts: {updates_row(report, 'restart')}")
    return f"updates: {seen}; {library} replaced, restarted {', '.join(restarted)}, healthy again"


def wingman_processes() -> list[str]:
    """Processes of the wingman, caddy or prometheus user (web, workers, the proxy, the
    monitoring) or of a Wingman Redis or the PostgreSQL exporter (the stop must leave none)."""
    owners = {pwd.getpwnam(name).pw_uid for name in ("wingman", "caddy", "prometheus")}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            uid = proc.stat().st_uid
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        ours = uid in owners or "/opt/wingman/" in cmdline
        ours = ours or "redis-server" in cmdline or "prometheus-postgres-exporter" in cmdline
        if ours and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmdline[:80]}")
    return found


SYSTEM_CREDENTIAL = Path("/run/credentials/@system/wingman.bootcheck")


def boot_flag() -> str:
    """The boot check's mode: ``1`` (whole check), ``again`` or ``report``.

    From the system credential ``wingman.bootcheck`` when there is one (a VM gets it from the
    host: ``-smbios type=11,value=io.systemd.credential:wingman.bootcheck=report``), else from
    ``wingman.bootcheck=`` on the kernel command line (PID 1's in a container).
    """
    try:
        value = SYSTEM_CREDENTIAL.read_text().strip()
    except OSError:
        value = ""
    if value:
        return value
    in_container = Path("/run/systemd/container").exists()
    raw = Path("/proc/1/cmdline" if in_container else "/proc/cmdline").read_bytes()
    for word in raw.replace(b"\0", b" ").decode().split():
        if word.startswith("wingman.bootcheck="):
            return word.partition("=")[2]
    return "1"


def psql(query: str) -> str:
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtc", query],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def tuning_report() -> str:
    """The host as this boot saw it and the values running now (PostgreSQL, Granian)."""
    with Path("/etc/wingman/tuning.toml").open("rb") as fh:
        tuning = tomllib.load(fh)
    web_pid = subprocess.run(
        ["systemctl", "show", "--value", "--property=MainPID", "wingman-web.service"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    children = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children += fields[1] == web_pid
    return (
        f"cores={len(os.sched_getaffinity(0))} "
        f"server.workers={tuning['server']['workers']} granian_workers={children} "
        f"max_worker_processes={psql('SHOW max_worker_processes')} "
        f"shared_buffers={psql('SHOW shared_buffers')}"
    )


DATA = Path("/var/lib/wingman")


def data_report() -> str:
    """The file system under /var/lib/wingman: device, type, label, UUID, size, available.

    ``size_bytes=`` and ``avail_bytes=`` (what a service user can still write) are for the host
    to read off the console.
    """
    mount = ("?", "?", "/")
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            where = fields[4]
            rest = fields[fields.index("-") + 1 :]
            inside = str(DATA).startswith(where.rstrip("/") + "/") or where == str(DATA)
            if inside and len(where) >= len(mount[2]):
                mount = (rest[1], rest[0], where)
    source, fstype, where = mount
    names = {"label": "by-label", "uuid": "by-uuid"}
    found = dict.fromkeys(names, "-")
    for key, folder in names.items():
        links = Path("/dev/disk", folder)
        for link in links.iterdir() if links.is_dir() else ():
            if source.startswith("/dev/") and link.resolve() == Path(source).resolve():
                found[key] = link.name
    fs = os.statvfs(DATA)
    size, avail = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    return (
        f"{DATA} on {where} from {source} ({fstype}, label {found['label']}, "
        f"uuid {found['uuid']}): {size / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available "
        f"size_bytes={size} avail_bytes={avail} label={found['label']} uuid={found['uuid']}"
    )


def wait_root(timeout: float) -> Path:
    """The internal CA's root, made by the proxy on its first start."""
    deadline = time.monotonic() + timeout
    while not INTERNAL_ROOT.is_file():
        if time.monotonic() > deadline:
            raise CheckFailed(f"no internal CA root at {INTERNAL_ROOT} after {timeout:.0f} s")
        time.sleep(0.5)
    return INTERNAL_ROOT


def outside_address() -> tuple[str, bool]:
    """An IPv4 address of this host that is not 127.0.0.0/8: an interface's, or one added to the
    loopback device for the check (a container with a private network has no other device);
    either way a socket bound to 127.0.0.1 does not answer on it. True when it was added (and
    must be removed)."""
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    addresses = [shown[i + 1].split("/")[0] for i, word in enumerate(shown) if word == "inet"]
    if addresses:
        return addresses[0], False
    address = "198.51.100.7"  # TEST-NET-2: never routed
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    return address, True


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


def only_proxy_reachable() -> str:
    """From the host's own non-loopback address: 443 answers, Granian's 8000 and the
    monitoring's ports do not."""
    address, made = outside_address()
    try:
        if reachable(address, GRANIAN_PORT):
            raise CheckFailed(f"Granian answers on {address}:{GRANIAN_PORT}: not loopback only")
        exposed = [port for port in MONITORING_PORTS if reachable(address, port)]
        if exposed:
            raise CheckFailed(
                f"monitoring answers on {address}, ports {exposed}: not loopback only"
            )
        if not reachable(address, 443):
            raise CheckFailed(f"the proxy does not answer on {address}:443")
        if not reachable("127.0.0.1", GRANIAN_PORT):
            raise CheckFailed(f"Granian does not answer on 127.0.0.1:{GRANIAN_PORT}")
    finally:
        if made:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)
    return (
        f"{address}:443 answers, {address}:{GRANIAN_PORT} and the monitoring's ports refused "
        "(Granian and the monitoring on loopback only)"
    )


def local_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback HTTP
        return json.loads(response.read())


def monitoring_check(timeout: float) -> str:
    """Prometheus and Alertmanager healthy, Prometheus sending to Alertmanager, and every
    scrape target up (the exporters reaching their PostgreSQL and both Redis roles)."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    error = ""
    while True:
        try:
            for base in (PROMETHEUS, ALERTMANAGER):
                with urllib.request.urlopen(f"{base}/-/healthy", timeout=5) as response:  # noqa: S310
                    if response.status != 200:
                        raise CheckFailed(f"{base}/-/healthy: HTTP {response.status}")
            active = local_json(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
            seen = {
                f"{t['labels']['job']}/{t['labels'].get('role', '')}": t["health"] for t in active
            }
            engines = [
                float(r["value"][1])
                for expr in ("pg_up", "redis_up")
                for r in local_json(f"{PROMETHEUS}/api/v1/query?query={expr}")["data"]["result"]
            ]
            managers = local_json(f"{PROMETHEUS}/api/v1/alertmanagers")["data"]
            if (
                set(seen) == TARGETS
                and set(seen.values()) == {"up"}
                and engines == [1.0, 1.0, 1.0]
                and managers["activeAlertmanagers"]
            ):
                return (
                    f"monitoring: Prometheus and Alertmanager healthy, targets up: "
                    f"{', '.join(sorted(seen))}; PostgreSQL and both Redis reached"
                )
            error = ""
        except (OSError, ValueError, KeyError, CheckFailed) as exc:
            error = f" ({type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            for unit in UNITS[-6:]:
                show_journal(unit)
            raise CheckFailed(f"monitoring not up after {timeout:.0f} s: targets {seen}{error}")
        time.sleep(1)


def tls_status() -> str:
    """``wingmanctl tls status --json`` names the certificate served and the root trusted."""
    result = subprocess.run(
        ["/opt/wingman/bin/wingmanctl", "tls", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise CheckFailed(f"wingmanctl tls status --json: {result.stderr.strip()[-300:]}") from None
    root = ssl.PEM_cert_to_DER_cert(INTERNAL_ROOT.read_text())
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(root).digest())
    if result.returncode != 0 or not report["served"]["sha256"]:
        raise CheckFailed(f"tls status exits {result.returncode}: {report['served']}")
    if report["mode"] != "internal" or report["internal_root"]["sha256"] != fingerprint:
        raise CheckFailed(f"tls status: mode {report['mode']}, root {report['internal_root']}")
    return (
        f"tls status: {report['served']['subject'] or report['served']['names']} issued by "
        f"{report['served']['issuer']}, root sha256 {fingerprint[:23]}..."
    )


def inside(timeout: float) -> None:
    """``wingman.bootcheck=1``: the whole check; ``=again``: the round trip must find the
    earlier boot's session, then the tuning; ``=report``: units, readiness, tuning only."""
    flag = boot_flag()
    if flag == "report":
        wait_units(timeout)
        say("every Wingman unit is active")
        trust(wait_root(timeout))
        wait_ready(BASE_URL, timeout)
        say("READY /health/ready 200 over https://")
        say(f"data: {data_report()}")
        say(f"root: {base64.b64encode(INTERNAL_ROOT.read_bytes()).decode()}")
        say(f"tuned: {tuning_report()}")
        return
    seed = next((tomllib.loads(p.read_text()) for p in SEED_PATHS if p.is_file()), None)
    if seed is None:
        raise CheckFailed("no seed file: the check needs the webhook settings of one")
    webhook = seed["settings"]["delivery"]["webhook"]
    where = urlsplit(webhook["url"])
    inbox = CodeInbox(f"{where.hostname}:{where.port}", webhook["secret"])
    try:
        wait_units(timeout)
        say("every Wingman unit is active")
        base = BASE_URL
        trust(wait_root(timeout))
        wait_ready(base, timeout)
        say("READY /health/ready 200 over https://, trusting only the internal CA's root")
        say(f"data: {data_report()}")
        say(f"http:// redirects: {plain_http_redirects('127.0.0.1')}")
        say(monitoring_check(timeout))
        say(only_proxy_reachable())
        say(tls_status())
        earlier = 1 if flag == "again" else 0
        seconds = round_trip(base, inbox, "bootcheck@example.com", timeout, earlier)
        say(f"round trip: sign-in, session, message, AI reply in {seconds:.1f} s")
    finally:
        inbox.close()
    if flag == "again":
        say(f"tuned: {tuning_report()}")
        return
    status_check(timeout)
    say(updates_check(timeout))
    say(f"tuned: {tuning_report()}")
    stop_check()


def stop_check() -> None:
    """``systemctl stop wingman.target`` leaves no Wingman process behind."""
    started = time.monotonic()
    subprocess.run(["systemctl", "stop", "wingman.target"], check=True)
    # The target's own stop job ends at once; its parts stop in their own time (graceful drains).
    while any(state not in ("inactive", "failed") for state in unit_states().values()):
        if time.monotonic() - started > 90:
            raise CheckFailed(f"units still stopping after 90 s: {unit_states()}")
        time.sleep(0.2)
    say(f"wingman.target stopped in {time.monotonic() - started:.1f} s")
    left = wingman_processes()
    if left:
        raise CheckFailed(f"processes left after `systemctl stop wingman.target`: {left}")
    say("stop wingman.target: no Wingman process left")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["inside", "remote"])
    parser.add_argument("--base-url", default=BASE_URL)
    parser.add_argument(
        "--cafile", type=Path, help="The internal CA's root to trust (remote; PEM)."
    )
    parser.add_argument("--listen", help="HOST:PORT for the code webhook (remote).")
    parser.add_argument("--secret", help="The webhook secret of the seed (remote).")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--email", default="bootcheck@example.com")
    parser.add_argument(
        "--expect-sessions",
        type=int,
        default=0,
        help="Sessions the user must already have (data kept across a reboot; remote).",
    )
    parser.add_argument("--poweroff", action="store_true", help="Power off when done (inside).")
    args = parser.parse_args()
    try:
        if args.mode == "inside":
            inside(args.timeout)
        else:
            if not args.listen or not args.secret:
                parser.error("remote needs --listen and --secret")
            if args.base_url.startswith("https://"):
                if not args.cafile:
                    parser.error("remote over https:// needs --cafile (the internal CA's root)")
                trust(args.cafile)
            inbox = CodeInbox(args.listen, args.secret)
            try:
                say(f"READY after {wait_ready(args.base_url, args.timeout):.1f} s of polling")
                seconds = round_trip(
                    args.base_url, inbox, args.email, args.timeout, args.expect_sessions
                )
                say(f"round trip: sign-in, session, message, AI reply in {seconds:.1f} s")
            finally:
                inbox.close()
        say("PASS")
        status = 0
    except (CheckFailed, OSError, KeyError, ValueError, subprocess.CalledProcessError) as exc:
        say(f"FAIL: {exc}")
        status = 1
    if args.poweroff and not (args.mode == "inside" and boot_flag() == "report"):
        subprocess.run(["systemctl", "--no-block", "poweroff"], check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
