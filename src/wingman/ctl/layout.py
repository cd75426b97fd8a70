"""The layout option shared by status, backup, restore, doctor and logs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from wingman.config import Settings, SettingsError, load_settings
from wingman.ctl.output import EXIT_DOWN
from wingman.ops.units import DevUnits, UnitSource, select_units

layout_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=(
        "A development stack's folder (made by `wingmanctl dev up`). Without it: only the "
        "services of WINGMAN_CONFIG's file when that is set, else the appliance (systemd units) "
        "when /etc/wingman/wingman.toml exists, else the stack in ./var."
    ),
)


def resolve(data_dir: Path | None) -> tuple[UnitSource, Settings]:
    """The layout and its settings; exits with a clear message when either is missing."""
    source = select_units(data_dir)
    if isinstance(source, DevUnits) and not source.exists():
        click.echo(
            f"error: no Wingman installation found: {source.stack.root} holds no dev stack "
            "(run `wingmanctl dev up`) and /etc/wingman/wingman.toml does not exist",
            err=True,
        )
        raise SystemExit(EXIT_DOWN)
    # The layout's settings file wins over an inherited WINGMAN_CONFIG; WINGMAN_* values still
    # apply on top, as for every process.
    os.environ.update(source.settings_environ())
    try:
        return source, load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None
