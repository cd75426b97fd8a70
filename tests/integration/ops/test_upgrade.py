"""`wingmanctl upgrade` end to end: real bundles into an environment laid out like /opt/wingman.

The module builds Wingman 1.0.0 from this tree and installs it into a fresh environment whose
dependencies (and pip) come from this checkout's environment through a ``.pth`` file, so nothing
is downloaded. `scripts/build-bundle --no-deps` makes three bundles from copies of the tree:
1.1.0 (one more migration), 1.2.0 (a build whose app does not import) and 1.3.0 (a migration
that fails). A development stack runs web and workers from that environment, and each command
runs as an operator would: ``<venv>/bin/python -m wingman.ctl upgrade …`` from the environment
being upgraded.

The tests run in file order: the report, the refusals and the failed upgrades first (each must
leave 1.0.0 serving and the data as it was), the successful upgrade last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.services import wait_until_ready
from wingman.db.migrations import head_revision
from wingman.devstack.processes import free_port
from wingman.devstack.stack import DATABASE, DevStack

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
TREE = ("pyproject.toml", "README.md", "requirements.lock", "src", "migrations", "appliance")
PROBE_MIGRATION = '''"""A table only the upgrade tests create.

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
'''


@dataclass
class Installation:
    venv: Path
    data_dir: Path
    bundles: dict[str, Path]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def base_url(self) -> str:
        state = DevStack(self.data_dir).load_state()
        assert state is not None
        return f"http://127.0.0.1:{state.web_port}"

    @property
    def database_url(self) -> str:
        url = DevStack(self.data_dir).postgres().url(DATABASE)
        return url.replace("postgresql+psycopg://", "postgresql://")


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WINGMAN_", "VIRTUAL_ENV"))}


def ctl(inst: Installation, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``wingmanctl <args> --data-dir <stack>``, run by the environment being upgraded."""
    return run(
        inst.python, "-m", "wingman.ctl", *args, "--data-dir", inst.data_dir, env=clean_env()
    )


def copy_tree(into: Path) -> Path:
    into.mkdir(parents=True)
    for part in TREE:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, into / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / part)
    return into


def add_migration(tree: Path, revision: str, body: str) -> None:
    text = PROBE_MIGRATION.format(revision=revision, down=head_revision(), body=body)
    (tree / "migrations" / "versions" / f"2099_01_01_{revision}.py").write_text(text)


def build_bundle(tree: Path, version: str, out: Path) -> Path:
    env = clean_env() | {"PYTHON": sys.executable, "OUT": str(out)}
    result = run(
        REPO / "scripts" / "build-bundle", "--source", tree, "--version", version, "--no-deps",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bundle = Path(result.stdout.strip())
    assert bundle.name == f"wingman-{version}-bundle.tar"
    return bundle


def installed_version(inst: Installation) -> tuple[str, str]:
    """The version and the file of the ``wingman`` the environment imports."""
    probe = "import importlib.metadata as m, wingman; print(m.version('wingman'), wingman.__file__)"
    result = run(inst.python, "-I", "-c", probe)
    assert result.returncode == 0, result.stderr
    version, module = result.stdout.split()
    return version, module


def database_revision(inst: Installation) -> str:
    with psycopg.connect(inst.database_url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


def web_python(inst: Installation) -> str:
    pid = int((inst.data_dir / "run" / "web.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def backups(inst: Installation) -> list[Path]:
    folder = inst.data_dir / "backups"
    return sorted(folder.glob("*.dump")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def inst() -> Iterator[Installation]:
    # Not under pytest's tmp dir: PostgreSQL may run as an unprivileged user who must reach it.
    root = Path(tempfile.mkdtemp(prefix="wingman-upgrade-"))
    root.chmod(0o755)
    data_dir = root / "var"
    try:
        out = root / "bundles"
        newer = copy_tree(root / "tree-1.1")
        add_migration(
            newer,
            "upgrade_probe",
            'op.create_table("upgrade_probe", sa.Column("id", sa.Integer, primary_key=True))',
        )
        broken = copy_tree(root / "tree-1.2")
        with (broken / "src" / "wingman" / "app" / "__init__.py").open("a") as fh:
            fh.write('\nraise ImportError("this build is broken on purpose")\n')
        failing = copy_tree(root / "tree-1.3")
        add_migration(failing, "upgrade_fails", 'op.execute("SELECT 1 / 0")')
        trees = {"1.0.0": copy_tree(root / "tree-1.0"), "1.1.0": newer, "1.2.0": broken}
        trees["1.3.0"] = failing
        with ThreadPoolExecutor(max_workers=len(trees)) as pool:
            built = {v: pool.submit(build_bundle, tree, v, out) for v, tree in trees.items()}
            bundles = {version: future.result() for version, future in built.items()}
        installed = bundles.pop("1.0.0")

        # /opt/wingman's stand-in: a venv with 1.0.0; pip and the dependencies come from here.
        venv = root / "opt" / "wingman"
        made = run(sys.executable, "-m", "venv", "--without-pip", venv)
        assert made.returncode == 0, made.stderr
        site = next(venv.glob("lib/python3*/site-packages"))
        (site / "_wingman_test_dependencies.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
        )
        with tarfile.open(installed) as tar:
            tar.extractall(root / "installed", filter="data")
        wheel = next((root / "installed").glob("*/wheels/wingman-1.0.0-*.whl"))
        pip = run(venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--no-deps", wheel)
        assert pip.returncode == 0, pip.stderr

        inst = Installation(venv=venv, data_dir=data_dir, bundles=bundles)
        up = ctl(inst, "dev", "up", "--port", str(free_port()))
        assert up.returncode == 0, up.stderr
        assert web_python(inst) == str(inst.python)
        yield inst
    finally:
        DevStack(data_dir).down(report=lambda _: None)
        shutil.rmtree(root, ignore_errors=True)


def assert_unchanged(inst: Installation) -> None:
    """1.0.0 installed, imported from the environment, serving, on the old schema."""
    version, module = installed_version(inst)
    assert version == "1.0.0"
    assert module.startswith(str(inst.venv))
    assert database_revision(inst) == head_revision()
    assert wait_until_ready(inst.base_url, timeout=30)
    assert web_python(inst) == str(inst.python)


def test_check_reports_the_pending_upgrade(inst: Installation) -> None:
    bundle = inst.bundles["1.1.0"]
    result = ctl(inst, "upgrade", "--check", bundle, "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["installed_version"] == "1.0.0"
    assert report["venv"] == str(inst.venv)
    assert report["database_revision"] == head_revision()
    assert report["installed_head"] == head_revision()
    assert report["database_pending"] == []
    assert report["bundle_version"] == "1.1.0"
    assert report["bundle_head"] == "upgrade_probe"
    assert report["bundle_migrations"] == ["upgrade_probe"]
    assert report["would_install"] == ["wingman-1.1.0"]
    assert report["pending"] is True

    table = ctl(inst, "upgrade", "--check", bundle)
    assert table.returncode == 1
    assert "upgrade available: 1.0.0 → 1.1.0" in table.stdout
    assert "upgrade_probe" in table.stdout

    nothing = ctl(inst, "upgrade", "--check", "--json")
    assert nothing.returncode == 0, nothing.stderr
    assert json.loads(nothing.stdout)["verdict"] == "up to date"
    assert_unchanged(inst)


def _refused(inst: Installation, bundle: Path, expected: str) -> None:
    web_pid = (inst.data_dir / "run" / "web.pid").read_text()
    result = ctl(inst, "upgrade", bundle, "--yes")
    assert result.returncode == 64, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "stopping web" not in result.stderr  # refused before anything was touched
    assert (inst.data_dir / "run" / "web.pid").read_text() == web_pid
    assert not inst.venv.with_name("wingman.previous").exists()
    assert backups(inst) == []


def _unpacked(inst: Installation, version: str, into: Path) -> Path:
    with tarfile.open(inst.bundles[version]) as tar:
        tar.extractall(into, filter="data")
    return into / f"wingman-{version}-bundle"


def test_corrupt_or_missing_bundles_are_refused(inst: Installation, tmp_path: Path) -> None:
    truncated = _unpacked(inst, "1.1.0", tmp_path / "truncated")
    wheel = truncated / "wheels" / "wingman-1.1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:-1000])
    _refused(inst, truncated, "wingman-1.1.0-py3-none-any.whl is truncated or altered")

    flipped = _unpacked(inst, "1.1.0", tmp_path / "flipped")
    wheel = flipped / "wheels" / "wingman-1.1.0-py3-none-any.whl"
    data = bytearray(wheel.read_bytes())
    # Inside the largest member's compressed data (headers and timestamps carry no CRC).
    with zipfile.ZipFile(wheel) as zipped:
        member = max(zipped.infolist(), key=lambda info: info.compress_size)
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start + member.compress_size // 2] ^= 0x01
    wheel.write_bytes(bytes(data))
    _refused(inst, flipped, "is corrupt: its sha256 differs from the manifest's")

    # A manifest rewritten to match a damaged wheel: the zip's own CRCs still catch it.
    manifest = json.loads((flipped / "manifest.json").read_text())
    manifest["wheels"][0]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (flipped / "manifest.json").write_text(json.dumps(manifest))
    _refused(inst, flipped, "wingman-1.1.0-py3-none-any.whl is")

    cut = tmp_path / "cut.tar"
    cut.write_bytes(inst.bundles["1.1.0"].read_bytes()[:20_000])
    _refused(inst, cut, "cut.tar is not a readable bundle")
    assert_unchanged(inst)


def test_a_build_that_does_not_import_is_rolled_back(inst: Installation) -> None:
    result = ctl(inst, "upgrade", inst.bundles["1.2.0"], "--yes", "--json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "rolled back"
    assert "this build is broken on purpose" in report["error"]
    steps = {step["step"]: step for step in report["steps"]}
    assert steps["install"]["ok"] is True
    assert steps["check"]["ok"] is False
    assert "migrate" not in steps
    assert steps["roll back"]["ok"] is True
    assert "Rolled back: Wingman 1.0.0 is running again" in result.stderr
    # The pre-upgrade backup was taken; the environment is the old one again, and serves.
    assert Path(report["backup"]).is_file()
    assert not inst.venv.with_name("wingman.previous").exists()
    assert not inst.venv.with_name("wingman.failed").exists()
    assert_unchanged(inst)
    app = next(inst.venv.glob("lib/python3*/site-packages/wingman/app/__init__.py"))
    assert "broken on purpose" not in app.read_text()


def test_a_failed_migration_is_rolled_back(inst: Installation) -> None:
    result = ctl(inst, "upgrade", inst.bundles["1.3.0"], "--yes", "--no-backup", "--json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "rolled back"
    assert report["backup"] is None
    assert "migrations failed" in report["error"]
    assert "division by zero" in report["error"]
    steps = {step["step"]: step for step in report["steps"]}
    assert steps["backup"]["result"] == "skipped (--no-backup)"
    assert steps["check"]["ok"] is True
    assert steps["migrate"]["ok"] is False
    assert_unchanged(inst)


def test_upgrade_installs_migrates_and_serves_the_new_version(inst: Installation) -> None:
    before = backups(inst)
    result = ctl(inst, "upgrade", inst.bundles["1.1.0"], "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "upgraded"
    assert (report["from_version"], report["to_version"]) == ("1.0.0", "1.1.0")
    assert report["migrations_applied"] == ["upgrade_probe"]
    assert [step["step"] for step in report["steps"]] == [
        "verify", "snapshot", "stop", "backup", "install", "check", "migrate", "start", "ready",
    ]  # fmt: skip
    assert all(step["ok"] for step in report["steps"])
    for n in range(1, 10):
        assert f"[{n}/9]" in result.stderr

    version, module = installed_version(inst)
    assert version == "1.1.0"
    assert module.startswith(str(inst.venv))
    assert database_revision(inst) == "upgrade_probe"
    with psycopg.connect(inst.database_url) as conn:
        assert conn.execute("SELECT to_regclass('public.upgrade_probe')").fetchone() == (
            "upgrade_probe",
        )
    assert wait_until_ready(inst.base_url, timeout=30)
    assert web_python(inst) == str(inst.python)

    # The pre-upgrade backup: a new archive whose manifest records the old schema.
    new = [path for path in backups(inst) if path not in before]
    assert [str(path) for path in new] == [report["backup"]]
    manifest = json.loads(new[0].with_suffix(".manifest.json").read_text())
    assert manifest["database_revision"] == head_revision()
    assert manifest["wingman_version"] == "1.0.0"
    # The previous environment is kept beside the new one.
    previous = inst.venv.with_name("wingman.previous")
    assert next(previous.glob("lib/python3*/site-packages/wingman-1.0.0.dist-info"))

    again = ctl(inst, "upgrade", "--check", inst.bundles["1.1.0"], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["verdict"] == "up to date"
    same = ctl(inst, "upgrade", inst.bundles["1.1.0"], "--yes")
    assert same.returncode == 0
    assert "already installed" in same.stderr
