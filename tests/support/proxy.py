"""A real Caddy front proxy with the config Wingman renders, and certificates made with openssl.

Caddy (Debian package ``caddy``) is installed by ``scripts/bootstrap``; tests that need it are
skipped, saying so, where it is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from tests.support.certificates import self_signed, valid_for
from wingman.config import PublicSettings, Settings
from wingman.devstack.processes import free_port, wait_for
from wingman.ops import proxy

needs_caddy = pytest.mark.skipif(
    shutil.which("caddy") is None, reason="caddy is not installed (scripts/bootstrap installs it)"
)


def with_public(settings: Settings, folder: Path, **public: object) -> Settings:
    """``settings`` with a ``[public]`` table of free ports and storage under ``folder``."""
    values: dict[str, object] = {
        "http_port": free_port(),
        "https_port": free_port(),
        "state_dir": str(folder / "proxy"),
        "cert_dir": str(folder / "tls"),
        "config_path": str(folder / "Caddyfile"),
        "admin_address": f"localhost:{free_port()}",
    }
    values.update(public)
    return msgspec.structs.replace(settings, public=msgspec.convert(values, PublicSettings))


@dataclass
class RunningProxy:
    settings: Settings
    log: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.public.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.public.http_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_proxy(
    settings: Settings, folder: Path, json_config: Path | None = None
) -> Iterator[RunningProxy]:
    """``caddy run`` with the validated, installed config of ``settings`` (or that config
    adapted to JSON and changed by the test: ``json_config``); SIGTERM at the end."""
    installed = proxy.install(settings)
    log = folder / "caddy.log"
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "XDG_CONFIG_HOME": str(folder / "caddy-config"),
        "XDG_DATA_HOME": str(folder / "caddy-data"),
    }
    command = [proxy.caddy_binary(), "run"]
    if json_config is None:
        command += ["--adapter", "caddyfile", "--config", str(installed.path)]
    else:
        command += ["--config", str(json_config)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningProxy(settings, log)
    try:
        port = settings.public.https_port
        assert wait_for(lambda: _listening(port), 20, interval=0.1), running.log_text()[-3000:]
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_until_trusted(port: int, root: Path, server_name: str = "127.0.0.1") -> None:
    """Wait (up to 10 s) until the proxy's TLS handshake on ``port`` verifies against ``root``.

    The proxy obtains its certificate while it starts; a handshake in the first moments may
    find none yet, or (seen once on Debian 13) one not yet valid by the client's clock.
    """
    context = ssl.create_default_context(cafile=root)
    failures: list[str] = []

    def verified() -> bool:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname=server_name),
            ):
                return True
        except (OSError, ssl.SSLError) as exc:
            failures.append(str(exc))
            return False

    assert wait_for(verified, 10, interval=0.1), failures[-3:]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_certificate(
    folder: Path, name: str, *, days: int = 30, tag: str = "ok", san: str = ""
) -> tuple[Path, Path]:
    """A self-signed EC certificate for ``name`` (and ``san``, openssl's subjectAltName syntax)
    and its key; ``days=-1``: one that expired a day ago."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = (folder / f"{name}-{tag}.{kind}" for kind in ("crt", "key"))
    self_signed(cert, key, name, not_after=valid_for(days), san=san)
    return cert, key
