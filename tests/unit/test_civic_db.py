"""civic-services against a real, throwaway PostgreSQL: migrations, least privilege, seeding, manifests.

The CLI runs as on an app host (/usr/bin/python3 with Debian's psycopg2); see tests/app/civic_harness.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.app.civic_harness import APP_ROLE, Estate, cluster, make_estate, requires_runtime

pytestmark = requires_runtime


@pytest.fixture
def estate(request: pytest.FixtureRequest, tmp_path: Path) -> Estate:
    return make_estate(cluster(request), tmp_path, "civic_db")


def _ok(proc: object) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def test_migrate_is_idempotent_and_check_reports_pending(estate: Estate) -> None:
    pending = estate.cli("migrate", "--check")
    assert pending.returncode == 1
    assert "pending: 001_core, 002_lookup_indexes" in pending.stdout
    first = json.loads(_ok(estate.cli("migrate", "--json")))
    assert first["applied"] == ["001_core", "002_lookup_indexes"] and first["changed"] is True
    recorded = estate.sql("SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version")
    second = json.loads(_ok(estate.cli("migrate", "--json")))
    assert second["applied"] == [] and second["changed"] is False and second["current"] == 2
    assert estate.sql("SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version") == recorded
    assert "schema up to date (version 2)" in _ok(estate.cli("migrate", "--check"))


def test_an_applied_migration_that_changed_is_refused(estate: Estate) -> None:
    _ok(estate.cli("migrate"))
    estate.sql("UPDATE schema_migrations SET sha256 = repeat('0', 64) WHERE version = 1")
    proc = estate.cli("migrate")
    assert proc.returncode == 1
    assert "migration 001_core was changed after it was applied" in proc.stderr
    assert "put the change in a new migration" in proc.stderr


def test_grant_to_gives_the_app_role_least_privilege(estate: Estate) -> None:
    first = json.loads(_ok(estate.cli("migrate", "--grant-to", APP_ROLE, "--json")))
    assert first["grants_changed"] is True
    assert json.loads(_ok(estate.cli("migrate", "--grant-to", APP_ROLE, "--json")))["grants_changed"] is False
    privileges = estate.sql(
        "SELECT table_name || ':' || string_agg(privilege_type, ',' ORDER BY privilege_type) "
        "FROM information_schema.role_table_grants WHERE grantee = 'civic_app' GROUP BY table_name ORDER BY 1"
    ).splitlines()
    assert "payments:INSERT,SELECT" in privileges and "documents:INSERT,SELECT" in privileges
    assert "properties:SELECT" in privileges and "ulbs:SELECT" in privileges
    assert not [p for p in privileges if any(w in p for w in ("UPDATE", "DELETE", "TRUNCATE"))]
    with pytest.raises(RuntimeError, match="permission denied"):
        estate.pg.psql(estate.dbname, "DELETE FROM payments", user=APP_ROLE)
    assert estate.cli("migrate", "--grant-to", "no_such_role").returncode == 1


def test_migrations_as_the_nologin_owner_in_a_named_schema(estate: Estate) -> None:
    # The layout the postgresql role builds: schema civic owned by the NOLOGIN civic_owner; a superuser logs in
    # and acts as the owner (set_role), so tables belong to the owner and the app role reads them via search_path.
    estate.sql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'civic_owner') "
        "THEN CREATE ROLE civic_owner NOLOGIN; END IF; END $$"
    )
    estate.sql("CREATE SCHEMA civic AUTHORIZATION civic_owner")
    owner_env = {"CIVIC_DB_SCHEMA": "civic", "CIVIC_DB_SET_ROLE": "civic_owner"}
    missing = estate.cli("migrate", CIVIC_DB_SCHEMA="nosuch", CIVIC_DB_SET_ROLE="civic_owner")
    assert missing.returncode == 1 and "configured schema does not exist" in missing.stderr
    _ok(estate.cli("migrate", "--grant-to", APP_ROLE, **owner_env))
    assert estate.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'payments'") == "civic_owner"
    assert estate.sql("SELECT schemaname FROM pg_tables WHERE tablename = 'payments'") == "civic"
    assert estate.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    assert json.loads(_ok(estate.cli("migrate", "--json", **owner_env)))["changed"] is False
    as_app = estate.cli("migrate", "--check", user=APP_ROLE, CIVIC_DB_SCHEMA="civic")
    assert "schema up to date (version 2)" in _ok(as_app)
    bad = estate.cli("migrate", CIVIC_DB_SCHEMA="Civic; DROP")
    assert bad.returncode != 0 and "not a plain lower-case SQL identifier" in bad.stderr


def test_seed_small_runs_well_under_a_minute(estate: Estate) -> None:
    _ok(estate.cli("migrate"))
    started = time.monotonic()
    summary = json.loads(_ok(estate.cli("seed", "--size", "small", "--seed", "3", "--json")))
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"seed --size small took {elapsed:.1f}s"
    assert summary["rows"]["ulbs"] == 413
    assert summary["rows"]["properties"] > 5_000
    assert summary["documents"] > 1_000
    counts = estate.sql("SELECT count(DISTINCT ulb_code) FROM properties")
    assert counts == "413", "every ULB has properties"
    kinds = estate.sql("SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM certificates")
    assert kinds == "birth,death,marriage"


def test_database_and_documents_seeded_apart_verify_together(estate: Estate, tmp_path: Path) -> None:
    # The estate's way: rows on the database host (documents only hashed), each app server writes its own
    # copy of the documents; the manifest then verifies against every copy, and not against an empty store.
    _ok(estate.cli("migrate"))
    manifest = tmp_path / "manifest.json"
    _ok(estate.cli("seed", "--size", "tiny", "--seed", "5", "--only", "database", "--manifest", str(manifest)))
    assert not [p for p in estate.store.rglob("*") if p.is_file() and "sha256" in p.parts], "database-only wrote blobs"
    empty = estate.cli("verify-manifest", str(manifest))
    assert empty.returncode == 1, empty.stdout
    app_store = tmp_path / "app-store"
    app_store.mkdir()
    docs = json.loads(_ok(estate.cli("seed", "--size", "tiny", "--seed", "5", "--only", "documents", "--json",
                                     CIVIC_STORE_PATH=str(app_store), CIVIC_DB_HOST="/nonexistent")))  # fmt: skip
    assert docs["documents"] > 0 and docs["rows"] == {}
    _ok(estate.cli("verify-manifest", str(manifest), CIVIC_STORE_PATH=str(app_store)))
    unwritable = estate.cli("seed", "--size", "tiny", "--manifest", "/proc/manifest.json", "--replace")
    assert unwritable.returncode == 1 and "cannot write the manifest into /proc" in unwritable.stderr
    assert estate.sql("SELECT count(*) FROM ulbs") == "413", "a refused seed must not touch the data"
    refused = estate.cli("seed", "--only", "documents", "--manifest", str(tmp_path / "x.json"))
    assert refused.returncode == 2 and "--manifest and --replace do not apply" in refused.stderr


def _seed(estate: Estate, seed: int, manifest: Path) -> dict:
    _ok(estate.cli("migrate"))
    _ok(estate.cli("seed", "--size", "tiny", "--seed", str(seed), "--manifest", str(manifest)))
    return json.loads(manifest.read_text())


def test_same_seed_gives_the_same_manifest_other_seed_another(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pg = cluster(request)
    estates = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        estates.append(make_estate(pg, tmp_path / name, f"civic_det_{name}"))
    a = _seed(estates[0], 11, tmp_path / "a.json")
    b = _seed(estates[1], 11, tmp_path / "b.json")
    c = _seed(estates[2], 12, tmp_path / "c.json")
    assert a == b, "same seed, same manifest (rows and documents)"
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["tables"]["properties"]["hash"] != c["tables"]["properties"]["hash"]
    assert a["documents"]["digest"] != c["documents"]["digest"]
    assert a["documents"]["count"] == len(a["documents"]["files"]) > 400
    assert sorted(a["tables"]) == sorted(
        ["ulbs", "documents", "properties", "tax_demands", "payments", "water_connections", "trade_licences",
         "building_permissions", "certificates"]
    )  # fmt: skip


def test_seed_refuses_a_database_with_data_unless_replace(estate: Estate, tmp_path: Path) -> None:
    first = _seed(estate, 5, tmp_path / "m1.json")
    again = estate.cli("seed", "--size", "tiny", "--seed", "5")
    assert again.returncode == 3
    assert "--replace" in again.stderr
    _ok(estate.cli("seed", "--size", "tiny", "--seed", "5", "--replace", "--manifest", str(tmp_path / "m2.json")))
    assert json.loads((tmp_path / "m2.json").read_text()) == first


def test_seed_needs_migrations_first(estate: Estate) -> None:
    proc = estate.cli("seed", "--size", "tiny")
    assert proc.returncode == 1
    assert "run migrate" in proc.stderr


def test_verify_manifest_passes_then_finds_a_deleted_row_and_a_changed_document(estate: Estate, tmp_path: Path) -> None:
    data = _seed(estate, 9, tmp_path / "m.json")
    out = _ok(estate.cli("verify-manifest", str(tmp_path / "m.json")))
    assert out.startswith("verify-manifest: OK: 9 tables")

    # a deleted payment (as a restore that lost the last minutes would)
    estate.sql("DELETE FROM payments WHERE id = (SELECT max(id) FROM payments)")
    # a changed document and a missing one
    files = sorted(data["documents"]["files"])
    changed, missing = files[0], files[1]
    blob = estate.store / "sha256" / changed[:2] / changed
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"?")
    (estate.store / "sha256" / missing[:2] / missing).unlink()

    proc = estate.cli("verify-manifest", str(tmp_path / "m.json"))
    assert proc.returncode == 1, proc.stdout
    assert "verify-manifest: FAILED: 3 difference(s)" in proc.stdout
    assert "table payments:" in proc.stdout and "(1 missing)" in proc.stdout
    assert f"document {changed}" in proc.stdout and "content changed" in proc.stdout
    assert f"document {missing}" in proc.stdout and "missing from the store" in proc.stdout

    report = json.loads(estate.cli("verify-manifest", str(tmp_path / "m.json"), "--json").stdout)
    assert report["ok"] is False and len(report["problems"]) == 3


def test_verify_manifest_detects_a_changed_row_with_the_same_count(estate: Estate, tmp_path: Path) -> None:
    _seed(estate, 9, tmp_path / "m.json")
    estate.sql("UPDATE properties SET owner_name = owner_name || 'x' WHERE id = 1")
    proc = estate.cli("verify-manifest", str(tmp_path / "m.json"))
    assert proc.returncode == 1
    assert "table properties: same row count" in proc.stdout


def test_manifest_of_a_live_estate_verifies(estate: Estate, tmp_path: Path) -> None:
    _seed(estate, 2, tmp_path / "seeded.json")
    _ok(estate.cli("manifest", "--out", str(tmp_path / "now.json")))
    assert "OK" in _ok(estate.cli("verify-manifest", str(tmp_path / "now.json")))
    now = json.loads((tmp_path / "now.json").read_text())
    seeded = json.loads((tmp_path / "seeded.json").read_text())
    assert now["tables"] == seeded["tables"] and now["seed"] is None


def test_check_command_and_bad_settings(estate: Estate) -> None:
    _ok(estate.cli("migrate"))
    assert "database   ok" in _ok(estate.cli("check"))
    proc = estate.cli("check", CIVIC_DB_NAME="no_such_db")
    assert proc.returncode == 1 and "database   FAILED" in proc.stdout
    bad = estate.cli("check", CIVIC_DB_HOST="db1.example", CIVIC_DB_SSLMODE="require")
    assert bad.returncode == 2 and "verify-full" in bad.stderr
    assert "CIVIC_DB_PASSWORD_FILE" in _ok(estate.cli("config"))
