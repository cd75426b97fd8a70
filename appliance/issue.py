"""The console's greeting: where Wingman answers, which certificate it serves, how to log in.

Writes ``/etc/issue.d/wingman.issue``, which the console's login prompt (agetty) shows above
``login:``, and asks running prompts to show it again. Run as root by ``wingman-issue.service``
at boot and every five minutes (``wingman-issue.timer``): the address comes from DHCP and the
internal CA's certificates are renewed, so what the console shows follows them.

It reads ``wingmanctl tls status --json`` (the certificate the proxy serves now, the domain,
the internal CA's root) and the address of this host's default route; what it cannot learn
yet it says so, and the next run fills in.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

ISSUE = Path("/etc/issue.d/wingman.issue")
WINGMANCTL = Path("/opt/wingman/bin/wingmanctl")
ADMIN_USER = "wingman-admin"
SSH_HOST_KEY = Path("/etc/ssh/ssh_host_ed25519_key.pub")
# agetty's escape for the first non-loopback interface's IPv4 address, when none is known here.
AGETTY_ADDRESS = "\\4"


def outward_address() -> str | None:
    """The IPv4 address this host would reach the world from (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith(("0.", "127.")) else address


def tls_facts(timeout: float = 20.0) -> dict[str, Any] | None:
    """``wingmanctl tls status --json``'s report; None when it cannot be read yet."""
    try:
        result = subprocess.run(
            [str(WINGMANCTL), "tls", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        report = json.loads(result.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


def host_key_fingerprint(path: Path) -> str | None:
    """``SHA256:...`` of an SSH public key file, as ``ssh-keygen -l`` shows it; None when
    there is none (yet) or it is not one."""
    try:
        blob = base64.b64decode(path.read_text().split()[1], validate=True)
    except (OSError, IndexError, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def escape(text: str) -> str:
    """Text for an issue file, where a backslash starts one of agetty's escapes."""
    return text.replace("\\", "\\\\")


def render(address: str | None, tls: dict[str, Any] | None, host_key: str | None = None) -> str:
    """The greeting for this host's ``address``, the proxy's TLS facts and the SSH host key's
    fingerprint (any may be unknown)."""
    host = escape(address) if address else AGETTY_ADDRESS
    tls = tls or {}
    domain = tls.get("domain")
    port = tls.get("https_port") or 443
    suffix = "" if port == 443 else f":{port}"
    served = (tls.get("served") or {}).get("sha256")
    root = (tls.get("internal_root") or {}).get("sha256")
    lines = ["Wingman appliance"]
    if domain:
        lines.append(f"  Web:          https://{escape(str(domain))}{suffix}/")
    lines.append(f"  Web here:     https://{host}{suffix}/")
    if served:
        lines.append(f"  Certificate:  SHA-256 {escape(str(served))}")
    else:
        lines.append("  Certificate:  not served yet (the front proxy is starting)")
    if tls.get("mode") == "internal" and root:
        lines.append(f"  Internal CA:  SHA-256 {escape(str(root))} (trust this root)")
    lines.append(f"  Admin login:  ssh {ADMIN_USER}@{host} (SSH keys only), then")
    lines.append("                sudo wingmanctl status")
    if host_key:
        lines.append(f"  SSH host key: ED25519 {escape(host_key)}")
    return "\n".join(lines) + "\n\n"


def write(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` when it changed; True when it did."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.rename(path)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ISSUE)
    parser.add_argument(
        "--no-reload", action="store_true", help="do not ask running login prompts to redraw"
    )
    args = parser.parse_args()
    changed = write(
        args.output, render(outward_address(), tls_facts(), host_key_fingerprint(SSH_HOST_KEY))
    )
    if changed and not args.no_reload:
        # Running prompts show the new text at once; without agetty (a container) nothing to do.
        subprocess.run(["agetty", "--reload"], check=False, capture_output=True)
    print(f"wingman-issue: {'updated' if changed else 'unchanged'} {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
