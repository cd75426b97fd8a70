"""First boot of the appliance: settings with new secrets, the database cluster, the first admin.

Runs at every boot and does only what is missing, so a new image on an old data volume keeps
its settings and data:

``prepare`` (root, ``wingman-firstboot.service``, before tuning and PostgreSQL)
    - ``/var/lib/wingman/config/wingman.toml`` (root-only; ``/etc/wingman/wingman.toml`` links
      to it): written once, with generated secrets and passwords, production defaults, and the
      ``[settings]`` table of a seed file merged over them;
    - the PostgreSQL cluster in ``/var/lib/wingman/postgresql/<major>/main``: ``initdb`` with
      data checksums, then the ``wingman`` role (the password of ``database.url``) and database,
      in single-user mode so that nothing listens before the tuned server starts;
    - an admin request from the seed's ``[admin]`` table, kept for the ``admin`` step.

``admin`` (the ``wingman`` user, after migrations, ``wingman-migrate.service``)
    - creates the requested admin with ``wingmanctl users create-admin`` once.

The seed file is TOML, read from the first of ``SEED_PATHS`` that exists (a file baked into
``/etc``, one put on the data volume, or QEMU's ``-fw_cfg name=opt/wingman/seed,file=...``)::

    [admin]
    email = "admin@example.com"

    [settings.delivery]          # any wingman.toml keys, merged over the generated ones
    email = "smtp"

    [settings.delivery.smtp]
    host = "smtp.example.com"

A fresh volume needs one that configures code delivery: without it nobody could ever get a
sign-in code, so ``prepare`` refuses (exit 2), says why on the console, and writes nothing (no
settings, no link, no cluster); the next boot, or ``systemctl restart wingman-firstboot``, tries
again with the fixed seed. The merged settings must pass the same validation the services apply
(``wingman.config.parse_settings``): production refuses the ``log`` backend, and each backend
needs its keys (an SMTP host, a webhook URL and secret, an SMS provider's account and sender).
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import tomli_w

from wingman.config import SettingsError, parse_settings

DATA = Path("/var/lib/wingman")
SETTINGS = DATA / "config" / "wingman.toml"
ETC_SETTINGS = Path("/etc/wingman/wingman.toml")
ADMIN_REQUEST = DATA / "firstboot" / "admin.toml"
SEED_PATHS = (
    Path("/etc/wingman/seed.toml"),
    DATA / "seed.toml",
    Path("/sys/firmware/qemu_fw_cfg/by_name/opt/wingman/seed/raw"),
)
POSTGRES_MAJOR = 15
POSTGRES_BIN = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
CLUSTER = DATA / "postgresql" / str(POSTGRES_MAJOR) / "main"
WINGMANCTL = Path(sys.executable).with_name("wingmanctl")
EXIT_REFUSED = 2
DELIVERY_DOCS = "/usr/share/doc/wingman/appliance.md (section Delivery)"


class SeedRefused(Exception):
    """The seed cannot make a working appliance; ``problems`` say why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def say(message: str) -> None:
    """One line on the console and in the journal (the unit sends stdout to both)."""
    print(f"wingman-firstboot: {message}", flush=True)


def read_seed() -> dict[str, Any] | None:
    """The first seed file's contents, None when there is none; :class:`SeedRefused` when it is
    not TOML."""
    for path in SEED_PATHS:
        if path.is_file():
            say(f"seed file {path}")
            try:
                with path.open("rb") as fh:
                    return tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise SeedRefused([f"{path}: not valid TOML: {exc}"]) from None
    return None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def generated_settings() -> dict[str, Any]:
    """Production settings for this host with fresh secrets (services on loopback only)."""
    db_password = secrets.token_urlsafe(32)
    redis_password = secrets.token_urlsafe(32)
    return {
        "env": "production",
        "database": {
            "url": f"postgresql+psycopg://wingman:{db_password}@127.0.0.1:5432/wingman",
        },
        "redis": {
            "queue_url": f"redis://:{redis_password}@127.0.0.1:6379/0",
            "cache_url": f"redis://:{redis_password}@127.0.0.1:6380/0",
        },
        # Granian on loopback: the front proxy (wingman-proxy, 80/443) is the way in.
        "server": {"host": "127.0.0.1", "port": 8000},
        "log": {"format": "json"},
        "security": {
            "secret_key": secrets.token_urlsafe(48),
            "jwt_key": secrets.token_urlsafe(48),
            "otp_hash_key": secrets.token_urlsafe(48),
        },
        # No channel until the seed configures one (checked before anything is written); the
        # one a seed leaves out stays off rather than pointing at a server that is not there.
        "delivery": {"email": "disabled", "sms": "disabled"},
        "backup": {"dir": str(DATA / "backups")},
    }


def seeded_settings(seed: dict[str, Any] | None) -> dict[str, Any]:
    """The generated settings with the seed's merged over; :class:`SeedRefused` unless they
    validate and carry sign-in codes somewhere."""
    if seed is None:
        raise SeedRefused(
            [
                "no seed file: a new appliance needs one that configures code delivery "
                f"([settings.delivery]), looked for {', '.join(map(str, SEED_PATHS[:2]))}"
            ]
        )
    overrides = seed.get("settings", {})
    if not isinstance(overrides, dict):
        raise SeedRefused(["[settings] in the seed file must be a table"])
    if not isinstance(overrides.get("delivery"), dict):
        raise SeedRefused(
            [
                "the seed file configures no code delivery ([settings.delivery]): "
                "nobody could get a sign-in code"
            ]
        )
    settings = merge(generated_settings(), overrides)
    if settings.get("env") != "production":
        # Development settings would let codes go to the log: never on an appliance.
        raise SeedRefused(['env: the appliance runs in production; drop "env" from the seed'])
    try:
        parse_settings(settings, "[settings]")
    except SettingsError as exc:
        # Keys are named as in wingman.toml: the seed's [settings] table holds the same ones.
        raise SeedRefused(str(exc).split("; ")) from None
    return settings


def ensure_settings(seed: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The settings, written first if missing; True when they were made now.

    A fresh volume's settings come from the seed, checked before anything is written:
    :class:`SeedRefused` leaves the volume and ``/etc`` as they were.
    """
    if SETTINGS.is_file():
        if not ETC_SETTINGS.is_symlink() and not ETC_SETTINGS.exists():
            ETC_SETTINGS.symlink_to(SETTINGS)
        with SETTINGS.open("rb") as fh:
            return tomllib.load(fh), False
    settings = seeded_settings(seed)
    if not ETC_SETTINGS.is_symlink() and not ETC_SETTINGS.exists():
        ETC_SETTINGS.symlink_to(SETTINGS)
    SETTINGS.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = SETTINGS.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(settings, fh)
        fh.flush()
        os.fsync(fh.fileno())
    partial.rename(SETTINGS)
    say(f"generated {SETTINGS} with new secrets (root-only)")
    return settings, True


def _as_postgres() -> dict[str, Any]:
    return {"user": "postgres", "group": "postgres", "cwd": "/"}


def ensure_cluster(settings: dict[str, Any], fresh_settings: bool) -> None:
    """initdb when the volume has no cluster; the wingman role gets the settings' password."""
    made = False
    if not (CLUSTER / "PG_VERSION").is_file():
        postgres = pwd.getpwnam("postgres")
        for folder in (CLUSTER.parent.parent, CLUSTER.parent, CLUSTER):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chown(folder, postgres.pw_uid, postgres.pw_gid)
        say(f"initialising the PostgreSQL {POSTGRES_MAJOR} cluster in {CLUSTER}")
        subprocess.run(
            [
                str(POSTGRES_BIN / "initdb"),
                "--pgdata",
                str(CLUSTER),
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--username=postgres",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **_as_postgres(),
        )
        # The Debian layout keeps the configuration in /etc/postgresql/<major>/main.
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            (CLUSTER / name).unlink(missing_ok=True)
        made = True
    if made or fresh_settings:
        password = _database_password(settings)
        # Single-user mode: one statement per line, read from stdin (never a command line).
        statements = (
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wingman') "
            "THEN CREATE ROLE wingman LOGIN; END IF; END $$;\n"
            f"ALTER ROLE wingman PASSWORD '{password}';\n"
        )
        if made:
            statements += "CREATE DATABASE wingman OWNER wingman;\n"
        subprocess.run(
            [
                str(POSTGRES_BIN / "postgres"),
                "--single",
                "-D",
                str(CLUSTER),
                "-c",
                "config_file=/dev/null",
                "-c",
                "password_encryption=scram-sha-256",
                "postgres",
            ],
            input=statements,
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
            **_as_postgres(),
        )
        say("database role and database 'wingman' are ready")


def _database_password(settings: dict[str, Any]) -> str:
    url = str(settings["database"]["url"]).replace("postgresql+psycopg", "postgresql", 1)
    password = unquote(urlsplit(url).password or "")
    if "'" in password or "\n" in password:
        raise SystemExit("database.url: the password must not hold a quote or a line break")
    return password


def request_admin(seed: dict[str, Any] | None) -> None:
    email = (seed or {}).get("admin", {}).get("email")
    if not email:
        say(
            "no admin in a seed file: create the first one with "
            "`wingmanctl users create-admin --email you@example.com`"
        )
        return
    wingman = pwd.getpwnam("wingman")
    ADMIN_REQUEST.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(ADMIN_REQUEST.parent, wingman.pw_uid, wingman.pw_gid)
    ADMIN_REQUEST.write_text(tomli_w.dumps({"email": str(email)}))
    os.chown(ADMIN_REQUEST, wingman.pw_uid, wingman.pw_gid)
    say(f"admin {email} will be created after the migrations")


def prepare() -> None:
    """The ``prepare`` step; exits 2, having written nothing, when the seed is refused."""
    try:
        seed = None if SETTINGS.is_file() else read_seed()
        settings, fresh = ensure_settings(seed)
    except SeedRefused as refused:
        say("refusing to set up this appliance: sign-in would not work")
        for line in refused.problems:
            say(f"  - {line}")
        say(
            "fix: give a seed file whose [settings.delivery] configures email (smtp or webhook) "
            "or SMS (twilio or webhook), e.g. /var/lib/wingman/seed.toml, then reboot or run "
            f"`systemctl restart wingman-firstboot`; see {DELIVERY_DOCS}"
        )
        raise SystemExit(EXIT_REFUSED) from None
    ensure_cluster(settings, fresh)
    if fresh:
        request_admin(seed)


def create_admin() -> None:
    if not ADMIN_REQUEST.is_file():
        return
    email = tomllib.loads(ADMIN_REQUEST.read_text())["email"]
    result = subprocess.run(
        [str(WINGMANCTL), "users", "create-admin", "--email", email],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        say(f"could not create admin {email}: {result.stderr.strip()}")
        raise SystemExit(result.returncode)
    ADMIN_REQUEST.unlink()
    say(
        f"admin {email} created; they sign in with a code sent to that address, or with a "
        f"one-time link from `wingmanctl users login-link {email}`"
    )


if __name__ == "__main__":
    steps = {"prepare": prepare, "admin": create_admin}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        raise SystemExit(f"usage: {sys.argv[0]} prepare|admin")
    steps[sys.argv[1]]()
