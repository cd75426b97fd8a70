"""The console's greeting shows the web address, the certificate and the SSH login."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ISSUE = Path(__file__).resolve().parents[2] / "appliance" / "issue.py"

SERVED = "AB:CD:" + ":".join(["01"] * 30)
ROOT = "EF:12:" + ":".join(["02"] * 30)


@pytest.fixture
def issue() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wingman_issue_under_test", ISSUE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_greeting_names_the_url_the_fingerprints_and_the_login(issue: ModuleType) -> None:
    tls = {
        "mode": "internal",
        "domain": None,
        "https_port": 443,
        "served": {"sha256": SERVED},
        "internal_root": {"sha256": ROOT},
    }
    text = issue.render("10.0.2.15", tls)
    assert "  Web here:     https://10.0.2.15/\n" in text
    assert f"  Certificate:  SHA-256 {SERVED}\n" in text
    assert f"  Internal CA:  SHA-256 {ROOT} (trust this root)\n" in text
    assert "  Admin login:  ssh wingman-admin@10.0.2.15 (SSH keys only)" in text
    assert "sudo wingmanctl status" in text
    assert "Web:" not in text  # no domain configured


def test_a_domain_and_port_show_and_acme_has_no_internal_root_line(issue: ModuleType) -> None:
    tls = {
        "mode": "acme",
        "domain": "chat.example.com",
        "https_port": 8443,
        "served": {"sha256": SERVED},
        "internal_root": {"sha256": ROOT},
    }
    text = issue.render("192.168.1.9", tls)
    assert "  Web:          https://chat.example.com:8443/\n" in text
    assert "  Web here:     https://192.168.1.9:8443/\n" in text
    assert "Internal CA" not in text


def test_what_is_not_known_yet_is_said_and_agetty_fills_the_address(issue: ModuleType) -> None:
    text = issue.render(None, None)
    assert "  Web here:     https://\\4/\n" in text
    assert "ssh wingman-admin@\\4 " in text
    assert "Certificate:  not served yet" in text
    # A backslash in a value is not taken for one of agetty's escapes.
    assert "https://a\\\\b/" in issue.render("a\\b", None)


def test_the_script_writes_the_file_once_and_only_rewrites_a_change(tmp_path: Path) -> None:
    """Run as the unit runs it, on a host without wingmanctl: the greeting says so."""
    output = tmp_path / "issue.d" / "wingman.issue"
    command = [sys.executable, str(ISSUE), "--output", str(output), "--no-reload"]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"wingman-issue: updated {output}"
    text = output.read_text()
    assert text.startswith("Wingman appliance\n")
    assert "Certificate:  not served yet" in text
    assert output.stat().st_mode & 0o777 == 0o644
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.stdout.strip() == f"wingman-issue: unchanged {output}"


def test_the_ssh_host_key_fingerprint_is_the_one_ssh_keygen_shows(
    issue: ModuleType, tmp_path: Path
) -> None:
    key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    fingerprint = issue.host_key_fingerprint(key.with_suffix(".pub"))
    assert fingerprint == listed
    assert f"  SSH host key: ED25519 {listed}\n" in issue.render("10.0.0.2", None, fingerprint)
    assert issue.host_key_fingerprint(tmp_path / "missing.pub") is None
    assert "SSH host key" not in issue.render("10.0.0.2", None, None)
