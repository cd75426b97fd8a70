"""The wheel and sdist build, and the wheel installs into a fresh venv and finds its files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_wheel_installs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, REPO)
    wheel = next(dist.glob("wingman-*.whl"))
    assert next(dist.glob("wingman-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "wingman/_migrations/env.py" in names
    assert "wingman/_appliance/redis/queue.conf.tmpl" in names
    # The API docs page's own copy of its user interface, with its licence.
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js", "LICENSE"):
        assert f"wingman/server/api_docs_ui/{name}" in names
    # The web client at /.
    for name in ("index.html", "app.js", "chat.js", "realtime.js", "style.css"):
        assert f"wingman/web/static/{name}" in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    # The locked dependencies come from the installer's cache after bootstrap; uv may still ask
    # the registry whether a cached wheel is fresh (its cache policy), so not --offline.
    run(
        sys.executable, "-m", "uv", "pip", "install", "--quiet",
        "--python", venv / "bin" / "python", "-c", REPO / "requirements.lock", wheel,
    )  # fmt: skip
    probe = (
        "from wingman.db.migrations import head_revision, script_location\n"
        "from wingman.resources import shipped_dir\n"
        "print(head_revision(), script_location().name, shipped_dir('appliance').name)\n"
    )
    out = run(venv / "bin" / "python", "-c", probe, env={"PATH": "/usr/bin:/bin"})
    assert out.split()[1:] == ["_migrations", "_appliance"]
    assert "Usage: wingmanctl" in run(venv / "bin" / "wingmanctl", "--help")
    # One command line: the units run `wingmanctl serve|worker`, and no `wingman` script is made.
    assert not (venv / "bin" / "wingman").exists()
    assert "Usage: wingmanctl" in run(venv / "bin" / "python", "-m", "wingman", "--help")
