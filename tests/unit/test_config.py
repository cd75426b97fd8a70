"""Settings: layering, strictness and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.config import INSECURE_SECRET, Settings, SettingsError, load_settings, parse_settings


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Point at files in tmp_path so the host's /etc/wingman never leaks into a test.
    return {
        "WINGMAN_CONFIG": str(tmp_path / "wingman.toml"),
        "WINGMAN_TUNING": str(tmp_path / "tuning.toml"),
        **extra,
    }


def test_defaults_without_files(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (tmp_path / "wingman.toml").write_text("")
    settings = load_settings(env)
    assert settings.env == "development"
    assert settings.server.port == 8000
    assert settings.worker.queue("ai").concurrency == 50
    assert settings.redis.effective_cache_url == settings.redis.queue_url


def test_layers_file_then_tuning_then_environment(tmp_path: Path) -> None:
    (tmp_path / "wingman.toml").write_text(
        '[server]\nport = 9000\nworkers = 2\n[redis]\ncache_url = "redis://127.0.0.1:1/0"\n'
    )
    (tmp_path / "tuning.toml").write_text("[server]\nworkers = 16\n[database]\npool_size = 12\n")
    settings = load_settings(_env(tmp_path, WINGMAN_DATABASE__POOL_SIZE="20"))
    assert settings.server.port == 9000  # from wingman.toml
    assert settings.server.workers == 16  # tuning.toml wins over wingman.toml
    assert settings.database.pool_size == 20  # environment wins over both
    assert settings.redis.effective_cache_url == "redis://127.0.0.1:1/0"


def test_tuning_file_with_the_deprecated_max_overflow_still_loads(tmp_path: Path) -> None:
    # Written before pool_size meant the whole pool: the process ran pool_size + max_overflow.
    (tmp_path / "wingman.toml").write_text("")
    (tmp_path / "tuning.toml").write_text("[database]\npool_size = 2\nmax_overflow = 2\n")
    assert load_settings(_env(tmp_path)).database.effective_pool_size == 4
    (tmp_path / "tuning.toml").write_text("[database]\npool_size = 4\n")
    assert load_settings(_env(tmp_path)).database.effective_pool_size == 4


def test_partial_queue_table_keeps_other_defaults(tmp_path: Path) -> None:
    (tmp_path / "wingman.toml").write_text("[worker.queues.ai]\nconcurrency = 7\n")
    settings = load_settings(_env(tmp_path))
    assert settings.worker.queue("ai").concurrency == 7
    assert settings.worker.queue("ai").timeout == 120
    assert settings.worker.queue("heavy").concurrency == 1


def test_environment_lists_are_json(tmp_path: Path) -> None:
    (tmp_path / "wingman.toml").write_text("")
    env = _env(tmp_path, WINGMAN_SERVER__CORS_ALLOW_ORIGINS='["https://app.example.org"]')
    assert load_settings(env).server.cors_allow_origins == ["https://app.example.org"]


def test_the_set_up_scripts_switches_are_not_settings(tmp_path: Path) -> None:
    # Exported by a shell that ran scripts/bootstrap or scripts/ci-debian13: not a typo.
    (tmp_path / "wingman.toml").write_text("")
    env = _env(tmp_path, WINGMAN_NO_APT="1", WINGMAN_NO_WEB_TOOLS="1")
    assert load_settings(env).server.port == Settings().server.port


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[databse]\nurl = 'x'\n", {}, "wingman.toml: databse: unknown key"),
        ("[server]\nport = 'eighty'\n", {}, "wingman.toml: server.port: Expected `int`, got `str`"),
        ("", {"WINGMAN_SERVER__PORTT": "1"}, "environment: server.portt: unknown key"),
        ("", {"WINGMAN_DATABASE__POOL_SIZE": "many"}, "environment: database.pool_size"),
        ("[worker.queues.ai]\nconcurency = 3\n", {}, "worker.queues.*.concurency: unknown key"),
        ("server = [", {}, "wingman.toml: not valid TOML"),
        ("", {"WINGMAN_SERVER__WORKERS": "0"}, "server.workers: must be at least 1"),
        ("[worker.queues.video]\n", {}, "worker.queues.video: unknown queue"),
        ("", {"WINGMAN_DATABASE__URL": "postgresql://x/y"}, "database.url: must use the psycopg"),
    ],
)
def test_bad_settings_name_the_key_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "wingman.toml").write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env(tmp_path, **env))
    assert message in str(caught.value)


def test_explicit_config_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(_env(tmp_path))


def test_production_refuses_the_insecure_default_secret(tmp_path: Path) -> None:
    (tmp_path / "wingman.toml").write_text('env = "production"\n')
    with pytest.raises(SettingsError, match=r"security\.secret_key"):
        load_settings(_env(tmp_path))
    env = _env(
        tmp_path,
        WINGMAN_SECURITY__SECRET_KEY="s" * 40,
        # The accounts area's secrets and a non-log code delivery are required too.
        WINGMAN_SECURITY__JWT_KEY="j" * 40,
        WINGMAN_SECURITY__OTP_HASH_KEY="o" * 40,
        WINGMAN_DELIVERY__EMAIL="smtp",
        WINGMAN_DELIVERY__SMTP__HOST="mail.example.org",
        WINGMAN_DELIVERY__SMS="webhook",
        WINGMAN_DELIVERY__WEBHOOK__URL="https://sms.example.org/send",
        WINGMAN_DELIVERY__WEBHOOK__SECRET="w" * 32,
    )
    assert load_settings(env).security.secret_key != INSECURE_SECRET


_keys = st.sampled_from(
    [
        "WINGMAN_SERVER__PORT",
        "WINGMAN_SERVER__WORKERS",
        "WINGMAN_DATABASE__POOL_SIZE",
        "WINGMAN_DATABASE__ECHO",
        "WINGMAN_LOG__LEVEL",
        "WINGMAN_ENV",
        "WINGMAN_WORKER__QUEUES__AI__TIMEOUT",
        "WINGMAN_SERVER__CORS_ALLOW_ORIGINS",
        "WINGMAN_NOPE",
        "WINGMAN_SERVER",
    ]
)


@pytest.fixture(scope="module")
def empty_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "wingman.toml"
    path.write_text("")
    return path


@given(env=st.dictionaries(_keys, st.text(max_size=20), max_size=4))
def test_any_environment_loads_or_fails_with_settings_error(
    empty_config: Path, env: dict[str, str]
) -> None:
    full = {"WINGMAN_CONFIG": str(empty_config), "WINGMAN_TUNING": "/nonexistent/t.toml", **env}
    try:
        settings = load_settings(full)
    except SettingsError as exc:
        message = str(exc)
    else:
        assert 0 < settings.server.port < 65536
        assert settings.server.workers >= 1
        return
    assert message.strip()


PGBOUNCER_URL = "postgresql+psycopg://wingman:pw@10.0.0.5:6432/wingman"
DIRECT_URL = "postgresql+psycopg://wingman:pw@10.0.0.5:5432/wingman"


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        ({"direct_url": DIRECT_URL}, 'only with database.pooler = "pgbouncer"'),
        (
            {"pooler": "pgbouncer", "url": PGBOUNCER_URL, "direct_url": PGBOUNCER_URL},
            "must reach PostgreSQL itself, not the pooler",
        ),
        (
            {"pooler": "pgbouncer", "url": PGBOUNCER_URL, "direct_url": "postgresql://x/y"},
            "database.direct_url: must use the psycopg driver",
        ),
        ({"pooler": "odyssey"}, "database.pooler"),
    ],
)
def test_pooler_settings_are_checked(database: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        parse_settings({"database": database})


def test_a_pooler_with_or_without_a_direct_url() -> None:
    pooled = parse_settings({"database": {"pooler": "pgbouncer", "url": PGBOUNCER_URL}})
    assert pooled.database.effective_direct_url == PGBOUNCER_URL
    both = {"pooler": "pgbouncer", "url": PGBOUNCER_URL, "direct_url": DIRECT_URL}
    assert parse_settings({"database": both}).database.effective_direct_url == DIRECT_URL
