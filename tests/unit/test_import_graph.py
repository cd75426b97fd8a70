"""The import graph keeps its direction: the contracts in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(*args: str, source: Path = ROOT / "src") -> subprocess.CompletedProcess[str]:
    # The checkout's own package, whichever copy of wingman the environment has installed.
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the tests read the exit status
    )


def test_every_import_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_back_edge_breaks_the_layers_contract(tmp_path: Path) -> None:
    # The contract is no formality: the same tree with one table module importing a product
    # area (a back edge) fails it, naming the import.
    copy = tmp_path / "src"
    subprocess.run(["cp", "-a", str(ROOT / "src"), str(copy)], check=True)
    models = copy / "wingman" / "db" / "models.py"
    models.write_text(models.read_text() + "\nimport wingman.domain.chat.services  # noqa\n")
    result = lint_imports(source=copy)
    assert result.returncode != 0
    assert "wingman.db.models -> wingman.domain.chat.services" in result.stdout
