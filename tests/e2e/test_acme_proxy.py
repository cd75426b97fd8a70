"""The ACME path end to end: a domain set in the settings, a certificate obtained from a local
ACME server over a real HTTP-01 challenge, the app served with it, and a renewal.

Debian's ``pebble`` is the ACME server, and its ``pebble-challtestsrv`` the test's own DNS
server, answering 127.0.0.1 for every name: pebble resolves the domain through it and fetches
the challenge from Caddy's HTTP port (both on free ports, so no privileges or namespaces are
needed). Caddy runs the config Wingman renders for the domain, adapted to JSON with three test
knobs only: TLS-ALPN-01 is off, so the HTTP-01 challenge must pass the port-80 site; and pebble
2.4 issues five-year certificates, so the renewal window covers the whole lifetime and the
renewal check runs every two seconds, and the renewal is seen within the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.support.proxy import make_certificate, needs_caddy, running_proxy, with_public
from tests.support.web import running_server
from wingman.config import Settings
from wingman.devstack.processes import free_port, wait_for
from wingman.ops import proxy

pytestmark = [
    pytest.mark.e2e,
    needs_caddy,
    pytest.mark.skipif(
        shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None,
        reason="pebble is not installed (scripts/bootstrap installs it)",
    ),
]

DOMAIN = "chat.wingman.test"


@contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("wb") as out:
        child = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def served_fingerprint(port: int, root: Path) -> str | None:
    """SHA-256 of the certificate served for DOMAIN, verified against pebble's root."""
    context = ssl.create_default_context(cafile=str(root))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), 3) as raw,
            context.wrap_socket(raw, server_hostname=DOMAIN) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


def test_certificate_obtained_served_and_renewed(settings: Settings, tmp_path: Path) -> None:
    dns_port, acme_port, acme_admin, dns_admin = (free_port() for _ in range(4))
    # Pebble's own HTTPS listener: a certificate for localhost, trusted by Caddy for ACME only.
    pebble_cert, pebble_key = make_certificate(
        tmp_path / "pebble", "localhost", san="DNS:localhost,IP:127.0.0.1"
    )
    (tmp_path / "web").mkdir()
    with ExitStack() as stack:
        web = stack.enter_context(running_server(settings, tmp_path / "web"))
        app_port = int(web.url.rsplit(":", 1)[1])
        server = msgspec.structs.replace(settings.server, port=app_port)
        front = with_public(
            msgspec.structs.replace(settings, server=server),
            tmp_path,
            domain=DOMAIN,
            acme_email="ops@wingman.test",
            acme_ca=f"https://localhost:{acme_port}/dir",
            acme_ca_root=str(pebble_cert),
        )
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{acme_port}",
                "managementListenAddress": f"127.0.0.1:{acme_admin}",
                "certificate": str(pebble_cert),
                "privateKey": str(pebble_key),
                # Where pebble validates challenges: Caddy's ports.
                "httpPort": front.public.http_port,
                "tlsPort": front.public.https_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (tmp_path / "pebble.json").write_text(json.dumps(config))
        stack.enter_context(
            process(
                [
                    *("pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
                    *("-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", ""),
                    *("-tlsalpn01", "", "-management", f"127.0.0.1:{dns_admin}"),
                ],
                tmp_path / "dns.log",
            )
        )
        stack.enter_context(
            process(
                [
                    *("pebble", "-config", str(tmp_path / "pebble.json")),
                    *("-dnsserver", f"127.0.0.1:{dns_port}"),
                ],
                tmp_path / "pebble.log",
                # No pauses before validation, no refused nonces: a quick, deterministic run.
                {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
            )
        )
        pebble = stack.enter_context(
            httpx.Client(verify=ssl.create_default_context(cafile=pebble_cert))
        )
        assert wait_for(
            lambda: _answers(pebble, f"https://localhost:{acme_port}/dir"), 15, interval=0.2
        ), (tmp_path / "pebble.log").read_text()

        text = proxy.validate(front)
        assert f"{DOMAIN}:{front.public.https_port} {{" in text
        adapted = subprocess.run(
            [proxy.caddy_binary(), "adapt", "--adapter", "caddyfile", "--config", "/dev/stdin"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        )
        caddy_json = json.loads(adapted.stdout)
        automation = caddy_json["apps"]["tls"].setdefault("automation", {})
        automation["renew_interval"] = "2s"
        for policy in automation.get("policies", []):
            policy["renewal_window_ratio"] = 1.0
            # HTTP-01 only, so the challenge has to come through the proxy's port-80 site.
            for issuer in policy.get("issuers", []):
                issuer["challenges"] = {"tls-alpn": {"disabled": True}}
        (tmp_path / "caddy.json").write_text(json.dumps(caddy_json))
        running = stack.enter_context(running_proxy(front, tmp_path, tmp_path / "caddy.json"))

        root = tmp_path / "pebble-root.pem"
        root.write_text(pebble.get(f"https://127.0.0.1:{acme_admin}/roots/0").text)
        port = front.public.https_port
        first: list[str] = []

        def obtained() -> bool:
            fingerprint = served_fingerprint(port, root)
            first[:] = [fingerprint] if fingerprint else []
            return bool(first)

        assert wait_for(obtained, 40, interval=0.5), running.log_text()[-4000:]
        assert "certificate obtained successfully" in running.log_text()
        assert '"challenge_type":"http-01"' in running.log_text()

        # The app, through the proxy, with the ACME certificate: HTTPS, HSTS, a redirect.
        with httpx.Client(verify=ssl.create_default_context(cafile=root)) as client:
            ready = client.get(
                f"https://127.0.0.1:{port}/health/ready",
                headers={"Host": f"{DOMAIN}:{port}"},
                extensions={"sni_hostname": DOMAIN},
            )
            assert ready.status_code == 200, ready.text
            assert ready.headers["strict-transport-security"] == "max-age=31536000"
            plain = client.get(
                f"http://127.0.0.1:{front.public.http_port}/health/ready",
                headers={"Host": DOMAIN},
            )
            assert plain.status_code == 308
            assert plain.headers["location"] == f"https://{DOMAIN}:{port}/health/ready"

        # Renewal: a new certificate replaces the first one, served without a restart.
        assert wait_for(
            lambda: served_fingerprint(port, root) not in (None, first[0]), 40, interval=1
        ), running.log_text()[-4000:]
        assert "certificate renewed successfully" in running.log_text()


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
