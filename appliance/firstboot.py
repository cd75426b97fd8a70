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
    - an admin request from the seed's ``[admin]`` table, kept for the ``admin`` step;
    - the seed's ``[admin] ssh_authorized_keys`` in ``~wingman-admin/.ssh/authorized_keys``, in
      a block of their own rewritten at every boot (keys that cloud-init or the admin added
      around it stay).

``admin`` (the ``wingman`` user, after migrations, ``wingman-migrate.service``)
    - creates the requested admin with ``wingmanctl users create-admin`` once.

The seed file is TOML, read from the first of ``SEED_PATHS`` that exists (a file baked into
``/etc``, one put on the data volume, or QEMU's ``-fw_cfg name=opt/wingman/seed,file=...``)::

    [admin]
    email = "admin@example.com"
    ssh_authorized_keys = ["ssh-ed25519 AAAA... admin@laptop"]   # optional: SSH to wingman-admin

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
A key in ``ssh_authorized_keys`` that is not one line of a ``.pub`` file refuses a fresh volume
the same way; on a volume already set up, such a seed leaves the keys as they were.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import struct
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
DELIVERY_FIX = (
    "give a seed file whose [settings.delivery] configures email (smtp or webhook) "
    "or SMS (twilio or webhook), e.g. /var/lib/wingman/seed.toml, then reboot or run "
    f"`systemctl restart wingman-firstboot`; see {DELIVERY_DOCS}"
)
# The account that logs in over SSH and runs wingmanctl (through sudo); made in the image.
ADMIN_USER = "wingman-admin"
ADMIN_HOME = Path("/home/wingman-admin")
KEYS_BEGIN = "# wingman seed: [admin] ssh_authorized_keys, rewritten at every boot"
KEYS_END = "# end of the wingman seed's keys"
KEYS_FIX = (
    "give [admin] ssh_authorized_keys as a list of public keys, each the one line of a .pub "
    "file (type, base64, comment), then reboot or run `systemctl restart wingman-firstboot`; "
    "see /usr/share/doc/wingman/appliance.md (section First login (SSH))"
)
# The public key types OpenSSH's sshd accepts in authorized_keys.
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


class SeedRefused(Exception):
    """The seed cannot make a working appliance; ``problems`` say why, one line each."""

    def __init__(self, problems: list[str], fix: str = DELIVERY_FIX) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.fix = fix


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


def public_key(line: str) -> tuple[str, str]:
    """One authorized_keys line, checked strictly: ``(the line as written, SHA256:fingerprint)``.

    ``ValueError`` says what is wrong without repeating the text (a private key pasted by
    mistake must not reach the console or the journal).
    """
    if "PRIVATE KEY" in line:
        raise ValueError("a private key: give the public one (the line of the .pub file)")
    fields = line.split()
    if len(fields) < 2:
        raise ValueError("not a public key line (type, base64, optional comment)")
    kind, encoded = fields[0], fields[1]
    if kind not in KEY_TYPES:
        raise ValueError(
            "does not start with a key type sshd accepts "
            f"({', '.join(sorted(KEY_TYPES))}; options before it are not supported)"
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError(f"the {kind} key's base64 does not decode") from None
    # The blob starts with its own type as an SSH string: a uint32 length, then the name.
    if len(blob) < 4 or blob[4 : 4 + struct.unpack(">I", blob[:4])[0]] != kind.encode():
        raise ValueError(f"the base64 does not hold a {kind} key")
    if len(blob) < 4 + len(kind) + 32:
        raise ValueError(f"the {kind} key is cut short")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return " ".join(fields), f"SHA256:{digest}"


def seed_keys(seed: dict[str, Any] | None) -> list[str] | None:
    """The seed's ``[admin] ssh_authorized_keys``, checked; None when it has none.

    :class:`SeedRefused` when an entry is not a public key: a fresh appliance must not come up
    with an admin key that silently does not work.
    """
    admin = (seed or {}).get("admin", {})
    if not isinstance(admin, dict) or "ssh_authorized_keys" not in admin:
        return None
    value = admin["ssh_authorized_keys"]
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise SeedRefused(
            ["admin.ssh_authorized_keys: a list of public keys (strings)"], fix=KEYS_FIX
        )
    keys: list[str] = []
    problems: list[str] = []
    lines = [line.strip() for entry in entries for line in entry.splitlines()]
    for number, line in enumerate((line for line in lines if line), start=1):
        if line.startswith("#"):
            continue
        try:
            key, fingerprint = public_key(line)
        except ValueError as exc:
            problems.append(f"admin.ssh_authorized_keys, key {number}: {exc}")
            continue
        keys.append(key)
        say(f"admin SSH key {number}: {key.split()[0]} {fingerprint}")
    if problems:
        raise SeedRefused(problems, fix=KEYS_FIX)
    return keys


def write_admin_keys(keys: list[str]) -> None:
    """Put ``keys`` in the seed's block of ``~wingman-admin/.ssh/authorized_keys``.

    Lines outside the block (cloud-init's keys, the admin's own) are kept. The admin owns
    ``~/.ssh``, so nothing there is followed: the folder is opened without following a link and
    the file is replaced by a rename inside it.
    """
    try:
        admin = pwd.getpwnam(ADMIN_USER)
    except KeyError:
        say(f"no user {ADMIN_USER}: the seed's SSH keys are not installed")
        return
    ssh_dir = ADMIN_HOME / ".ssh"
    try:
        ssh_dir.mkdir(mode=0o700)
        os.chown(ssh_dir, admin.pw_uid, admin.pw_gid, follow_symlinks=False)
    except FileExistsError:
        pass
    except FileNotFoundError:
        say(f"no home folder {ADMIN_HOME}: the seed's SSH keys are not installed")
        return
    try:
        folder = os.open(ssh_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        say(f"{ssh_dir} is not a folder ({exc.strerror}): the seed's SSH keys are not installed")
        return
    try:
        os.fchown(folder, admin.pw_uid, admin.pw_gid)
        os.fchmod(folder, 0o700)
        try:
            kept = _lines_outside_the_block(folder)
        except OSError as exc:
            say(f"{ssh_dir}/authorized_keys: {exc.strerror}; the seed's SSH keys are not installed")
            return
        lines = kept + ([KEYS_BEGIN, *keys, KEYS_END] if keys else [])
        partial = f".authorized_keys.{secrets.token_hex(8)}"
        fd = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder
        )
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
            fh.flush()
            os.fchown(fh.fileno(), admin.pw_uid, admin.pw_gid)
            os.fsync(fh.fileno())
        os.rename(partial, "authorized_keys", src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(folder)
    say(f"{len(keys)} SSH key(s) from the seed for {ADMIN_USER} in {ssh_dir}/authorized_keys")


def _lines_outside_the_block(folder: int) -> list[str]:
    """authorized_keys' lines that the seed did not put there (none when there is no file);
    ``OSError`` when it is a link."""
    try:
        fd = os.open("authorized_keys", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    except FileNotFoundError:
        return []
    kept: list[str] = []
    with os.fdopen(fd) as fh:
        inside = False
        for line in fh.read().splitlines():
            if line == KEYS_BEGIN:
                inside = True
            elif line == KEYS_END:
                inside = False
            elif not inside:
                kept.append(line)
    return kept


def kept_volume_keys() -> list[str] | None:
    """On a volume already set up: the seed's keys, or None (keys left as they are) when there
    is no seed, it has no key list, or it is not valid; a bad seed is reported, never fatal."""
    try:
        seed = read_seed()
        return None if seed is None else (seed_keys(seed) or [])
    except SeedRefused as refused:
        say("the seed's SSH keys are not used; the keys installed before stay:")
        for line in refused.problems:
            say(f"  - {line}")
        return None


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
    existing = SETTINGS.is_file()
    try:
        seed = None if existing else read_seed()
        keys = None if existing else seed_keys(seed)
        settings, fresh = ensure_settings(seed)
    except SeedRefused as refused:
        why = "sign-in would not work" if refused.fix == DELIVERY_FIX else "the admin's SSH keys"
        say(f"refusing to set up this appliance: {why}")
        for line in refused.problems:
            say(f"  - {line}")
        say(f"fix: {refused.fix}")
        raise SystemExit(EXIT_REFUSED) from None
    ensure_cluster(settings, fresh)
    if fresh:
        request_admin(seed)
    if existing:
        keys = kept_volume_keys()
    if keys is not None:
        write_admin_keys(keys)


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
