"""``wingmanctl tls``: the certificate of the front proxy (see ``wingman/ops/proxy.py``).

``status`` shows the certificate the proxy serves and the internal CA's root; ``set-domain``,
``use-internal`` and ``import`` change how the certificate is obtained. A change is written to
the settings file (so it survives reboots and re-tuning), the proxy's config is rendered from
the new settings and checked with ``caddy validate`` before anything is written, then the
running proxy is reloaded; the change is recorded in ``audit_log`` (actor ``cli:<login>``) in
the same transaction, which commits only when the change went through.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec
import tomli_w
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings, SettingsError, config_paths, load_settings, valid_domain
from wingman.ctl.output import (
    EXIT_DEGRADED,
    EXIT_DOWN,
    EXIT_USAGE,
    cell,
    console,
    emit_object,
    json_option,
    progress,
)
from wingman.ctl.session import cli_actor, cli_settings, run_in_transaction
from wingman.ops import proxy
from wingman.ops.certificates import (
    CertificateError,
    CertificateInfo,
    describe,
    pair_problems,
    served_certificate,
)

STATUS_TIMEOUT = 5.0


@click.group()
def tls() -> None:
    """The HTTPS front door: certificate status, domain, imported certificates."""


# -- status -------------------------------------------------------------------------------------


def _cert_fields(info: CertificateInfo | None) -> dict[str, Any]:
    if info is None:
        return {"subject": None, "issuer": None, "not_after": None, "sha256": None}
    return {
        "subject": info.subject,
        "names": info.names,
        "issuer": info.issuer,
        "not_after": info.not_after.isoformat(),
        "days_left": info.days_left,
        "sha256": info.sha256,
    }


@tls.command()
@json_option
def status(as_json: bool) -> None:
    """The served certificate (subject, issuer, expiry, SHA-256) and the internal CA's root.

    \b
    Exit status:
      0   the proxy answers with a certificate
      1   the proxy does not answer on this host (the rest is still shown)
    """
    settings = cli_settings()
    public = settings.public
    mode = proxy.certificate_mode(public)
    served_der = served_certificate(public, STATUS_TIMEOUT)
    served = describe(served_der, der=True) if served_der else None
    root_path = proxy.internal_root(public)
    root = describe(root_path.read_bytes()) if root_path.is_file() else None
    report: dict[str, Any] = {
        "mode": mode,
        "domain": public.domain or None,
        "names": proxy.site_names(public),
        "config": public.config_path,
        "https_port": public.https_port,
        "served": _cert_fields(served),
        "hsts": mode != "internal",
        "internal_root": {
            "path": str(root_path),
            "sha256": root.sha256 if root else None,
            "subject": root.subject if root else None,
            "not_after": root.not_after.isoformat() if root else None,
        },
    }
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        flat = {
            "mode": mode,
            "domain": public.domain or "(none: internal CA)",
            "served subject": served.subject if served else "(the proxy does not answer)",
            "served names": ", ".join(served.names) if served else None,
            "served issuer": served.issuer if served else None,
            "served expires": (
                f"{served.not_after.isoformat()} ({served.days_left} days)" if served else None
            ),
            "served sha256": served.sha256 if served else None,
            "internal root": str(root_path) if root else f"{root_path} (not made yet)",
            "internal root sha256": root.sha256 if root else None,
            "config": public.config_path,
        }
        _print_pairs(flat)
    if served is None:
        raise SystemExit(EXIT_DEGRADED)


def _print_pairs(pairs: dict[str, Any]) -> None:
    """Two columns that never wrap a value (paths and fingerprints stay whole for copying)."""
    table = Table(show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", no_wrap=True, overflow="fold")
    for key, value in pairs.items():
        table.add_row(key, cell(value))
    console().print(table)


# -- changes ------------------------------------------------------------------------------------


def _settings_file() -> Path:
    return config_paths(os.environ)[0]


def _with_public(changes: dict[str, Any], cert_dir: Path | None = None) -> Settings:
    """The settings as they would be with ``changes`` in the file's ``[public]`` table, fully
    validated through the normal loader (a bad value exits 64 naming the key)."""
    path = _settings_file()
    if not path.is_file():
        click.echo(
            f"error: no settings file at {path} (the appliance's, or WINGMAN_CONFIG's)", err=True
        )
        raise SystemExit(EXIT_USAGE)
    raw = tomllib.loads(path.read_text())
    raw.setdefault("public", {}).update(changes)
    with tempfile.TemporaryDirectory(prefix="wingman-settings-") as scratch:
        candidate = Path(scratch) / "wingman.toml"
        candidate.write_text(tomli_w.dumps(raw))
        environ = dict(os.environ)
        environ["WINGMAN_CONFIG"] = str(candidate)
        environ["WINGMAN_TUNING"] = str(config_paths(os.environ)[1])
        try:
            settings = load_settings(environ)
        except SettingsError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from None
    if cert_dir is not None:
        public = msgspec.structs.replace(settings.public, cert_dir=str(cert_dir))
        settings = msgspec.structs.replace(settings, public=public)
    return settings


def _write_public(changes: dict[str, Any]) -> None:
    # The appliance's /etc/wingman/wingman.toml is a link to the file on the data volume:
    # that file is rewritten, the link stays.
    path = _settings_file().resolve()
    raw = tomllib.loads(path.read_text())
    raw.setdefault("public", {}).update(changes)
    proxy.write_atomically(path, tomli_w.dumps(raw), mode=0o600)


def _check(settings: Settings) -> None:
    try:
        proxy.validate(settings)
    except proxy.ProxyConfigError as exc:
        click.echo(f"error: {exc}; nothing was changed", err=True)
        raise SystemExit(EXIT_USAGE) from None


def _apply(
    action: str,
    changes: dict[str, Any],
    details: dict[str, Any],
    before_write: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Write the settings, install the proxy config, reload; audited in one transaction."""
    current = cli_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        from wingman.db.models import AuditLogEntry

        session.add(
            AuditLogEntry(actor=cli_actor(), action=action, target="proxy", details=details)
        )
        await session.flush()
        if before_write is not None:
            before_write()
        _write_public(changes)
        settings = load_settings()
        try:
            installed = proxy.install(settings)
            done = proxy.reload_running()
        except proxy.ProxyConfigError as exc:
            click.echo(
                f"error: {exc} (the settings file is written; the running proxy keeps its "
                "config until `systemctl reload wingman-proxy` succeeds)",
                err=True,
            )
            raise SystemExit(EXIT_DOWN) from None
        progress(f"{installed.path}: {'written' if installed.changed else 'unchanged'}")
        progress(done)
        return {
            "mode": proxy.certificate_mode(settings.public),
            "domain": settings.public.domain or None,
            "config": str(installed.path),
            "changed": installed.changed,
            "proxy": done,
        }

    return run_in_transaction(current, work)


@tls.command("set-domain")
@click.argument("domain")
@click.option("--email", help="Contact address for the ACME account (expiry notices).")
@json_option
def set_domain(domain: str, email: str | None, as_json: bool) -> None:
    """Serve DOMAIN with certificates obtained and renewed over ACME.

    DOMAIN must resolve to this host, and ports 80 and 443 must reach it from the internet
    (Let's Encrypt, or public.acme_ca) for the HTTP-01 or TLS-ALPN-01 challenge.

    \b
    Exit status:
      0   done (the proxy obtains the certificate in the background)
      2   the database or the proxy could not be reached
      64  not a DNS name, a bad email, no settings file, or a config the proxy refuses
          (nothing changed)
    """
    domain = domain.strip().lower().rstrip(".")
    if not valid_domain(domain):
        click.echo(f"error: not a DNS name: {domain!r}", err=True)
        raise SystemExit(EXIT_USAGE)
    changes: dict[str, Any] = {"domain": domain, "certificate": "auto"}
    if email is not None:
        changes["acme_email"] = email.strip()
    _check(_with_public(changes))
    result = _apply("tls.set_domain", changes, {"domain": domain, "email": bool(email)})
    emit_object(result, as_json=as_json)


@tls.command("use-internal")
@json_option
def use_internal(as_json: bool) -> None:
    """Drop the domain and any imported certificate: the internal CA issues the certificate."""
    changes: dict[str, Any] = {"domain": "", "certificate": "auto"}
    _check(_with_public(changes))
    result = _apply("tls.use_internal", changes, {})
    emit_object(result, as_json=as_json)


@tls.command("import")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def import_(cert: Path, key: Path, as_json: bool) -> None:
    """Serve the team's own certificate: CERT (PEM, with its chain) and its unencrypted KEY.

    The key must belong to the certificate and the certificate must not have expired. The files
    are copied to public.cert_dir (the key readable by the proxy only); renewing is importing
    the new pair.

    \b
    Exit status:
      0   imported and in use
      2   the database or the proxy could not be reached
      64  unreadable files, a key of another certificate, an expired certificate, or a config
          the proxy refuses (nothing changed)
    """
    try:
        problems = pair_problems(cert, key)
        info = describe(cert.read_bytes())
    except CertificateError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    if problems:
        click.echo(f"error: {'; '.join(problems)}", err=True)
        raise SystemExit(EXIT_USAGE)
    changes: dict[str, Any] = {"certificate": "imported"}
    with tempfile.TemporaryDirectory(prefix="wingman-tls-") as scratch:
        _place(cert, key, Path(scratch))
        _check(_with_public(changes, cert_dir=Path(scratch)))
    target = Path(cli_settings().public.cert_dir)
    details = {"subject": info.subject, "sha256": info.sha256, "not_after": str(info.not_after)}
    result = _apply("tls.import", changes, details, before_write=lambda: _place(cert, key, target))
    result["served"] = _cert_fields(info)
    emit_object(result, as_json=as_json)


def _place(cert: Path, key: Path, folder: Path) -> None:
    """Copy the pair into ``folder`` as cert.pem and key.pem: the key owner-only, shared with
    the proxy's group (``caddy``) when that group exists."""
    folder.mkdir(parents=True, exist_ok=True)
    group = _proxy_gid()
    if group is not None:
        os.chown(folder, -1, group)
        folder.chmod(0o750)
    for source, name, mode in ((cert, "cert.pem", 0o644), (key, "key.pem", 0o640)):
        target = folder / name
        proxy.write_atomically(target, source.read_bytes(), mode=mode)
        if group is not None:
            os.chown(target, -1, group)


def _proxy_gid() -> int | None:
    import grp

    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam("caddy").gr_gid
    except KeyError:
        return None


# -- render -------------------------------------------------------------------------------------


@tls.command()
def render() -> None:
    """Print the proxy's config rendered from the settings, checked with ``caddy validate``
    (``wingmanctl tune --apply`` installs it at public.config_path).

    \b
    Exit status:
      0   printed
      2   Caddy is missing or refuses the config
    """
    try:
        text = proxy.validate(cli_settings())
    except proxy.ProxyConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    click.echo(text, nl=False)
