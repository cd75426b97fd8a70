"""The appliance's front proxy: Caddy on ports 80 and 443 in front of Granian on loopback.

Its Caddyfile is rendered from the ``[public]`` settings (``appliance/caddy/Caddyfile.tmpl``),
never edited by hand. Three ways to a certificate, chosen by :func:`certificate_mode`:

``acme``
    ``public.domain`` is set: certificates over ACME (``public.acme_ca``, Let's Encrypt by
    default) for the domain and ``public.extra_names``, renewed by Caddy; HSTS is sent.
``internal``
    No domain: Caddy's own CA issues a certificate for whatever name or address a client uses
    (on demand); its root is at :func:`internal_root` for the admin to fetch and trust. No HSTS:
    browsers have not been told to trust that root.
``imported``
    ``public.certificate = "imported"``: ``cert.pem`` and ``key.pem`` in ``public.cert_dir``
    (``wingmanctl tls import``); HSTS is sent.

Every config is checked with ``caddy validate`` before it is written (atomically) or loaded, so
an invalid config never reaches the running proxy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wingman.config import PublicSettings, Settings
from wingman.ops.templates import render

CertificateMode = Literal["acme", "internal", "imported"]
PROXY_UNIT = "wingman-proxy.service"
TEMPLATE = "caddy/Caddyfile.tmpl"
# The proxy keeps idle client connections open at least this much longer than the realtime
# heartbeat timeout, so a quiet but live WebSocket is never cut by the proxy first.
IDLE_MARGIN_SECONDS = 60
HSTS_MAX_AGE = 31_536_000  # one year
LOOPBACK = ("127.0.0.1", "::1")


class ProxyConfigError(RuntimeError):
    """The rendered config was refused by ``caddy validate`` (or Caddy is missing)."""


def certificate_mode(public: PublicSettings) -> CertificateMode:
    if public.certificate == "imported":
        return "imported"
    return "acme" if public.domain else "internal"


def imported_files(public: PublicSettings) -> tuple[Path, Path]:
    """Where an imported certificate and its key live."""
    folder = Path(public.cert_dir)
    return folder / "cert.pem", folder / "key.pem"


def internal_root(public: PublicSettings) -> Path:
    """The root certificate of Caddy's internal CA (made on the proxy's first start)."""
    return Path(public.state_dir) / "pki" / "authorities" / "local" / "root.crt"


def site_names(public: PublicSettings) -> list[str]:
    return [name for name in [public.domain, *public.extra_names] if name]


def trusted_proxies(settings: Settings) -> list[str]:
    """What the app believes X-Forwarded-For from: the proxy on loopback and a load balancer."""
    return [*LOOPBACK, *settings.public.behind_proxy]


def render_caddyfile(settings: Settings, *, state_dir: str | None = None) -> str:
    """The Caddyfile for these settings (``state_dir`` overrides the storage, for validation)."""
    public = settings.public
    mode = certificate_mode(public)
    names = site_names(public)
    https_suffix = "" if public.https_port == 443 else f":{public.https_port}"
    if mode == "internal" or not names:
        # Any name or address the host is reached by; no SNI (an address) works too.
        addresses = f"https://{https_suffix}" if https_suffix else "https://"
    else:
        addresses = ", ".join(f"{name}{https_suffix}" for name in names)
    acme_options = ""
    if mode == "acme":
        acme_options = f"\tacme_ca {public.acme_ca}\n"
        if public.acme_email:
            acme_options += f"\temail {public.acme_email}\n"
        if public.acme_ca_root:
            acme_options += f"\tacme_ca_root {public.acme_ca_root}\n"
    if mode == "acme":
        tls = ""  # automatic HTTPS: ACME with the global email and CA
        story = f"ACME ({public.acme_ca}) for {', '.join(names)}"
    elif mode == "imported":
        cert, key = imported_files(public)
        tls = f"\ttls {cert} {key}\n"
        story = f"imported ({cert})"
    else:
        tls = "\ttls internal {\n\t\ton_demand\n\t}\n"
        story = f"internal CA (root: {internal_root(public)})"
    hsts = (
        ""
        if mode == "internal"
        else f'\theader Strict-Transport-Security "max-age={HSTS_MAX_AGE}"\n'
    )
    proxies = ""
    if public.behind_proxy:
        # X-Forwarded-* from the load balancer are passed on; from anyone else, replaced.
        proxies = f"\t\ttrusted_proxies {' '.join(public.behind_proxy)}\n"
    heartbeat = settings.realtime.heartbeat_timeout_seconds
    return render(
        TEMPLATE,
        {
            "certificate_story": story,
            "admin_address": public.admin_address,
            "state_dir": state_dir or public.state_dir,
            "http_port": public.http_port,
            "https_port": public.https_port,
            "acme_options": acme_options,
            "heartbeat_seconds": f"{heartbeat:g}",
            "idle_seconds": f"{int(heartbeat) + IDLE_MARGIN_SECONDS}s",
            "trusted_proxies": proxies,
            "https_suffix": https_suffix,
            "site_addresses": addresses,
            "tls_directive": tls,
            "hsts": hsts,
            "max_body_bytes": settings.server.max_body_bytes,
            "upstream": f"127.0.0.1:{settings.server.port}",
        },
    )


def caddy_binary() -> str:
    # Services run with a short PATH; Debian installs it here.
    found = shutil.which("caddy") or shutil.which("caddy", path="/usr/bin")
    if found is None:
        raise ProxyConfigError("caddy is not installed (Debian package `caddy`)")
    return found


def validate(settings: Settings) -> str:
    """Render and check the config with ``caddy validate``; return the text to install.

    Caddy provisions the config to check it, and provisioning the internal CA writes its keys
    into the storage: the check runs on a copy whose storage is a throw-away folder, so that
    it never makes files in the real one (owned by the proxy's user).
    """
    text = render_caddyfile(settings)
    with tempfile.TemporaryDirectory(prefix="wingman-caddy-") as scratch:
        check = Path(scratch) / "Caddyfile"
        check.write_text(render_caddyfile(settings, state_dir=str(Path(scratch) / "storage")))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "XDG_DATA_HOME": scratch,
            "XDG_CONFIG_HOME": scratch,
        }
        result = subprocess.run(
            [caddy_binary(), "validate", "--adapter", "caddyfile", "--config", str(check)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )
    if result.returncode != 0:
        raise ProxyConfigError(f"caddy validate refused the config: {_caddy_error(result.stderr)}")
    return text


def _caddy_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    changed: bool


def install(settings: Settings) -> Installed:
    """Validate, then write the Caddyfile atomically if it differs from what is there."""
    text = validate(settings)
    path = Path(settings.public.config_path)
    if path.is_file() and path.read_text() == text:
        return Installed(path, changed=False)
    write_atomically(path, text, mode=0o644)
    return Installed(path, changed=True)


def write_atomically(path: Path, text: str | bytes, *, mode: int) -> None:
    """Write a sibling file, fsync it and rename it over ``path``: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(partial).replace(path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def reload_running() -> str:
    """Ask systemd to reload the proxy when it runs (its ExecReload validates and swaps the
    config in; on failure the old one stays live). Returns what was done."""
    return _when_running("reload", "the config")


def restart_running() -> str:
    """Restart the proxy when it runs, so it reads restored storage (``wingmanctl restore
    --with-files``): a reload keeps the certificates and CA it already holds in memory, and a
    start lets systemd give its StateDirectory back to the proxy's user."""
    return _when_running("restart", "its storage")


def _when_running(verb: Literal["reload", "restart"], what: str) -> str:
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return f"no systemd here: the proxy reads {what} when it starts"
    active = subprocess.run(
        ["systemctl", "is-active", "--quiet", PROXY_UNIT], check=False
    ).returncode
    if active != 0:
        return f"{PROXY_UNIT} is not running: it reads {what} when it starts"
    result = subprocess.run(
        ["systemctl", verb, PROXY_UNIT], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProxyConfigError(f"systemctl {verb} {PROXY_UNIT}: {result.stderr.strip()}")
    return f"{PROXY_UNIT} {verb}ed"
