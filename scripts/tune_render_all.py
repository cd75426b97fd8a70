"""Render every output of ``wingmanctl tune`` for many hosts and roles into one folder.

    .venv/bin/python scripts/tune_render_all.py OUT

For each host (cores x RAM x disk kind) and role (all-in-one, app, data for 1, 2 or 5 app
nodes) OUT/<case>/ holds the plan as shown and as JSON, the pgbouncer.ini fragment for 1 and 3
app nodes, and the files ``--apply --target-dir`` writes; OUT/direct/ holds what the appliance
and the dev stack render beyond those (tuning.toml behind the front proxy, a daemonized Redis,
a drop-in without a socket dir), and OUT/markdown.md the table of docs/tuning.md. Render into
two folders, before and after a change to the tuning code, and ``diff -r`` them: a refactor
leaves no difference.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from wingman.config import NodeRole
from wingman.ctl.tune import tune
from wingman.tuning.plan import HostFacts, plan_for
from wingman.tuning.render import postgres_conf, redis_conf, tuning_toml

CORES = (1, 2, 4, 8, 16, 64)
RAM_GB = (1.5, 2, 4, 8, 16, 32, 64, 256)
ROLES: tuple[NodeRole, ...] = ("all-in-one", "app", "data")


def _run(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(tune, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"wingmanctl tune {' '.join(args)}: exit {result.exit_code}")
    return result.stdout


def _cli_cases(out: Path, runner: CliRunner) -> int:
    cases = 0
    for cores in CORES:
        for ram in RAM_GB:
            for disk in ("ssd", "hdd"):
                for role in ROLES:
                    for nodes in ("1", "2", "5") if role == "data" else ("2",):
                        host = ["--cores", str(cores), "--ram", str(ram), "--disk", disk]
                        host += ["--role", role, "--app-nodes", nodes]
                        case = out / f"{cores}c-{ram}g-{disk}-{role}-n{nodes}"
                        case.mkdir(parents=True, exist_ok=True)
                        (case / "plan.txt").write_text(_run(runner, host))
                        (case / "plan.json").write_text(_run(runner, [*host, "--json"]))
                        for bouncer in ("1", "3"):
                            (case / f"pgbouncer-{bouncer}.ini").write_text(
                                _run(runner, [*host, "--pgbouncer", bouncer, "--pgbouncer-ini"])
                            )
                        _run(runner, [*host, "--apply", "--target-dir", str(case / "files")])
                        cases += 1
    return cases


def _direct_cases(out: Path) -> int:
    cases = 0
    for cores in (2, 4, 16, 64):
        for ram in (2, 8, 64):
            for role in ROLES:
                plan = plan_for(HostFacts(cores=cores, ram_mb=ram * 1024), role)
                case = out / "direct" / f"{cores}c-{ram}g-{role}"
                case.mkdir(parents=True, exist_ok=True)
                (case / "tuning-proxied.toml").write_text(
                    tuning_toml(plan, trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
                )
                (case / "pg-dev.conf").write_text(postgres_conf(plan, port=15432, socket_dir=""))
                for redis_role in ("queue", "cache"):
                    (case / f"redis-{redis_role}-dev.conf").write_text(
                        redis_conf(
                            plan,
                            redis_role,
                            port=16379,
                            password="pw",  # noqa: S106 - a stand-in, compared between runs
                            dir=Path("/d"),
                            daemonize=True,
                        )
                    )
                cases += 1
    return cases


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    # An empty settings file: the rendered ports and password are the defaults on every run.
    settings = Path(tempfile.mkdtemp()) / "wingman.toml"
    settings.write_text("")
    os.environ["WINGMAN_CONFIG"] = str(settings)
    os.environ.pop("WINGMAN_TUNING", None)
    runner = CliRunner()
    cases = _cli_cases(out, runner)
    direct = _direct_cases(out)
    (out / "markdown.md").write_text(_run(runner, ["--markdown"]))
    print(f"{cases} host/role cases, {direct} direct renderings in {out}")


if __name__ == "__main__":
    main()
