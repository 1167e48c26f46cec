"""The data manifest: row counts and content checksums of every table, and the sha256 of every document.

It is what proves a restore complete and correct: take it when the data is known-good (the seeder writes
one; ``civic-services manifest`` takes one of a live estate, e.g. at backup time), restore, then
``civic-services verify-manifest`` recomputes everything and lists each difference.

Table checksum: order-independent. Every row's text (``md5(row::text)``, session TimeZone UTC and DateStyle
ISO) is read as two 64-bit numbers; the sums of those numbers and the row count are hashed. A deleted, added
or changed row changes it; physical order (a restore, VACUUM FULL) does not. md5 here detects accidents
and incomplete restores, not a forger with write access: keep the manifest with the backup, signed.

Documents: the blob's name is its sha256, so verification re-reads and re-hashes every blob the manifest
lists (in parallel threads) and compares the set the database references now with the manifest's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from civic_services.seed import TABLES

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from civic_services.store import DocumentStore

FORMAT = "civic-services-manifest/1"


class ManifestError(Exception):
    """The manifest file cannot be read or is not a civic-services manifest."""


def table_digest(table: str, count: int, sum_a: int, sum_b: int) -> str:
    return hashlib.sha256(f"{table}:{count}:{sum_a}:{sum_b}".encode()).hexdigest()


def files_digest(files: Mapping[str, int]) -> str:
    return hashlib.sha256("".join(f"{sha} {files[sha]}\n" for sha in sorted(files)).encode()).hexdigest()


def _table_state(cur: Cursor) -> dict[str, dict[str, object]]:
    from psycopg2 import sql  # lazy: the pure parts of this module import without psycopg2

    out: dict[str, dict[str, object]] = {}
    for table in TABLES:
        cur.execute(
            sql.SQL(
                "SELECT count(*), "
                "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text, "
                "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text "
                "FROM (SELECT md5(t::text) AS h FROM {} AS t) AS rows"
            ).format(sql.Identifier(table))
        )
        count, sum_a, sum_b = cur.fetchone()
        out[table] = {"rows": count, "hash": table_digest(table, count, int(sum_a), int(sum_b))}
    return out


def _db_files(cur: Cursor) -> dict[str, int]:
    cur.execute("SELECT DISTINCT sha256, size_bytes FROM documents")
    return dict(cur.fetchall())


def _schema_versions(cur: Cursor) -> list[int]:
    cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [v for (v,) in cur.fetchall()]


def _snapshot(conn: Connection) -> tuple[list[int], dict[str, dict[str, object]], dict[str, int]]:
    """Everything from one consistent snapshot (REPEATABLE READ, read only)."""
    conn.rollback()
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            versions = _schema_versions(cur)
            tables = _table_state(cur)
            files = _db_files(cur)
        conn.rollback()
    finally:
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
    return versions, tables, files


def build_manifest(conn: Connection, *, seed: int | None = None, size: str | None = None) -> dict[str, object]:
    versions, tables, files = _snapshot(conn)
    return {
        "format": FORMAT,
        "seed": seed,
        "size": size,
        "schema_versions": versions,
        "tables": tables,
        "documents": {
            "count": len(files),
            "bytes": sum(files.values()),
            "digest": files_digest(files),
            "files": dict(sorted(files.items())),
        },
    }


def write_manifest(manifest: Mapping[str, object], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a {FORMAT} manifest")
    files = data.get("documents", {}).get("files")
    if not isinstance(files, dict) or files_digest(files) != data["documents"].get("digest"):
        raise ManifestError(f"manifest {path}: document list does not match its digest (file edited or truncated)")
    return data


# -- comparing (pure) --------------------------------------------------------------------------------------


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables_checked: int = 0
    rows_checked: int = 0
    documents_checked: int = 0
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def diff_tables(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"table {table}: in the manifest, missing from the database")
            continue
        if table not in expected:
            problems.append(f"table {table}: in the database, not in the manifest")
            continue
        want, got = expected[table], actual[table]
        if want["rows"] != got["rows"]:
            delta = got["rows"] - want["rows"]
            what = f"{-delta:,} missing" if delta < 0 else f"{delta:,} extra"
            problems.append(f"table {table}: {got['rows']:,} rows, manifest says {want['rows']:,} ({what})")
        elif want["hash"] != got["hash"]:
            problems.append(f"table {table}: same row count ({got['rows']:,}) but row contents differ")
    return problems


BlobCheck = Callable[[str, int], "str | None"]


def diff_documents(
    expected: Mapping[str, int], in_db: Mapping[str, int], check_blob: BlobCheck, *, jobs: int = 4
) -> tuple[list[str], int]:
    """Problems with the documents, and the bytes re-hashed. check_blob(sha, size) -> None or what is wrong."""
    problems = []
    for sha in sorted(set(expected) - set(in_db)):
        problems.append(f"document {sha}: in the manifest, but no documents row references it any more")
    for sha in sorted(set(in_db) - set(expected)):
        problems.append(f"document {sha}: referenced by the database, not in the manifest")
    for sha in sorted(set(expected) & set(in_db)):
        if expected[sha] != in_db[sha]:
            problems.append(f"document {sha}: database says {in_db[sha]} bytes, manifest {expected[sha]}")
    to_check = sorted(set(expected) | set(in_db))
    sizes = {**in_db, **expected}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda sha: check_blob(sha, sizes[sha]), to_check))
    for sha, result in zip(to_check, results, strict=True):
        if result is not None:
            problems.append(f"document {sha} ({sizes[sha]:,} bytes): {result}")
    return problems, sum(sizes[sha] for sha in to_check)


def verify(conn: Connection, store: DocumentStore, manifest: Mapping[str, Any], *, jobs: int | None = None) -> Report:
    """Compare a live database + document store with a manifest."""
    versions, tables, files = _snapshot(conn)
    report = Report()
    if versions != manifest["schema_versions"]:
        report.problems.append(f"schema versions {versions}, manifest has {manifest['schema_versions']}")
    report.problems += diff_tables(manifest["tables"], tables)
    report.tables_checked = len(tables)
    report.rows_checked = sum(int(t["rows"]) for t in tables.values())
    doc_problems, checked_bytes = diff_documents(
        manifest["documents"]["files"], files, store.check_blob, jobs=jobs or min(8, (os.cpu_count() or 1) * 2)
    )
    report.problems += doc_problems
    report.documents_checked = len(set(files) | set(manifest["documents"]["files"]))
    report.bytes_checked = checked_bytes
    unreferenced = sum(1 for sha, _size in store.iter_blobs() if sha not in files)
    if unreferenced:
        report.notes.append(
            f"{unreferenced} blob(s) in the store are referenced by no documents row (harmless: left by an "
            "interrupted upload or an earlier seed)"
        )
    return report
