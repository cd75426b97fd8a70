"""``wingmanctl updates``: the appliance's operating-system upgrades and the restarts they need.

Debian's unattended-upgrades installs security upgrades every day; ``show`` says what is still
pending, which services run replaced files and whether a newer kernel waits for a reboot;
``restart`` restarts Wingman's services that run replaced files (``wingman-restarts.timer`` runs
it every 15 minutes with ``--scheduled``, which keeps to ``[updates] restart_window``).
"""

from __future__ import annotations

import subprocess
from datetime import datetime

import click
import msgspec

from wingman.config import SettingsError, load_settings
from wingman.ctl.output import EXIT_DEGRADED, EXIT_DOWN, EXIT_OK, emit_report, json_option, progress
from wingman.ops import os_updates

RESTART_TIMEOUT_S = 300


@click.group()
def updates() -> None:
    """Operating-system security upgrades: what is pending, and the restarts they need."""


@updates.command("show")
@json_option
def show(as_json: bool) -> None:
    """List pending upgrades (security first), services on replaced files, a newer kernel.

    \b
    Exit status:
      0  nothing to do
      1  a security upgrade is pending, a service runs replaced files, or a reboot is needed
      2  the pending upgrades cannot be read (apt-get failed)
    """
    report = os_updates.collect()
    upgrades = sorted(report.upgrades, key=lambda u: (not u.security, u.name))
    rows = [
        {
            "package": u.name,
            "installed": u.installed,
            "candidate": u.candidate,
            "security": "yes" if u.security else "no",
            "origin": ", ".join(u.origins),
        }
        for u in upgrades
    ]
    ours, others = os_updates.restart_plan(report.units)
    footer = "; ".join(
        [
            f"{len(report.security)} security and {len(upgrades) - len(report.security)} other "
            f"upgrade(s) pending; last unattended run: {report.last_upgrade_run or 'never'}",
            f"services on replaced files: {', '.join(ours + others) or 'none'}",
            f"reboot: kernel {report.newer_kernel} installed"
            if report.newer_kernel
            else "reboot: not needed",
            *([f"apt-get: {report.apt_error}"] if report.apt_error else []),
            *([] if report.lists_fetched else ["package lists never fetched (apt-daily.timer)"]),
        ]
    )
    payload = msgspec.to_builtins(report) | {"security_pending": len(report.security)}
    emit_report(
        payload,
        rows,
        ["package", "installed", "candidate", "security", "origin"],
        as_json=as_json,
        footer=footer,
    )
    if report.apt_error:
        raise SystemExit(EXIT_DOWN)
    raise SystemExit(EXIT_DEGRADED if report.security or report.units or report.newer_kernel else 0)


@updates.command("restart")
@click.option(
    "--scheduled",
    is_flag=True,
    help="As wingman-restarts.timer runs it: do nothing outside [updates] restart_window.",
)
@click.option("--dry-run", is_flag=True, help="Say what would restart; restart nothing.")
@json_option
def restart(scheduled: bool, dry_run: bool, as_json: bool) -> None:
    """Restart Wingman's services that run replaced programs or libraries, data services first
    (Redis, PostgreSQL), then workers, web and the proxy. Others (sshd, journald) are listed,
    for a reboot or the admin.

    \b
    Exit status:
      0  nothing to restart, outside the window (--scheduled), or every restart succeeded
      2  a restart failed (its unit is named)
    """
    try:
        window_text = load_settings().updates.restart_window
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None
    if scheduled and window_text:
        window = os_updates.RestartWindow.parse(window_text)
        if not window.contains(datetime.now().astimezone()):
            progress(f"outside the restart window ({window_text}): nothing restarted")
            emit_report({"window": window_text, "restarts": []}, [], ["unit"], as_json=as_json)
            raise SystemExit(EXIT_OK)
    units = os_updates.units_to_restart()
    ours, others = os_updates.restart_plan(units)
    rows = []
    failed = False
    for unit in ours:
        if dry_run:
            action = "would restart"
        else:
            progress(f"restarting {unit}")
            done = subprocess.run(
                ["systemctl", "restart", unit],
                capture_output=True,
                text=True,
                timeout=RESTART_TIMEOUT_S,
                check=False,
            )
            failed |= done.returncode != 0
            action = "restarted" if done.returncode == 0 else f"failed: {done.stderr.strip()}"
        rows.append({"unit": unit, "action": action, "files": len(units[unit])})
    rows += [
        {"unit": unit, "action": "left: reboot, or restart by hand", "files": len(units[unit])}
        for unit in others
    ]
    emit_report(
        {"window": window_text, "restarts": rows},
        rows,
        ["unit", "action", "files"],
        as_json=as_json,
        footer="no service runs replaced files" if not rows else "",
    )
    raise SystemExit(EXIT_DOWN if failed else EXIT_OK)
