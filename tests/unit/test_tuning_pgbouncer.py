"""PgBouncer's numbers in the tuning plan: the same connection budget on both sides of it."""

from __future__ import annotations

import configparser

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from wingman.ctl.tune import tune
from wingman.tuning.pgbouncer import pgbouncer_plan
from wingman.tuning.plan import HostFacts, plan_for
from wingman.tuning.render import pgbouncer_ini

GIB = 1024
hosts = st.builds(
    HostFacts,
    cores=st.integers(min_value=2, max_value=128),
    ram_mb=st.integers(min_value=2 * GIB, max_value=1024 * GIB),
    disk=st.sampled_from(["ssd", "hdd"]),
)


@given(host=hosts, nodes=st.integers(min_value=1, max_value=64))
def test_budgets_never_overflow(host: HostFacts, nodes: int) -> None:
    plan = plan_for(host)
    bouncer = pgbouncer_plan(plan, nodes)
    reserve = plan.app.connection_reserve.value
    # PgBouncer's server connections and the direct reserve fit in max_connections.
    assert bouncer.max_db_connections.value + reserve <= plan.postgres.max_connections.value
    assert 1 <= bouncer.default_pool_size.value <= bouncer.max_db_connections.value
    # Every pool of every node at its peak gets a client slot: none is refused.
    assert bouncer.max_client_conn.value >= plan.app.peak_connections * nodes


def test_reference_host_and_its_ini_fragment() -> None:
    bouncer = pgbouncer_plan(plan_for(HostFacts(cores=16, ram_mb=32 * GIB)), 3)
    parser = configparser.ConfigParser(comment_prefixes=(";",))
    parser.read_string(pgbouncer_ini(bouncer))
    section = parser["pgbouncer"]
    assert section["pool_mode"] == "transaction"
    assert int(section["default_pool_size"]) == 48  # 3 per core of 16
    assert int(section["max_db_connections"]) == bouncer.max_db_connections.value
    assert int(section["max_client_conn"]) == bouncer.max_client_conn.value
    assert section["ignore_startup_parameters"] == ""


def test_tune_shows_and_renders_pgbouncer_numbers() -> None:
    runner = CliRunner()
    env = {"WINGMAN_CONFIG": "/nonexistent/wingman.toml"}
    args = ["--cores", "16", "--ram", "32", "--disk", "ssd"]
    shown = runner.invoke(tune, [*args, "--pgbouncer", "3", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert '"pgbouncer.max_client_conn"' in shown.output
    plain = runner.invoke(tune, [*args, "--json"], env=env)
    assert "pgbouncer." not in plain.output
    ini = runner.invoke(tune, [*args, "--pgbouncer", "3", "--pgbouncer-ini"], env=env)
    assert ini.exit_code == 0, ini.output
    assert ini.stdout.startswith("; Wingman's PgBouncer settings for 3 app node(s)")
    assert "pool_mode = transaction" in ini.output
