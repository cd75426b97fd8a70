"""``wingmanctl tls``: import, set-domain and status as real processes, with certificates made
by openssl, the real ``caddy validate``, a running Caddy, and the audit log in PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import tomllib
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from tests.support.proxy import make_certificate, needs_caddy, running_proxy, with_public
from tests.support.services import child_env
from wingman.config import Settings
from wingman.ctl.main import main
from wingman.ctl.output import EXIT_DEGRADED, EXIT_USAGE
from wingman.ops import proxy

pytestmark = needs_caddy


def tls_ctl(env: dict[str, str], *args: str) -> Result:
    """``wingmanctl tls <args>`` in this process (a child process costs seconds of imports)."""
    return CliRunner().invoke(main, ["tls", *args], env=env, catch_exceptions=False)


def audit_rows(settings: Settings, action: str) -> list[dict[str, Any]]:
    url = settings.database.url.replace("postgresql+psycopg", "postgresql", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT actor, target, details FROM audit_log WHERE action = %s ORDER BY created_at",
            (action,),
        ).fetchall()
    return [{"actor": a, "target": t, "details": d} for a, t, d in rows]


def public_table(env: dict[str, str]) -> dict[str, Any]:
    return tomllib.loads(Path(env["WINGMAN_CONFIG"]).read_text()).get("public", {})


def fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_import_checks_the_pair_then_serves_it_audited(settings: Settings, tmp_path: Path) -> None:
    front = with_public(settings, tmp_path)
    env = child_env(front, tmp_path / "env")
    cert, key = make_certificate(tmp_path / "certs", "chat.example.com")
    _, other_key = make_certificate(tmp_path / "certs", "chat.example.com", tag="other")
    old, old_key = make_certificate(tmp_path / "certs", "old.example.com", days=-1)
    before = Path(env["WINGMAN_CONFIG"]).read_text()

    wrong = tls_ctl(env, "import", str(cert), str(other_key))
    assert wrong.exit_code == EXIT_USAGE
    assert "is not the key of" in wrong.stderr
    expired = tls_ctl(env, "import", str(old), str(old_key))
    assert expired.exit_code == EXIT_USAGE
    assert "has expired" in expired.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    unreadable = tls_ctl(env, "import", str(garbage), str(key))
    assert unreadable.exit_code == EXIT_USAGE
    assert "not a PEM certificate" in unreadable.stderr
    # Refused imports change nothing.
    assert Path(env["WINGMAN_CONFIG"]).read_text() == before
    assert not Path(front.public.cert_dir).exists()
    assert not Path(front.public.config_path).exists()

    done = tls_ctl(env, "import", str(cert), str(key), "--json")
    assert done.exit_code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "imported"
    served_cert, served_key = proxy.imported_files(front.public)
    assert served_cert.read_bytes() == cert.read_bytes()
    assert served_key.stat().st_mode & 0o777 == 0o640
    assert public_table(env)["certificate"] == "imported"
    assert f"tls {served_cert} {served_key}" in Path(front.public.config_path).read_text()
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert result["served"]["sha256"] == fingerprint(der)
    audit = [
        row
        for row in audit_rows(settings, "tls.import")
        if row["details"]["sha256"] == fingerprint(der)
    ]
    assert len(audit) == 1
    assert audit[0]["actor"].startswith("cli")
    assert audit[0]["details"]["subject"] == "CN=chat.example.com"

    # The imported certificate is what a running proxy serves, and what status reports.
    imported = with_public(settings, tmp_path, **{**public_table(env), "certificate": "imported"})
    with running_proxy(imported, tmp_path):
        status = tls_ctl(env, "status", "--json")
    assert status.exit_code == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["mode"] == "imported"
    assert report["hsts"] is True
    assert report["served"]["sha256"] == fingerprint(der)
    assert report["served"]["names"] == ["chat.example.com"]


def test_set_domain_renders_acme_and_is_audited(settings: Settings, tmp_path: Path) -> None:
    front = with_public(settings, tmp_path)
    env = child_env(front, tmp_path / "env")
    # As on the appliance: the settings path is a link to the file on the data volume.
    link = tmp_path / "etc-wingman.toml"
    link.symlink_to(env["WINGMAN_CONFIG"])
    env["WINGMAN_CONFIG"] = str(link)
    bad = tls_ctl(env, "set-domain", "not_a domain")
    assert bad.exit_code == EXIT_USAGE
    assert "not a DNS name" in bad.stderr
    bad_email = tls_ctl(env, "set-domain", "chat.example.com", "--email", "nobody")
    assert bad_email.exit_code == EXIT_USAGE
    assert "public.acme_email" in bad_email.stderr
    assert public_table(env)["domain"] == ""

    done = tls_ctl(env, "set-domain", "Chat.Example.com.", "--email", "ops@example.com")
    assert done.exit_code == 0, done.stderr
    assert public_table(env)["domain"] == "chat.example.com"
    assert public_table(env)["acme_email"] == "ops@example.com"
    text = Path(front.public.config_path).read_text()
    assert f"chat.example.com:{front.public.https_port} {{" in text
    assert "email ops@example.com" in text
    assert link.is_symlink()
    audit = audit_rows(settings, "tls.set_domain")
    assert audit[-1]["details"] == {"domain": "chat.example.com", "email": True}

    back = tls_ctl(env, "use-internal", "--json")
    assert back.exit_code == 0, back.stderr
    assert json.loads(back.stdout)["mode"] == "internal"
    assert "tls internal" in Path(front.public.config_path).read_text()
    assert audit_rows(settings, "tls.use_internal")


def test_status_reports_the_served_certificate_and_the_root(
    settings: Settings, tmp_path: Path
) -> None:
    front = with_public(settings, tmp_path)
    env = child_env(front, tmp_path / "env")
    down = tls_ctl(env, "status", "--json")
    assert down.exit_code == EXIT_DEGRADED
    assert json.loads(down.stdout)["served"]["sha256"] is None
    with running_proxy(front, tmp_path):
        context = ssl.create_default_context(cafile=str(proxy.internal_root(front.public)))
        with (
            socket.create_connection(("127.0.0.1", front.public.https_port), 5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            served = conn.getpeercert(binary_form=True)
        status = tls_ctl(env, "status", "--json")
        table = tls_ctl(env, "status")
    assert status.exit_code == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["mode"] == "internal"
    assert report["hsts"] is False
    assert report["served"]["sha256"] == fingerprint(served)
    assert report["served"]["issuer"].startswith("CN=Wingman internal CA")
    root = proxy.internal_root(front.public)
    assert report["internal_root"]["path"] == str(root)
    assert report["internal_root"]["sha256"] == fingerprint(
        ssl.PEM_cert_to_DER_cert(root.read_text())
    )
    assert table.exit_code == 0
    assert report["internal_root"]["sha256"] in table.stdout, table.stdout
