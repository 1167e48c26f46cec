"""Settings: an INI file (``CIVIC_CONFIG``, default /etc/civic-services/civic-services.conf) and environment
variables, the environment winning. Every setting is one row of SETTINGS; unknown keys in the file are an
error, so a misspelt setting fails at start instead of silently doing nothing.

The database password is only ever read from a file (``password_file``), never from the environment or the
command line, and never appears in logs, errors or ``describe()``.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/civic-services/civic-services.conf")
SSLMODES_TCP = ("verify-full",)
# Schema and role names go into the libpq options string unquoted: plain lower-case identifiers only.
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    env: str
    kind: type
    default: object
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("database", "host", "CIVIC_DB_HOST", str, "/var/run/postgresql",
            "Host name(s), comma-separated (libpq multi-host, e.g. db1,db2), or a Unix socket directory"),
    Setting("database", "port", "CIVIC_DB_PORT", int, 5432, "TCP port (or socket file suffix)"),
    Setting("database", "dbname", "CIVIC_DB_NAME", str, "civic", "Database name"),
    Setting("database", "user", "CIVIC_DB_USER", str, "civic_app", "Database role"),
    Setting("database", "schema", "CIVIC_DB_SCHEMA", str, "public",
            "Schema holding the application's tables (the session's search_path)"),
    Setting("database", "set_role", "CIVIC_DB_SET_ROLE", str, "",
            "Role to act as after logging in (migrations: the NOLOGIN schema owner); empty: the login role"),
    Setting("database", "password_file", "CIVIC_DB_PASSWORD_FILE", str, "",
            "File holding the role's password (first line); empty: no password (peer/cert auth)"),
    Setting("database", "sslmode", "CIVIC_DB_SSLMODE", str, "verify-full",
            "libpq sslmode; must be verify-full for TCP hosts (ignored for Unix sockets)"),
    Setting("database", "sslrootcert", "CIVIC_DB_SSLROOTCERT", str, "/etc/civic-services/db-ca.pem",
            "CA certificate that signed the database server certificate"),
    Setting("database", "sslcert", "CIVIC_DB_SSLCERT", str, "", "Client certificate (optional)"),
    Setting("database", "sslkey", "CIVIC_DB_SSLKEY", str, "", "Client key (optional)"),
    Setting("database", "connect_timeout", "CIVIC_DB_CONNECT_TIMEOUT", int, 3, "Seconds to wait for a connection"),
    Setting("database", "target_session_attrs", "CIVIC_DB_TARGET_SESSION_ATTRS", str, "read-write",
            "With several hosts, pick the primary (read-write) or any"),
    Setting("database", "statement_timeout_ms", "CIVIC_DB_STATEMENT_TIMEOUT_MS", int, 10000,
            "Web requests: cancel a statement after this many ms (CLI commands have none)"),
    Setting("store", "path", "CIVIC_STORE_PATH", str, "/srv/civic-services/documents",
            "Document store directory (must exist; never created by the app)"),
    Setting("app", "max_upload_bytes", "CIVIC_MAX_UPLOAD_BYTES", int, 10 * 1024 * 1024,
            "Largest request body accepted (HTTP 413 above)"),
    Setting("app", "pool_max", "CIVIC_POOL_MAX", int, 4, "Database connections per worker process, at most"),
    Setting("app", "log_level", "CIVIC_LOG_LEVEL", str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
)  # fmt: skip


@dataclass(frozen=True)
class DatabaseConfig:
    hosts: tuple[str, ...]
    port: int
    dbname: str
    user: str
    schema: str
    set_role: str
    password_file: Path | None
    sslmode: str
    sslrootcert: Path | None
    sslcert: Path | None
    sslkey: Path | None
    connect_timeout: int
    target_session_attrs: str
    statement_timeout_ms: int

    @property
    def unix_socket(self) -> bool:
        return self.hosts[0].startswith("/")

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read database password file {self.password_file}: {exc.strerror}") from None
        return text.splitlines()[0] if text else ""

    def libpq_params(self, application_name: str, *, statement_timeout: bool) -> dict[str, object]:
        """Keyword arguments for psycopg2.connect (includes the password: never log the result)."""
        params: dict[str, object] = {
            "host": ",".join(self.hosts),
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "connect_timeout": self.connect_timeout,
            "application_name": application_name,
        }
        if len(self.hosts) > 1:
            params["target_session_attrs"] = self.target_session_attrs
        options = "-c TimeZone=UTC"  # stored and hashed text of timestamptz values is unambiguous
        if statement_timeout and self.statement_timeout_ms > 0:
            options += f" -c statement_timeout={self.statement_timeout_ms}"
        options += f" -c search_path={self.schema}"
        if self.set_role:
            # SET ROLE at login: objects a migration creates belong to the schema owner, not the login role.
            options += f" -c role={self.set_role}"
        params["options"] = options
        if not self.unix_socket:
            params["sslmode"] = self.sslmode
            params["sslrootcert"] = str(self.sslrootcert)
            if self.sslcert:
                params["sslcert"] = str(self.sslcert)
            if self.sslkey:
                params["sslkey"] = str(self.sslkey)
        password = self.password()
        if password is not None:
            params["password"] = password
        return params

    def describe(self) -> str:
        """One line for logs and errors: everything but the password."""
        where = ",".join(self.hosts) + ("" if self.unix_socket else f":{self.port}")
        tls = "unix socket" if self.unix_socket else f"sslmode={self.sslmode} ca={self.sslrootcert}"
        pw = f"password from {self.password_file}" if self.password_file else "no password"
        acting = f" as {self.set_role}" if self.set_role else ""
        return f"{self.user}{acting}@{where}/{self.dbname} schema {self.schema} ({tls}, {pw})"


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig
    store_path: Path
    max_upload_bytes: int
    pool_max: int
    log_level: str
    source: str = field(default="defaults")

    def describe(self) -> str:
        return f"database {self.database.describe()}; document store {self.store_path}; settings from {self.source}"


def _parse(setting: Setting, raw: str, origin: str) -> object:
    if setting.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{origin}: {setting.key} must be a whole number, got {raw!r}") from None
    return raw.strip()


def _read_file(path: Path) -> dict[tuple[str, str], str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path} is not valid INI: {exc}") from None
    known = {(s.section, s.key) for s in SETTINGS}
    values: dict[tuple[str, str], str] = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            if (section, key) not in known:
                valid = ", ".join(f"[{s.section}] {s.key}" for s in SETTINGS)
                raise ConfigError(f"{path}: unknown setting [{section}] {key}; valid settings: {valid}")
            values[(section, key)] = value
    return values


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Settings from the file named by CIVIC_CONFIG (or the default path if it exists), then the environment."""
    env = os.environ if environ is None else environ
    explicit = env.get("CIVIC_CONFIG")
    path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    file_values: dict[tuple[str, str], str] = {}
    sources = []
    if explicit or path.exists():
        file_values = _read_file(path)
        sources.append(str(path))
    values: dict[str, object] = {}
    for s in SETTINGS:
        if s.env in env:
            values[f"{s.section}.{s.key}"] = _parse(s, env[s.env], s.env)
            if "environment" not in sources:
                sources.append("environment")
        elif (s.section, s.key) in file_values:
            values[f"{s.section}.{s.key}"] = _parse(s, file_values[(s.section, s.key)], str(path))
        else:
            values[f"{s.section}.{s.key}"] = s.default
    return _validate(values, " + ".join(sources) or "defaults")


def _opt_path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _validate(v: Mapping[str, object], source: str) -> Config:
    hosts = tuple(h.strip() for h in str(v["database.host"]).split(",") if h.strip())
    if not hosts:
        raise ConfigError("database host is empty: set CIVIC_DB_HOST or [database] host")
    if len({h.startswith("/") for h in hosts}) > 1:
        raise ConfigError(f"database hosts mix Unix sockets and TCP hosts: {','.join(hosts)}")
    db = DatabaseConfig(
        hosts=hosts,
        port=int(v["database.port"]),  # type: ignore[arg-type]
        dbname=str(v["database.dbname"]),
        user=str(v["database.user"]),
        schema=str(v["database.schema"]),
        set_role=str(v["database.set_role"]),
        password_file=_opt_path(v["database.password_file"]),
        sslmode=str(v["database.sslmode"]),
        sslrootcert=_opt_path(v["database.sslrootcert"]),
        sslcert=_opt_path(v["database.sslcert"]),
        sslkey=_opt_path(v["database.sslkey"]),
        connect_timeout=int(v["database.connect_timeout"]),  # type: ignore[arg-type]
        target_session_attrs=str(v["database.target_session_attrs"]),
        statement_timeout_ms=int(v["database.statement_timeout_ms"]),  # type: ignore[arg-type]
    )
    for what, name in (("schema", db.schema), ("set_role", db.set_role)):
        if name and not IDENTIFIER_RE.match(name):
            raise ConfigError(f"database {what} {name!r} is not a plain lower-case SQL identifier (a-z, 0-9, _)")
    if not db.schema:
        raise ConfigError("database schema is empty: set CIVIC_DB_SCHEMA or [database] schema (e.g. public)")
    if not db.unix_socket:
        if db.sslmode not in SSLMODES_TCP:
            raise ConfigError(
                f"database sslmode is {db.sslmode!r} for TCP host(s) {','.join(hosts)}: TLS with a verified "
                "server certificate is required; set CIVIC_DB_SSLMODE=verify-full and CIVIC_DB_SSLROOTCERT"
            )
        if db.sslrootcert is None or not db.sslrootcert.is_file():
            raise ConfigError(
                f"database CA certificate {db.sslrootcert or '(unset)'} is not a readable file: set "
                "CIVIC_DB_SSLROOTCERT / [database] sslrootcert to the lab CA that signed the server certificate"
            )
    if db.target_session_attrs not in ("read-write", "any", "primary", "prefer-standby", "standby", "read-only"):
        raise ConfigError(f"database target_session_attrs {db.target_session_attrs!r} is not a libpq value")
    if db.password_file is not None:
        try:
            mode = db.password_file.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"database password file {db.password_file}: {exc.strerror}") from None
        if mode & stat.S_IROTH:
            raise ConfigError(
                f"database password file {db.password_file} is readable by every user: chmod 0640 (or 0600) it"
            )
    level = str(v["app.log_level"]).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    max_upload = int(v["app.max_upload_bytes"])  # type: ignore[arg-type]
    pool_max = int(v["app.pool_max"])  # type: ignore[arg-type]
    if max_upload < 1024 or pool_max < 1:
        raise ConfigError("max_upload_bytes must be at least 1024 and pool_max at least 1")
    return Config(
        database=db,
        store_path=Path(str(v["store.path"])),
        max_upload_bytes=max_upload,
        pool_max=pool_max,
        log_level=level,
        source=source,
    )
