"""``wingmanctl`` tables print values literally: no emoji codes, no rich markup."""

from __future__ import annotations

import pytest

from wingman.ctl.output import emit, emit_object, emit_report

# A SHA-256 fingerprint with ":CD:" in it once printed a picture of a disc in `tls status`.
FINGERPRINT = "C4:23:2E:D9:10:61:7F:3E:66:C5:A8:12:8D:CD:5B:4E:C7:56:AC:A5:55:81:2D:8B:8A:3F"
MARKUP = "[bold]listen[/bold] on [::1]:8000 :smile:"


def test_tables_print_values_literally(capsys: pytest.CaptureFixture[str]) -> None:
    row, columns = {"fingerprint": FINGERPRINT, "address": MARKUP}, ["fingerprint", "address"]
    emit_object(row, as_json=False)
    emit([row], columns, as_json=False)
    emit_report({}, [row], columns, as_json=False, footer=MARKUP)
    out = capsys.readouterr().out
    assert out.count(FINGERPRINT) == 3
    assert out.count(MARKUP) == 4
    assert "💿" not in out
