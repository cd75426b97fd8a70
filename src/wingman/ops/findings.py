"""What a ``wingmanctl doctor`` check reports: a :class:`Finding`, with a fix for every problem."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["ok", "warn", "fail"]


class Finding(msgspec.Struct, kw_only=True):
    area: str
    check: str
    state: Severity
    detail: str
    fix: str = ""


def ok(area: str, check: str, detail: str) -> Finding:
    return Finding(area=area, check=check, state="ok", detail=detail)


def problem(area: str, check: str, state: Severity, detail: str, fix: str) -> Finding:
    return Finding(area=area, check=check, state=state, detail=detail, fix=fix)
