"""How a database URL becomes libpq parameters for pg_dump, pg_restore and psycopg."""

from __future__ import annotations

import psycopg
import pytest

from wingman.ops.backups import Connection


def test_a_single_server_url() -> None:
    connection = Connection.from_url("postgresql+psycopg://app:s3cret@db.internal:6000/wingman")
    assert connection.args() == ["--host", "db.internal", "--port", "6000", "--username", "app"]
    assert connection.environ()["PGPASSWORD"] == "s3cret"
    assert "PGTARGETSESSIONATTRS" not in connection.environ()
    params = psycopg.conninfo.conninfo_to_dict(connection.conninfo())
    assert params["host"] == "db.internal"
    assert params["port"] == "6000"
    assert params["dbname"] == "wingman"
    assert "target_session_attrs" not in params


def test_defaults_fill_what_the_url_leaves_out() -> None:
    connection = Connection.from_url("postgresql+psycopg:///")
    assert (connection.host, connection.port, connection.user, connection.database) == (
        "127.0.0.1",
        "5432",
        "wingman",
        "wingman",
    )


@pytest.mark.parametrize(
    ("query", "hosts", "ports"),
    [
        ("host=10.0.0.1:5432&host=10.0.0.2:5433", "10.0.0.1,10.0.0.2", "5432,5433"),
        ("host=pg-a&host=pg-b:6432", "pg-a,pg-b", "5432,6432"),
        ("host=[fd00::1]:5432&host=fd00::2", "fd00::1,fd00::2", "5432,5432"),
        ("host=only:7000", "only", "7000"),
    ],
)
def test_several_servers_become_libpq_lists(query: str, hosts: str, ports: str) -> None:
    url = f"postgresql+psycopg://app:pw@/wingman?{query}&target_session_attrs=read-write"
    connection = Connection.from_url(url)
    assert connection.args()[:4] == ["--host", hosts, "--port", ports]
    assert connection.environ()["PGTARGETSESSIONATTRS"] == "read-write"
    params = psycopg.conninfo.conninfo_to_dict(connection.conninfo())
    assert (params["host"], params["port"]) == (hosts, ports)
    assert params["target_session_attrs"] == "read-write"
