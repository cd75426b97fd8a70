"""Operating-system updates against the real thing: apt reading a local security archive, a
process whose program was replaced while it runs, and ``wingmanctl updates`` on both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wingman.ctl.main import main
from wingman.ops import os_updates

pytestmark = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-query") is None,
    reason="needs a Debian system (apt-get, dpkg-query)",
)


def installed(package: str, field: str = "Version") -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f", f"${{{field}}}", package],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def archive(folder: Path, label: str, suite: str, package: str) -> None:
    """A flat archive holding a newer ``package`` than the installed one."""
    folder.mkdir(parents=True, mode=0o755)
    (folder / "Packages").write_text(
        f"Package: {package}\nVersion: {installed(package)}+test1\n"
        f"Architecture: {installed(package, 'Architecture')}\nMaintainer: Test <t@localhost>\n"
        f"Filename: ./{package}.deb\nSize: 1\nDescription: newer\n\n"
    )
    (folder / "Release").write_text(f"Origin: Debian\nLabel: {label}\nSuite: {suite}\n")


@pytest.fixture
def apt_env(tmp_path: Path) -> dict[str, str]:
    """An apt configuration whose only sources are two local archives: a security one with a
    newer ``dpkg``, a regular one with a newer ``base-files`` (both on every Debian system);
    lists not fetched yet."""
    tmp_path.chmod(0o755)
    archive(tmp_path / "security", "Debian-Security", "stable-security", "dpkg")
    archive(tmp_path / "main", "Debian", "stable", "base-files")
    (tmp_path / "sources.list").write_text(
        f"deb [trusted=yes] file:{tmp_path}/security ./\n"
        f"deb [trusted=yes] file:{tmp_path}/main ./\n"
    )
    for sub in ("lists/partial", "cache/archives/partial", "parts"):
        (tmp_path / sub).mkdir(parents=True)
    config = tmp_path / "apt.conf"
    config.write_text(
        f'Dir::Etc::SourceList "{tmp_path}/sources.list";\n'
        f'Dir::Etc::SourceParts "{tmp_path}/parts";\n'
        f'Dir::State::Lists "{tmp_path}/lists";\n'
        f'Dir::Cache "{tmp_path}/cache";\n'
        'Debug::NoLocking "true";\n'
    )
    return {**os.environ, "APT_CONFIG": str(config)}


def test_apt_reports_the_pending_upgrades_and_which_are_security(
    apt_env: dict[str, str],
) -> None:
    assert not os_updates.lists_fetched(apt_env)
    subprocess.run(["apt-get", "update", "-qq"], env=apt_env, capture_output=True, check=True)
    assert os_updates.lists_fetched(apt_env)

    found = {u.name: u for u in os_updates.pending_upgrades(apt_env)}
    assert set(found) == {"dpkg", "base-files"}
    assert found["dpkg"].security
    assert not found["base-files"].security
    assert found["dpkg"].candidate == f"{installed('dpkg')}+test1"


def test_wingmanctl_updates_show_lists_them(
    apt_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["apt-get", "update", "-qq"], env=apt_env, capture_output=True, check=True)
    monkeypatch.setenv("APT_CONFIG", apt_env["APT_CONFIG"])
    result = CliRunner().invoke(main, ["updates", "show", "--json"])
    assert result.exit_code == 1, result.output  # a security upgrade is pending
    shown = json.loads(result.stdout)
    assert shown["security_pending"] == 1
    assert shown["lists_fetched"] is True
    assert {u["name"]: u["security"] for u in shown["upgrades"]} == {
        "dpkg": True,
        "base-files": False,
    }

    table = CliRunner().invoke(main, ["updates", "show"])
    assert table.exit_code == 1
    assert "1 security and 1 other upgrade(s) pending" in table.stdout


def test_a_broken_apt_configuration_is_an_error_not_nothing_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "apt.conf"
    broken.write_text("this is { not apt syntax\n")
    monkeypatch.setenv("APT_CONFIG", str(broken))
    with pytest.raises(os_updates.AptError, match="apt-get exited"):
        os_updates.pending_upgrades()
    result = CliRunner().invoke(main, ["updates", "show", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["apt_error"].startswith("apt-get exited")


def test_a_process_on_a_replaced_program_is_found(tmp_path: Path) -> None:
    program = tmp_path / "python-copy"
    shutil.copy2(sys.executable, program)
    child = subprocess.Popen([str(program), "-c", "import time; time.sleep(60)"])
    try:
        assert os_updates.replaced_files(child.pid) == set()
        # An upgrade writes the new file beside the old one and renames it over: the running
        # process keeps the old, now deleted, one.
        fresh = tmp_path / "python-copy.new"
        shutil.copy2(sys.executable, fresh)
        fresh.replace(program)
        # Under /tmp, not a system folder: ignored, as a replaced file outside packages is.
        assert os_updates.replaced_files(child.pid) == set()
        seen = os_updates.replaced_files(child.pid, roots=(str(tmp_path),))
        assert seen == {str(program)}
    finally:
        child.kill()
        child.wait()
    assert os_updates.replaced_files(child.pid) == set()  # gone: nothing, no error


def test_restart_dry_run_restarts_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "wingman.toml"
    settings.write_text('[updates]\nrestart_window = "sun 03:00-04:00"\n')
    monkeypatch.setenv("WINGMAN_CONFIG", str(settings))
    result = CliRunner().invoke(main, ["updates", "restart", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["window"] == "sun 03:00-04:00"
    assert all(row["action"] != "restarted" for row in shown["restarts"])

    settings.write_text('[updates]\nrestart_window = "whenever"\n')
    refused = CliRunner().invoke(main, ["updates", "restart", "--dry-run"])
    assert refused.exit_code == 1
    assert "restart window 'whenever'" in refused.output
