"""Rendering the config templates kept in ``appliance/`` and writing private files: shared by
the appliance's tuning and the dev stack."""

from __future__ import annotations

from pathlib import Path
from string import Template

from wingman.resources import shipped_dir


def render(template: str, values: dict[str, object]) -> str:
    """Render ``appliance/<template>``; a placeholder without a value is an error, not a blank."""
    text = (shipped_dir("appliance") / template).read_text()
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it may hold passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=mode, exist_ok=True)
    path.chmod(mode)
    path.write_text(text)
