"""The checks behind GET /health and ``civic-services check``.

Green only when the database answers a query with the schema this release needs AND the document store
accepts a write, reads it back and deletes it. Each check reports ok, duration and, when red, one line
saying what failed (never a secret: psycopg2 messages carry no password).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg2
import psycopg2.errors

from civic_services import migrate
from civic_services.release import version_info
from civic_services.store import DocumentStore, StoreError

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from civic_services.db import Database


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def _schema_version(cur: Cursor) -> int | None:
    try:
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    except psycopg2.errors.UndefinedTable:
        return None
    return int(cur.fetchone()[0])


def run_checks(db: Database, store: DocumentStore) -> tuple[bool, dict[str, object]]:
    checks: dict[str, dict[str, object]] = {}
    expected = migrate.latest_version()
    t0 = time.monotonic()
    try:
        found = db.run(_schema_version)
    except psycopg2.Error as exc:
        checks["database"] = {"ok": False, "error": _first_line(exc), "ms": round((time.monotonic() - t0) * 1000)}
    else:
        checks["database"] = {"ok": True, "ms": round((time.monotonic() - t0) * 1000)}
        if found is None:
            checks["schema"] = {"ok": False, "error": "no schema_migrations table: run civic-services migrate"}
        else:
            checks["schema"] = {
                "ok": found >= expected,
                "version": found,
                "expected": expected,
                **({} if found >= expected else {"error": f"schema {found} < {expected}: run civic-services migrate"}),
            }
    t1 = time.monotonic()
    try:
        store.probe()
    except StoreError as exc:
        checks["documents"] = {"ok": False, "error": str(exc), "ms": round((time.monotonic() - t1) * 1000)}
    else:
        checks["documents"] = {"ok": True, "ms": round((time.monotonic() - t1) * 1000)}
    failed = [name for name, check in checks.items() if not check["ok"]]
    info = version_info()
    body = {
        "status": "fail" if failed else "ok",
        "failed": failed,
        "checks": checks,
        "version": info["version"],
        "build_id": info["build_id"],
    }
    return not failed, body
