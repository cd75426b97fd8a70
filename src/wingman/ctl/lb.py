"""``wingmanctl lb``: the HAProxy config for a load balancer in front of several app nodes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from wingman.config import SettingsError, load_settings
from wingman.ctl.output import EXIT_DOWN, EXIT_USAGE
from wingman.ops.balancer import Backend, BalancerConfig, BalancerConfigError, render


@click.group()
def lb() -> None:
    """Load balancer (HAProxy) in front of several app nodes (docs/scale-out.md)."""


@lb.command("render")
@click.option(
    "--backend",
    "backends",
    multiple=True,
    required=True,
    help="An app node's web server, host:port or name=host:port; once per node.",
)
@click.option("--bind", default="0.0.0.0:80", show_default=True, help="Where the balancer listens.")
@click.option(
    "--tls-pem",
    default="",
    help="Certificate and key in one PEM file: the balancer terminates TLS (h2 and HTTP/1.1).",
)
@click.option("--maxconn", type=click.IntRange(100, 1_000_000), default=20_000, show_default=True)
@click.option(
    "--stats-socket",
    default="",
    help="A unix socket for HAProxy's runtime API (read-only level): `show stat` lists each "
    "node's state.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the config here (checked with `haproxy -c` when haproxy is installed).",
)
def render_command(  # noqa: PLR0917 - one parameter per click option
    backends: tuple[str, ...],
    bind: str,
    tls_pem: str,
    maxconn: int,
    stats_socket: str,
    output: Path | None,
) -> None:
    """Render haproxy.cfg: /health/ready checks every second, WebSockets without stickiness
    (tunnel timeout far above the realtime heartbeat), HTTP/1.1 keep-alive, X-Forwarded-For
    appended, a request that never reached a node retried on another.

    The realtime heartbeat comes from this host's settings. Each app node must believe
    X-Forwarded-For from the balancer only: server.trusted_proxies = [its address].

    \b
    Exit status:
      0   config printed or written (and accepted by haproxy -c)
      2   haproxy -c refused the written config
      64  a backend or option the balancer cannot use
    """
    try:
        realtime = load_settings().realtime
        config = BalancerConfig(
            backends=[Backend.parse(b) for b in backends],
            bind=bind,
            tls_pem=tls_pem,
            maxconn=maxconn,
            stats_socket=stats_socket,
            realtime=realtime,
        )
        text = render(config)
    except (BalancerConfigError, SettingsError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    # Debian installs it in /usr/sbin, which a non-root PATH leaves out.
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if haproxy is None:
        click.echo(f"{output}: written (haproxy not installed here: not checked)")
        return
    check = subprocess.run(
        [haproxy, "-c", "-f", str(output)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        why = (check.stderr or check.stdout).strip()
        click.echo(f"error: haproxy -c refused {output}:\n{why}", err=True)
        raise SystemExit(EXIT_DOWN)
    click.echo(f"{output}: written, haproxy -c accepts it")
