"""The files of a rendered tuning plan, and writing the ones that changed.

A *layout* (:mod:`wingman.ops.tune_appliance`, :mod:`wingman.ops.tune_dev`) renders the plan
into :class:`RenderedFile` objects at its own paths; :func:`write_changes` writes those whose
text differs and keeps what was there, for the diff and for deciding what to reload or restart.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wingman.ops.templates import write_private
from wingman.tuning.plan import TuningPlan

Report = Callable[[str], None]
ROLES = ("queue", "cache")


class Owner(Protocol):
    """Who a written file belongs to (the dev stack's service user, when run as root)."""

    def own(self, path: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """One file of the plan; ``kind`` is postgres, redis-queue, redis-cache or tuning."""

    kind: str
    path: Path
    text: str
    # Redis configs carry the password; tuning.toml and the drop-in do not.
    mode: int = 0o644
    # None: whoever writes it (root on the appliance).
    owner: Owner | None = None


@dataclass(frozen=True, slots=True)
class FileChange:
    file: RenderedFile
    before: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.file.text

    def diff(self) -> str:
        """Unified diff of what is there against the plan, with passwords masked."""
        before = _mask(self.before or "").splitlines(keepends=True)
        after = _mask(self.file.text).splitlines(keepends=True)
        name = str(self.file.path)
        return "".join(
            difflib.unified_diff(
                before,
                after,
                fromfile=f"{name} (in force)" if self.before is not None else "/dev/null",
                tofile=f"{name} (plan)",
            )
        )


# Secrets in the rendered files: Redis's password, the Redis exporters' copy of it, and the SMTP
# password and webhook secret in Alertmanager's JSON.
_SECRETS = (
    (re.compile(r'^(requirepass\s+)"[^"]*"', re.MULTILINE), r'\1"********"'),
    (re.compile(r"^(REDIS_PASSWORD=).*$", re.MULTILINE), r"\1********"),
    (re.compile(r'("(?:auth_password|credentials)": )"(?:[^"\\]|\\.)*"'), r'\1"********"'),
)


def _mask(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Layout(Protocol):
    """Targets of one kind of installation."""

    def render(self, plan: TuningPlan) -> list[RenderedFile]: ...

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None: ...


def write_changes(files: list[RenderedFile]) -> list[FileChange]:
    """Write every file whose content differs from the plan; return all with their old text."""
    changes: list[FileChange] = []
    for file in files:
        before = file.path.read_text() if file.path.is_file() else None
        change = FileChange(file, before)
        if change.changed:
            write_private(file.path, file.text, mode=file.mode)
            if file.owner is not None:
                file.owner.own(file.path)
        changes.append(change)
    return changes
