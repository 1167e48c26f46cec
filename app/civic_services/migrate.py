"""Schema migrations: ``migrations/NNN_name.sql`` applied in order, each once, recorded in schema_migrations.

* Idempotent: a second run applies nothing. An advisory lock makes concurrent runs (two app hosts) safe.
* Each migration runs in its own transaction together with its schema_migrations row.
* An applied migration whose file changed since is an error (add a new migration instead).
* ``--grant-to ROLE`` converges the runtime role to least privilege: SELECT everywhere, INSERT only where
  the web app writes (payments, documents) and the sequences those need; nothing else (no UPDATE/DELETE).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg2 import sql

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILENAME_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
LOCK_KEY = 4130_2023_12  # pg_advisory_lock key: "413 ULBs, December 2023"

# What the web app's role may do, table by table (everything else is revoked).
APP_PRIVILEGES = {
    "ulbs": ("SELECT",),
    "properties": ("SELECT",),
    "tax_demands": ("SELECT",),
    "payments": ("SELECT", "INSERT"),
    "water_connections": ("SELECT",),
    "trade_licences": ("SELECT",),
    "building_permissions": ("SELECT",),
    "certificates": ("SELECT",),
    "documents": ("SELECT", "INSERT"),
    "schema_migrations": ("SELECT",),
}
APP_SEQUENCES = ("payments", "documents")  # identity sequences the app draws ids from


class MigrationError(Exception):
    """The schema cannot be migrated safely; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    current: int = 0
    latest: int = 0
    grants_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.grants_changed


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = FILENAME_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path}: migration files are named NNN_lower_case_name.sql")
        found.append(Migration(int(m[1]), m[2], path, hashlib.sha256(path.read_bytes()).hexdigest()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{directory}: migration versions must be 1..N without gaps, found {versions}")
    return found


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    return len(discover(directory))


def _applied(cur: Cursor) -> dict[int, tuple[str, str]] | None:
    cur.execute("SELECT to_regclass(format('%I.schema_migrations', current_schema())) IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version, name, sha256 FROM schema_migrations ORDER BY version")
    return {v: (n, s) for v, n, s in cur.fetchall()}


def _check_history(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (_name, sha) in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            continue  # the database is newer than this release (a rollback): fine if migrations are additive
        if m.sha256 != sha:
            raise MigrationError(
                f"migration {m.label} was changed after it was applied (file sha256 {m.sha256[:12]}, applied "
                f"{sha[:12]}): restore the original file and put the change in a new migration"
            )


def _privileges(cur: Cursor, role: str) -> set[tuple[str, str]]:
    cur.execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND table_schema = current_schema()",
        (role,),
    )
    privs = {(t, p) for t, p in cur.fetchall()}
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() "
        "AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%s, c.oid, 'USAGE') ELSE false END",
        (role,),
    )
    privs |= {(s, "USAGE") for (s,) in cur.fetchall()}
    return privs


def _current_schema(cur: Cursor) -> str:
    cur.execute("SELECT current_schema()")
    (schema,) = cur.fetchone()
    if schema is None:
        raise MigrationError(
            "the configured schema does not exist or is not usable by this role: create it (the postgresql role does) "
            "or set [database] schema / CIVIC_DB_SCHEMA"
        )
    return str(schema)


def _grant(cur: Cursor, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        raise MigrationError(f"role {role!r} does not exist: create it first (the postgresql role does)")
    before = _privileges(cur, role)
    ident = sql.Identifier(role)
    schema = sql.Identifier(_current_schema(cur))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident))
    cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, ident))
    cur.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema, ident))
    for table, privileges in APP_PRIVILEGES.items():
        cur.execute(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in privileges), sql.Identifier(table), ident
            )
        )
    for table in APP_SEQUENCES:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
        (sequence,) = cur.fetchone()
        cur.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.SQL(sequence), ident))
    return _privileges(cur, role) != before


def migrate(conn: Connection, *, check_only: bool = False, grant_to: str | None = None) -> MigrateResult:
    """Apply pending migrations on conn (a psycopg2 connection of the schema owner)."""
    migrations = discover()
    result = MigrateResult(latest=len(migrations))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            _current_schema(cur)
            applied = _applied(cur)
            conn.rollback()
            if applied is None:
                if check_only:
                    result.pending = [m.label for m in migrations]
                    return result
                cur.execute(
                    "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                    "sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.commit()
                applied = {}
            _check_history(migrations, applied)
            pending = [m for m in migrations if m.version not in applied]
            result.current = max(applied, default=0)
            if check_only:
                result.pending = [m.label for m in pending]
                return result
            for m in pending:
                try:
                    cur.execute(m.path.read_text(encoding="utf-8"))
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.sha256),
                    )
                    conn.commit()
                except Exception as exc:
                    conn.rollback()
                    raise MigrationError(f"migration {m.label} failed and was rolled back: {exc}".strip()) from exc
                result.applied.append(m.label)
                result.current = max(result.current, m.version)
            if grant_to:
                result.grants_changed = _grant(cur, grant_to)
                conn.commit()
    finally:
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return result


def schema_version(cur: Cursor) -> int:
    """Highest applied migration (0 when none), for /health."""
    applied = _applied(cur)
    return max(applied, default=0) if applied else 0
