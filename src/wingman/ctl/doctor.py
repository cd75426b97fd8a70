"""``wingmanctl doctor``: check the installation and print a fix for each problem."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from wingman.ctl.layout import layout_option
from wingman.ctl.output import EXIT_DOWN, emit_report, json_option

COLUMNS = ["area", "check", "state", "detail", "fix"]


@click.command()
@layout_option
@json_option
def doctor(data_dir: Path | None, as_json: bool) -> None:
    """Check configuration, secrets, ports, code delivery, disk, clock, versions and tuning.

    \b
    Checks:
      config    the settings load and validate; the settings file is owner-only
      secrets   security.secret_key, jwt_key, otp_hash_key are generated, not placeholders
      ports     web listens on server.port (or the port is free when web is down);
                PostgreSQL and both Redis roles accept connections
      delivery  each code backend in use answers, and nothing is sent: smtp connects,
                EHLO, STARTTLS (tls = "starttls"), AUTH (when a username is set),
                QUIT; webhook answers a HEAD below 500; twilio reads the account
                with the configured SID and token (status active)
      disk      at least 10 % free where the databases and backups live
      clock     NTP synchronised (timedatectl), no skew with PostgreSQL's clock
      versions  Python, PostgreSQL (15+), pg_dump for the server's major, Redis (7+),
                schema at the code's migration head
      tuning    the PostgreSQL drop-in is loaded, each Redis role has its policy and a
                maxmemory, tuning.toml exists (appliance)

    Every problem comes with a fix: a command to run or a setting to change. Secret values
    are never printed.

    \b
    Exit status: 0 no problem, 1 warnings only, 2 at least one failure.
    """
    from wingman.ops.doctor import diagnose, exit_code
    from wingman.ops.units import DevUnits, select_units

    source = select_units(data_dir)
    if isinstance(source, DevUnits) and not source.exists():
        click.echo(
            f"error: no Wingman installation found: {source.stack.root} holds no dev stack "
            "(run `wingmanctl dev up`) and /etc/wingman/wingman.toml does not exist",
            err=True,
        )
        raise SystemExit(EXIT_DOWN)
    findings = diagnose(source)
    code = exit_code(findings)
    problems = sum(1 for f in findings if f.state != "ok")
    emit_report(
        {"exit_code": code, "findings": msgspec.to_builtins(findings)},
        [msgspec.to_builtins(f) for f in findings],
        COLUMNS,
        as_json=as_json,
        footer=f"{problems} problem(s) found" if problems else "no problems found",
    )
    raise SystemExit(code)
