"""First boot refuses a seed that would leave nobody able to sign in, and writes nothing then."""

from __future__ import annotations

import importlib.util
import stat
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
