"""``civic-services`` command line: run on an app host with the app's settings (CIVIC_CONFIG / CIVIC_*).

Exit codes: 0 ok · 1 a check or verification failed (each problem listed) · 2 usage or settings error ·
3 refused (seeding a database that already holds data without --replace).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from civic_services import NAME
from civic_services.config import SETTINGS, Config, ConfigError, load_config

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    from civic_services import seed as seed_module

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


def _err(command: str, message: str, hint: str | None = None) -> None:
    print(f"{NAME} {command}: ERROR: {message}", file=sys.stderr)
    if hint:
        print(f"  next: {hint}", file=sys.stderr)


def _connect(cfg: Config, command: str) -> Connection:
    import psycopg2  # lazy: verify-release, version and config work without psycopg2

    from civic_services.db import Database

    try:
        return Database(cfg.database, application_name=f"{NAME} {command}", statement_timeout=False).connect()
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _Fail(
            f"cannot connect to the database {cfg.database.describe()}: {first}",
            "check that PostgreSQL runs and these settings (civic-services config) are right",
        ) from None


class _Fail(Exception):
    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


def cmd_migrate(args: argparse.Namespace, cfg: Config) -> int:
    import psycopg2

    from civic_services import migrate

    conn = _connect(cfg, "migrate")
    try:
        result = migrate.migrate(conn, check_only=args.check, grant_to=args.grant_to)
    except migrate.MigrationError as exc:
        raise _Fail(str(exc)) from None
    except psycopg2.Error as exc:
        raise _Fail(f"migrate failed on {cfg.database.describe()}: {str(exc).strip()}") from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps({**result.__dict__, "changed": result.changed}, sort_keys=True))
    elif args.check:
        if result.pending:
            print(f"schema at version {result.current}; pending: {', '.join(result.pending)}")
        else:
            print(f"schema up to date (version {result.current})")
    else:
        if result.applied:
            print(f"applied {', '.join(result.applied)}; schema now at version {result.current}")
        else:
            print(f"schema up to date (version {result.current}); nothing applied")
        if args.grant_to:
            state = "changed" if result.grants_changed else "unchanged"
            print(f"privileges of {args.grant_to}: {state} (SELECT; INSERT on payments, documents)")
    return EXIT_FAILED if args.check and result.pending else EXIT_OK


def cmd_seed(args: argparse.Namespace, cfg: Config) -> int:
    from civic_services import manifest, seed
    from civic_services.store import DocumentStore, StoreError

    store = DocumentStore(cfg.store_path)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[seed {args.size} {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if args.only != "database":
        try:
            store.probe()
        except StoreError as exc:
            hint = "create the document store directory (the app role does) and make it writable"
            raise _Fail(str(exc), hint) from None
    if args.manifest and args.only != "documents":
        folder = Path(args.manifest).resolve().parent
        # Checked before loading, by writing (permissions alone miss read-only file systems and root):
        # a seed whose manifest cannot be written proves nothing later.
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".seed-probe-"):
                pass
        except OSError as exc:
            raise _Fail(
                f"cannot write the manifest into {folder}: {exc.strerror}", "give a --manifest path this user may write"
            ) from None
    if args.only == "documents":
        if args.manifest or args.replace:
            raise _Fail("--only documents writes no rows: --manifest and --replace do not apply", code=EXIT_USAGE)
        try:
            result = seed.seed_documents(store, size=args.size, seed=args.seed, progress=progress)
        except StoreError as exc:
            raise _Fail(str(exc)) from None
        return _print_seed_summary(args, cfg, result)
    conn = _connect(cfg, "seed")
    try:
        result = seed.seed_database(
            conn,
            store,
            size=args.size,
            seed=args.seed,
            replace=args.replace,
            progress=progress,
            write_documents=args.only != "database",
        )
        t0 = time.monotonic()
        data = manifest.build_manifest(conn, seed=args.seed, size=args.size)
        result.seconds["manifest"] = round(time.monotonic() - t0, 3)
    except seed.SeedRefused as exc:
        raise _Fail(str(exc), code=EXIT_REFUSED) from None
    except (seed.SeedError, StoreError) as exc:
        raise _Fail(str(exc)) from None
    finally:
        conn.close()
    if args.manifest:
        manifest.write_manifest(data, Path(args.manifest))
    return _print_seed_summary(args, cfg, result)


def _print_seed_summary(args: argparse.Namespace, cfg: Config, result: seed_module.SeedResult) -> int:
    seconds = {k: round(v, 3) for k, v in result.seconds.items()}
    summary = {
        "size": args.size,
        "seed": args.seed,
        "rows": result.rows,
        "documents": result.documents,
        "document_bytes": result.document_bytes,
        "seconds": seconds,
        "manifest": args.manifest,
        "only": args.only,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        rows = ", ".join(f"{t} {n:,}" for t, n in result.rows.items())
        print(f"seeded size={args.size} seed={args.seed} in {seconds['total']:.1f}s: {rows}")
        written = "hashed, not written" if args.only == "database" else f"written to {cfg.store_path}"
        print(f"documents: {result.documents:,} ({result.document_bytes / 1e6:,.1f} MB) {written}")
        if args.manifest:
            print(f"manifest: {args.manifest}")
    return EXIT_OK


def cmd_manifest(args: argparse.Namespace, cfg: Config) -> int:
    from civic_services import manifest

    conn = _connect(cfg, "manifest")
    try:
        data = manifest.build_manifest(conn)
    finally:
        conn.close()
    manifest.write_manifest(data, Path(args.out))
    rows = sum(t["rows"] for t in data["tables"].values())  # type: ignore[union-attr]
    print(f"manifest {args.out}: {len(data['tables'])} tables, {rows:,} rows, {data['documents']['count']:,} documents")  # type: ignore[index]
    return EXIT_OK


def cmd_verify_manifest(args: argparse.Namespace, cfg: Config) -> int:
    from civic_services import manifest
    from civic_services.store import DocumentStore

    try:
        expected = manifest.read_manifest(Path(args.manifest))
    except manifest.ManifestError as exc:
        raise _Fail(str(exc), code=EXIT_USAGE) from None
    conn = _connect(cfg, "verify-manifest")
    started = time.monotonic()
    try:
        report = manifest.verify(conn, DocumentStore(cfg.store_path), expected, jobs=args.jobs)
    finally:
        conn.close()
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps({**report.__dict__, "ok": report.ok, "seconds": round(seconds, 3)}, sort_keys=True))
        return EXIT_OK if report.ok else EXIT_FAILED
    what = (
        f"{report.tables_checked} tables, {report.rows_checked:,} rows, {report.documents_checked:,} documents "
        f"({report.bytes_checked / 1e6:,.1f} MB re-hashed) in {seconds:.1f}s"
    )
    if report.ok:
        print(f"verify-manifest: OK: {what} match {args.manifest}")
    else:
        print(f"verify-manifest: FAILED: {len(report.problems)} difference(s) from {args.manifest} ({what})")
        limit = args.max_problems
        for problem in report.problems[:limit]:
            print(f"  - {problem}")
        if len(report.problems) > limit:
            print(f"  … and {len(report.problems) - limit} more (--max-problems, or --json for all)")
        print("  next: restore the missing data (database and/or document store) and verify again")
    for note in report.notes:
        print(f"  note: {note}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_verify_release(args: argparse.Namespace, _cfg: Config | None) -> int:
    from civic_services import release

    root = Path(args.dir) if args.dir else release.RELEASE_ROOT
    problems = release.verify_release(root)
    if problems:
        print(f"verify-release: FAILED: {root}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        return EXIT_FAILED
    info = release.read_release(root) or {}
    print(f"verify-release: OK: {root} is {info.get('name')} {info.get('version')} (build {info.get('build_id')})")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, cfg: Config) -> int:
    from civic_services import health
    from civic_services.db import Database
    from civic_services.store import DocumentStore

    db = Database(cfg.database, application_name=f"{NAME} check", pool_max=1)
    ok, body = health.run_checks(db, DocumentStore(cfg.store_path))
    db.close()
    if args.json:
        print(json.dumps(body, sort_keys=True))
    else:
        for name, check in body["checks"].items():  # type: ignore[union-attr]
            state = "ok" if check["ok"] else f"FAILED: {check.get('error')}"
            print(f"{name:10} {state}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_config(_args: argparse.Namespace, cfg: Config) -> int:
    print(cfg.describe())
    for s in SETTINGS:
        print(f"  [{s.section}] {s.key:22} env {s.env:32} {s.help}")
    return EXIT_OK


def cmd_version(_args: argparse.Namespace, _cfg: Config | None) -> int:
    from civic_services.release import version_info

    info = version_info()
    print(f"{info['name']} {info['version']} (build {info['build_id']})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from civic_services.seed import SIZES

    parser = argparse.ArgumentParser(prog=NAME, description="civic-services: e-Nagar Palika sample application")
    from civic_services.release import version_info

    info = version_info()
    parser.add_argument("--version", action="version", version=f"{NAME} {info['version']} (build {info['build_id']})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if migrations are pending")
    p.add_argument("--grant-to", metavar="ROLE", help="give ROLE exactly the web app's privileges (least privilege)")
    p.add_argument("--json", action="store_true", help="one JSON line: applied, pending, current, changed")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load deterministic synthetic data for all 413 ULBs")
    sizes = ", ".join(f"{k} ({v.description})" for k, v in SIZES.items())
    p.add_argument("--size", choices=sorted(SIZES), default="small", help=f"how much data: {sizes}")
    p.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same data (default 1)")
    p.add_argument("--manifest", metavar="FILE", help="write the data manifest (row counts, checksums) here")
    p.add_argument("--replace", action="store_true", help="wipe existing civic-services data first")
    p.add_argument(
        "--only",
        choices=("all", "database", "documents"),
        default="all",
        help="database: rows only (documents hashed, not written: the database host has no store); "
        "documents: only the document store's files, no database (each app server fills its own)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("manifest", help="write a manifest of the data as it is now (e.g. at backup time)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("verify-manifest", help="recompute counts and checksums; exit 1 listing each difference")
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("--jobs", type=int, default=None, help="threads re-hashing documents (default: 2 per CPU, <= 8)")
    p.add_argument("--max-problems", type=int, default=50, help="problems to list (default 50)")
    p.add_argument("--json", action="store_true", help="full report as JSON")
    p.set_defaults(func=cmd_verify_manifest)

    p = sub.add_parser("verify-release", help="check a release directory against its RELEASE file")
    p.add_argument("dir", nargs="?", help="release directory (default: the one this command runs from)")
    p.set_defaults(func=cmd_verify_release, needs_config=False)

    p = sub.add_parser("check", help="the /health checks from the command line (exit 1 if red)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", help="show the effective settings (no password) and every setting's name")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("version", help="release version and build id")
    p.set_defaults(func=cmd_version, needs_config=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg: Config | None = None
    try:
        if getattr(args, "needs_config", True):
            try:
                cfg = load_config()
            except ConfigError as exc:
                raise _Fail(str(exc), "fix the setting in the config file or environment", EXIT_USAGE) from None
        return args.func(args, cfg)
    except _Fail as exc:
        _err(args.command, exc.message, exc.hint)
        return exc.code
    except KeyboardInterrupt:
        _err(args.command, "interrupted (a seed in progress was rolled back)")
        return 130
