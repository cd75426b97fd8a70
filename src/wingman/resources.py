"""Where the files that ship beside the code live: in the wheel, or in the source tree."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Return the folder ``name`` (``appliance`` or ``migrations``).

    A wheel carries it as ``wingman/_<name>``; an editable install or a source checkout has it at
    the top of the repository.
    """
    for candidate in (_PACKAGE_DIR / f"_{name}", _PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name!r} folder is missing from this installation")
