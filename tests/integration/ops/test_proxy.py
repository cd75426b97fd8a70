"""The front proxy's config, rendered for each certificate mode and checked by the real
``caddy validate``; the internal-CA mode served by a real Caddy in front of a real server."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.support.proxy import (
    make_certificate,
    needs_caddy,
    running_proxy,
    wait_until_trusted,
    with_public,
)
from tests.support.web import running_server
from wingman.config import ServerSettings, Settings, SettingsError, load_settings
from wingman.ops import proxy

pytestmark = needs_caddy


def test_internal_mode_without_a_domain(tmp_path: Path) -> None:
    settings = with_public(Settings(), tmp_path)
    text = proxy.validate(settings)
    assert proxy.certificate_mode(settings.public) == "internal"
    assert "tls internal {\n\t\ton_demand\n\t}" in text
    assert "Strict-Transport-Security" not in text  # the root is not trusted by browsers
    port = settings.public.https_port
    assert f"https://:{port} {{" in text
    assert f"redir https://{{host}}:{port}{{uri}} 308" in text
    assert "protocols h1 h2" in text
    assert "max_size 10000000" in text
    assert "reverse_proxy 127.0.0.1:8000 {" in text
    assert "idle 120s" in text  # realtime heartbeat timeout (60 s) plus a margin
    assert "acme_ca" not in text
    assert proxy.internal_root(settings.public) == (
        tmp_path / "proxy" / "pki" / "authorities" / "local" / "root.crt"
    )


def test_acme_mode_with_domain_email_ca_and_load_balancer(tmp_path: Path) -> None:
    root, _ = make_certificate(tmp_path / "ca", "acme-root.example")
    settings = with_public(
        Settings(server=ServerSettings(port=8123, max_body_bytes=2_000_000)),
        tmp_path,
        domain="chat.example.com",
        extra_names=["wingman.example.org"],
        acme_email="ops@example.com",
        acme_ca="https://acme.internal.example/dir",
        acme_ca_root=str(root),
        behind_proxy=["10.1.0.0/16"],
        http_port=80,
        https_port=443,
    )
    text = proxy.validate(settings)
    assert "chat.example.com, wingman.example.org {" in text
    assert "\tacme_ca https://acme.internal.example/dir\n" in text
    assert "\temail ops@example.com\n" in text
    assert f"\tacme_ca_root {root}\n" in text
    assert 'header Strict-Transport-Security "max-age=31536000"' in text
    assert "redir https://{host}{uri} 308" in text
    assert "max_size 2000000" in text
    assert "reverse_proxy 127.0.0.1:8123 {" in text
    assert "trusted_proxies 10.1.0.0/16" in text
    assert "tls internal" not in text
    # The app believes X-Forwarded-For from the proxy and the load balancer only.
    assert proxy.trusted_proxies(settings) == ["127.0.0.1", "::1", "10.1.0.0/16"]


def test_imported_mode_and_a_config_caddy_refuses(tmp_path: Path) -> None:
    settings = with_public(Settings(), tmp_path, certificate="imported", domain="chat.example.com")
    # No files imported yet: Caddy cannot load them, and nothing is written.
    with pytest.raises(proxy.ProxyConfigError, match="caddy validate refused"):
        proxy.install(settings)
    assert not Path(settings.public.config_path).exists()
    cert, key = make_certificate(tmp_path / "in", "chat.example.com")
    folder = Path(settings.public.cert_dir)
    folder.mkdir()
    (folder / "cert.pem").write_bytes(cert.read_bytes())
    (folder / "key.pem").write_bytes(key.read_bytes())
    installed = proxy.install(settings)
    assert installed.changed
    text = installed.path.read_text()
    assert f"tls {folder / 'cert.pem'} {folder / 'key.pem'}" in text
    assert "Strict-Transport-Security" in text
    assert proxy.install(settings).changed is False  # the same config is not rewritten


def test_public_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "wingman.toml"
    config.write_text(
        '[public]\ndomain = "not a domain"\nbehind_proxy = ["10.0.0.300"]\n'
        'acme_email = "nobody"\nacme_ca = "http://plain.example/dir"\nhttps_port = 80\n'
    )
    with pytest.raises(SettingsError) as raised:
        load_settings({"WINGMAN_CONFIG": str(config)})
    message = str(raised.value)
    for expected in (
        "public.domain: not a DNS name",
        "public.behind_proxy: not an IP address",
        "public.acme_email: not an email address",
        "public.acme_ca: an https:// ACME directory URL is needed",
        "public.http_port and public.https_port must differ",
    ):
        assert expected in message


def non_loopback_address() -> str | None:
    """This host's IPv4 address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_internal_ca_serves_the_app_over_https_and_http2(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "web").mkdir()
    # As the appliance's tuning sets it: the app believes X-Forwarded-For from the proxy only.
    server = msgspec.structs.replace(
        settings.server, max_body_bytes=4096, trusted_proxies=proxy.trusted_proxies(settings)
    )
    app_settings = msgspec.structs.replace(settings, server=server)
    with running_server(app_settings, tmp_path / "web") as web:
        port = int(web.url.rsplit(":", 1)[1])
        behind = msgspec.structs.replace(
            app_settings, server=msgspec.structs.replace(server, port=port)
        )
        front = with_public(behind, tmp_path)
        with running_proxy(front, tmp_path) as running:
            root = proxy.internal_root(front.public)
            assert root.is_file(), running.log_text()[-2000:]
            wait_until_trusted(front.public.https_port, root)
            with httpx.Client(verify=ssl.create_default_context(cafile=root)) as client:
                # Plain HTTP only redirects, to the same path over HTTPS.
                answer = client.get(f"{running.http_url}/health/ready?x=1")
                assert answer.status_code == 308
                assert answer.headers["location"] == f"{running.https_url}/health/ready?x=1"
                ready = client.get(f"{running.https_url}/health/ready")
                assert ready.status_code == 200, ready.text
                assert "strict-transport-security" not in ready.headers
                # The proxy refuses a body above the app's limit before the app sees it.
                big = client.post(
                    f"{running.https_url}/api/v1/auth/otp/request", content=b"x" * 5000
                )
                assert big.status_code == 413
                assert big.headers["content-type"] == "application/problem+json"
                assert big.json()["type"] == "urn:wingman:problem:payload-too-large"
                assert big.headers["x-content-type-options"] == "nosniff"
                assert big.headers["x-frame-options"] == "DENY"
                # Under the limit the request reaches the app (which answers it itself).
                small = client.post(f"{running.https_url}/api/v1/auth/otp/request", json={})
                # A client's own X-Forwarded-For is not believed: from an address that is not
                # loopback, a forged loopback entry does not open /metrics (loopback callers
                # need no token), while the proxy's own call from loopback does.
                outside = non_loopback_address()
                if outside is not None:
                    https_port = front.public.https_port
                    forged = client.get(
                        f"https://{outside}:{https_port}/metrics",
                        headers={"X-Forwarded-For": "127.0.0.1"},
                    )
                    assert forged.status_code == 401, forged.text
                assert client.get(f"{running.https_url}/metrics").status_code == 200
                assert small.json()["type"] == "urn:wingman:problem:validation-failed", small.text
            # HTTP/2 is offered (ALPN), and the certificate verifies for the address used.
            context = ssl.create_default_context(cafile=str(root))
            context.set_alpn_protocols(["h2", "http/1.1"])
            with (
                socket.create_connection(("127.0.0.1", front.public.https_port), 5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                assert tls.selected_alpn_protocol() == "h2"


async def test_the_app_refuses_a_body_above_its_limit_too(settings: Settings) -> None:
    """Without the proxy (development, or a request that got past it) the app answers 413."""
    from litestar.testing import AsyncTestClient

    from wingman.app import create_app

    small = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, max_body_bytes=2048)
    )
    async with AsyncTestClient(app=create_app(small)) as client:
        big = await client.post(
            "/api/v1/auth/otp/request",
            content=b'{"channel": "email", "destination": "' + b"a" * 3000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert big.status_code == 413, big.text
    assert big.json()["type"] == "urn:wingman:problem:payload-too-large"
