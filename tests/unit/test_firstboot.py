"""First boot refuses a seed that would leave nobody able to sign in, and writes nothing then."""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from wingman.config import parse_settings

FIRSTBOOT = Path(__file__).resolve().parents[2] / "appliance" / "firstboot.py"


@pytest.fixture
def firstboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module, its paths moved under ``tmp_path`` (data volume and /etc)."""
    spec = importlib.util.spec_from_file_location("wingman_firstboot_under_test", FIRSTBOOT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data, etc = tmp_path / "data", tmp_path / "etc"
    data.mkdir()
    etc.mkdir()
    monkeypatch.setattr(module, "DATA", data)
    monkeypatch.setattr(module, "SETTINGS", data / "config" / "wingman.toml")
    monkeypatch.setattr(module, "ETC_SETTINGS", etc / "wingman.toml")
    monkeypatch.setattr(module, "ADMIN_REQUEST", data / "firstboot" / "admin.toml")
    monkeypatch.setattr(module, "CLUSTER", data / "postgresql" / "15" / "main")
    monkeypatch.setattr(module, "SEED_PATHS", (etc / "seed.toml", data / "seed.toml"))
    # The admin's home under tmp_path, made only when keys are written; owned by whoever runs.
    monkeypatch.setattr(module, "ADMIN_HOME", tmp_path / "home")
    monkeypatch.setattr(module, "ADMIN_USER", pwd.getpwuid(os.getuid()).pw_name)
    return module


def written(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.name != "seed.toml")


SMTP_SEED = """
[admin]
email = "admin@example.com"

[settings.delivery]
email = "smtp"

[settings.delivery.smtp]
host = "smtp.example.com"
username = "wingman"
password = "mail-password"
"""

REFUSED = {
    "no delivery": ('[admin]\nemail = "admin@example.com"\n', "configures no code delivery"),
    "log backend": (
        '[settings.delivery]\nemail = "log"\n',
        "delivery.email: the log backend is refused in production",
    ),
    "smtp without a host": (
        '[settings.delivery]\nemail = "smtp"\n',
        "delivery.smtp.host: needed by the smtp backend",
    ),
    "sms without credentials": (
        '[settings.delivery]\nsms = "twilio"\n'
        '[settings.delivery.twilio]\nfrom_number = "+15005550006"\n',
        "delivery.twilio.account_sid and auth_token: both are needed",
    ),
    "webhook without a secret": (
        '[settings.delivery]\nemail = "webhook"\n[settings.delivery.webhook]\nurl = "https://gw.example.com/otp"\n',
        "delivery.webhook.secret: at least 16 characters",
    ),
    "both channels off": (
        '[settings.delivery]\nemail = "disabled"\n',
        "delivery: both channels are disabled, so nobody could sign in",
    ),
    "sms with two senders": (
        '[settings.delivery]\nsms = "twilio"\n[settings.delivery.twilio]\naccount_sid = "AC1"\n'
        'auth_token = "t"\nfrom_number = "+15005550006"\nmessaging_service_sid = "MG1"\n',
        "delivery.twilio: set exactly one of from_number and messaging_service_sid",
    ),
    "development env": (
        '[settings]\nenv = "development"\n[settings.delivery]\nemail = "log"\n',
        "env: the appliance runs in production",
    ),
    "a typo": ('[settings.delivery]\nemail = "smtp"\nsmtp_host = "x"\n', "smtp_host: unknown key"),
    "not toml": ("[settings.delivery\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_seed_without_working_delivery_is_refused_and_nothing_is_written(
    case: str, firstboot: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed, reason = REFUSED[case]
    (tmp_path / "data" / "seed.toml").write_text(seed)
    with pytest.raises(SystemExit) as exited:
        firstboot.prepare()
    assert exited.value.code == 2
    console = capsys.readouterr().out
    assert "refusing to set up this appliance: sign-in would not work" in console
    assert reason in console
    assert "fix: give a seed file whose [settings.delivery] configures" in console
    assert written(tmp_path) == [tmp_path / "data", tmp_path / "etc"]


def test_no_seed_at_all_is_refused(
    firstboot: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        firstboot.prepare()
    assert exited.value.code == 2
    assert "no seed file: a new appliance needs one" in capsys.readouterr().out
    assert written(tmp_path) == [tmp_path / "data", tmp_path / "etc"]


def test_a_seed_with_smtp_is_written_with_the_other_channel_off(
    firstboot: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "etc" / "seed.toml").write_text(SMTP_SEED)
    settings, fresh = firstboot.ensure_settings(firstboot.read_seed())
    assert fresh
    path: Path = firstboot.SETTINGS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "etc" / "wingman.toml").resolve() == path
    stored = tomllib.loads(path.read_text())
    assert stored == settings
    parsed = parse_settings(stored)
    assert (parsed.delivery.email, parsed.delivery.sms) == ("smtp", "disabled")
    assert parsed.delivery.smtp.host == "smtp.example.com"
    # A second boot keeps what the first wrote, whatever the seed says now.
    (tmp_path / "etc" / "seed.toml").write_text("[settings.delivery\n")
    again, fresh_again = firstboot.ensure_settings(None)
    assert (again, fresh_again) == (settings, False)


def test_the_script_starts_as_its_unit_runs_it(tmp_path: Path) -> None:
    """Run as the unit runs it (its imports resolve); an unknown step is a usage error."""
    import subprocess

    result = subprocess.run(
        [sys.executable, str(FIRSTBOOT), "nonsense"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "usage:" in result.stderr


@pytest.fixture
def admin_key(tmp_path: Path) -> tuple[str, str]:
    """A fresh ed25519 public key line (ssh-keygen) and its fingerprint as ssh-keygen shows it."""
    path = tmp_path / "keys" / "admin"
    path.parent.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@laptop", "-f", str(path)],
        check=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()
    return path.with_suffix(".pub").read_text().strip(), listed[1]


def seed_with_keys(keys: str) -> str:
    return SMTP_SEED.replace(
        'email = "admin@example.com"\n',
        f'email = "admin@example.com"\nssh_authorized_keys = {keys}\n',
    )


def test_a_public_key_is_read_strictly_with_the_fingerprint_ssh_keygen_shows(
    firstboot: ModuleType, admin_key: tuple[str, str]
) -> None:
    line, fingerprint = admin_key
    assert firstboot.public_key(line) == (line, fingerprint)
    kind, encoded, _ = line.split()
    bad = {
        "-----BEGIN OPENSSH PRIVATE KEY-----": "a private key",
        encoded: "not a public key line",
        f"ssh-rsa {encoded}": "does not hold a ssh-rsa key",
        f"ssh-dss {encoded}": "does not start with a key type sshd accepts",
        f'from="10.0.0.1" {line}': "does not start with a key type sshd accepts",
        f"{kind} {encoded[:-8]}!!!!!!!!": "base64 does not decode",
        f"{kind} {encoded[:40]}": "cut short",
    }
    for text, reason in bad.items():
        with pytest.raises(ValueError, match=reason) as refused:
            firstboot.public_key(text)
        assert encoded[20:40] not in str(refused.value)


def test_a_bad_key_refuses_a_fresh_volume_without_echoing_it(
    firstboot: ModuleType,
    tmp_path: Path,
    admin_key: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, _ = admin_key
    secret = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    private = f"-----BEGIN OPENSSH PRIVATE KEY-----\\n{secret}\\n-----END OPENSSH PRIVATE KEY-----"
    (tmp_path / "data" / "seed.toml").write_text(seed_with_keys(f'["{line}", "{private}"]'))
    with pytest.raises(SystemExit) as exited:
        firstboot.prepare()
    assert exited.value.code == 2
    console = capsys.readouterr().out
    assert "refusing to set up this appliance: the admin's SSH keys" in console
    assert "admin.ssh_authorized_keys, key 2: a private key" in console
    assert "fix: give [admin] ssh_authorized_keys as a list of public keys" in console
    assert secret not in console
    assert written(tmp_path / "data") == written(tmp_path / "etc") == []
    assert not (tmp_path / "home").exists()


def test_seed_keys_are_written_for_the_admin_and_rewritten_at_every_boot(
    firstboot: ModuleType,
    tmp_path: Path,
    admin_key: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, fingerprint = admin_key
    seed = tmp_path / "etc" / "seed.toml"
    seed.write_text(seed_with_keys(f'["{line}"]'))
    (tmp_path / "home").mkdir()  # made in the image
    # The fresh volume's settings and admin request, without a cluster (no initdb here).
    keys = firstboot.seed_keys(firstboot.read_seed())
    firstboot.ensure_settings(firstboot.read_seed())
    firstboot.write_admin_keys(keys)
    authorized = tmp_path / "home" / ".ssh" / "authorized_keys"
    assert authorized.read_text().splitlines() == [firstboot.KEYS_BEGIN, line, firstboot.KEYS_END]
    assert stat.S_IMODE(authorized.stat().st_mode) == 0o600
    assert stat.S_IMODE(authorized.parent.stat().st_mode) == 0o700
    assert authorized.stat().st_uid == os.getuid()
    assert f"admin SSH key 1: ssh-ed25519 {fingerprint}" in capsys.readouterr().out

    # A key added by cloud-init (or by hand) outside the block stays; the seed's block follows
    # the seed at the next boot, here on the volume already set up.
    other = line.replace("admin@laptop", "from-cloud-init")
    authorized.write_text(other + "\n" + authorized.read_text())
    seed.write_text(SMTP_SEED)
    assert firstboot.kept_volume_keys() == []
    firstboot.write_admin_keys([])
    assert authorized.read_text().splitlines() == [other]
    # A seed with a bad key on a set-up volume is reported and changes nothing.
    seed.write_text(seed_with_keys('["ssh-ed25519 AAAA"]'))
    assert firstboot.kept_volume_keys() is None
    assert "the seed's SSH keys are not used" in capsys.readouterr().out
    assert authorized.read_text().splitlines() == [other]


def test_a_linked_ssh_folder_is_not_followed(
    firstboot: ModuleType, tmp_path: Path, admin_key: tuple[str, str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".ssh").symlink_to(elsewhere)
    firstboot.write_admin_keys([admin_key[0]])
    assert list(elsewhere.iterdir()) == []
    # A linked authorized_keys is neither read nor written through.
    (tmp_path / "home" / ".ssh").unlink()
    (tmp_path / "home" / ".ssh").mkdir()
    target = tmp_path / "elsewhere" / "shadow"
    target.write_text("root:secret-hash:1::::::\n")
    (tmp_path / "home" / ".ssh" / "authorized_keys").symlink_to(target)
    firstboot.write_admin_keys([admin_key[0]])
    assert target.read_text() == "root:secret-hash:1::::::\n"
    assert (tmp_path / "home" / ".ssh" / "authorized_keys").is_symlink()
