"""civic-services pure parts, in the test venv (no PostgreSQL, no Flask): ULB list, settings, documents,
document store, manifest comparison, seed plan and migration files."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

import pytest

from tests.app.civic_harness import PROJECT, import_app

ulbs = import_app("civic_services.ulbs")
config = import_app("civic_services.config")
docgen = import_app("civic_services.docgen")
store_mod = import_app("civic_services.store")
seed = import_app("civic_services.seed")
manifest = import_app("civic_services.manifest")
release = import_app("civic_services.release")

CORPORATIONS = [
    "Bhopal", "Indore", "Gwalior", "Jabalpur", "Ujjain", "Sagar", "Ratlam", "Satna", "Dewas", "Rewa", "Burhanpur",
    "Khandwa", "Katni", "Singrauli", "Morena", "Chhindwara",
]  # fmt: skip


# -- the 413 ULBs -------------------------------------------------------------------------------------------


def test_413_ulbs_with_the_states_kind_counts() -> None:
    assert len(ulbs.ULBS) == 413
    kinds = [u.kind for u in ulbs.ULBS]
    assert (kinds.count("nagar_nigam"), kinds.count("nagar_palika_parishad"), kinds.count("nagar_parishad")) == (
        16,
        99,
        298,
    )
    assert len({u.code for u in ulbs.ULBS}) == 413
    assert len({u.name for u in ulbs.ULBS}) == 413
    assert all(re.fullmatch(r"MP\d{3}", u.code) for u in ulbs.ULBS)


def test_municipal_corporations_are_the_real_sixteen_and_only_bhopal_is_off_portal() -> None:
    corporations = [u for u in ulbs.ULBS if u.kind == "nagar_nigam"]
    assert [u.town for u in corporations] == CORPORATIONS
    assert all(u.name == f"Nagar Nigam {u.town}" and u.district == u.town for u in corporations)
    assert not any(u.synthetic_name for u in corporations)
    assert [u.name for u in ulbs.ULBS if not u.on_portal] == ["Nagar Nigam Bhopal"]
    assert sum(u.on_portal for u in ulbs.ULBS) == 412


def test_every_ulb_is_in_a_real_district_and_every_district_has_ulbs() -> None:
    assert len(ulbs.DISTRICTS) == 55 == len(set(ulbs.DISTRICTS))
    assert {u.district for u in ulbs.ULBS} == set(ulbs.DISTRICTS)


# -- settings -----------------------------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CIVIC_CONFIG": str(tmp_path / "c.conf"), **extra}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "c.conf"
    path.write_text("[database]\nhost = /run/postgresql\ndbname = fromfile\n[store]\npath = /srv/docs\n")
    return path


def test_environment_overrides_the_file(tmp_path: Path, conf: Path) -> None:
    cfg = config.load_config(_env(tmp_path, CIVIC_DB_NAME="fromenv"))
    assert cfg.database.dbname == "fromenv"
    assert cfg.store_path == Path("/srv/docs")
    assert cfg.database.unix_socket
    assert "sslmode" not in cfg.database.libpq_params("t", statement_timeout=True)


def test_unknown_setting_in_the_file_is_refused(tmp_path: Path, conf: Path) -> None:
    conf.write_text("[database]\nhots = db1\n")
    with pytest.raises(config.ConfigError, match=r"unknown setting \[database\] hots"):
        config.load_config(_env(tmp_path))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CIVIC_DB_SSLMODE": "require"}, "verify-full"),
        ({"CIVIC_DB_SSLMODE": "disable"}, "verify-full"),
        ({"CIVIC_DB_SSLROOTCERT": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"CIVIC_DB_HOST": "db1,/run/postgresql"}, "mix Unix sockets and TCP"),
        ({"CIVIC_DB_PORT": "fivefour"}, "whole number"),
        ({"CIVIC_LOG_LEVEL": "chatty"}, "log_level"),
    ],
    ids=["sslmode-require", "sslmode-disable", "no-ca", "mixed-hosts", "bad-port", "bad-level"],
)
def test_tcp_needs_verified_tls_and_bad_values_fail(tmp_path: Path, conf: Path, extra: dict, message: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = _env(tmp_path, CIVIC_DB_HOST="db1.data.lab,db2.data.lab", CIVIC_DB_SSLROOTCERT=str(ca))
    env.update(extra)
    with pytest.raises(config.ConfigError, match=message):
        config.load_config(env)


def test_tcp_with_verify_full_gives_libpq_tls_and_primary_selection(tmp_path: Path, conf: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = config.load_config(_env(tmp_path, CIVIC_DB_HOST="db1,db2", CIVIC_DB_SSLROOTCERT=str(ca)))
    params = cfg.database.libpq_params("civic-services", statement_timeout=True)
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == str(ca)
    assert params["host"] == "db1,db2"
    assert params["target_session_attrs"] == "read-write"
    assert "statement_timeout=10000" in params["options"]
    assert "statement_timeout" not in cfg.database.libpq_params("cli", statement_timeout=False)["options"]


def test_password_only_from_a_private_file_and_never_described(tmp_path: Path, conf: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-canary\nignored second line\n")
    secret.chmod(0o640)
    cfg = config.load_config(_env(tmp_path, CIVIC_DB_PASSWORD_FILE=str(secret)))
    params = cfg.database.libpq_params("t", statement_timeout=False)
    assert params["password"] == "hunter2-canary"  # noqa: S105 - the canary the test planted
    assert "hunter2" not in cfg.describe()
    assert "hunter2" not in repr(cfg)
    secret.chmod(0o644)
    with pytest.raises(config.ConfigError, match="readable by every user"):
        config.load_config(_env(tmp_path, CIVIC_DB_PASSWORD_FILE=str(secret)))


def test_every_setting_is_documented() -> None:
    doc = (PROJECT / "docs" / "app.md").read_text()
    missing = [s.env for s in config.SETTINGS if s.env not in doc or f"`{s.key}`" not in doc]
    assert not missing, f"docs/app.md does not describe {missing}"


# -- documents ----------------------------------------------------------------------------------------------


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data.startswith(docgen.PNG_MAGIC)
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_plan_png_is_valid_deterministic_and_about_the_requested_size() -> None:
    png = docgen.plan_png("1:MP002-BP-0000001", 48 * 1024)
    width, height, raw = _png_pixels(png)
    assert len(raw) == height * (width + 1)
    assert all(raw[row * (width + 1)] == 0 for row in range(height))  # filter byte of every row
    assert abs(len(png) - 48 * 1024) < 2048
    assert png == docgen.plan_png("1:MP002-BP-0000001", 48 * 1024)
    assert png != docgen.plan_png("2:MP002-BP-0000001", 48 * 1024)


def test_certificate_pdf_is_valid_and_deterministic() -> None:
    pdf = docgen.certificate_pdf("Birth certificate (test)", ["Name: A \\ B", "x"], "footer")
    assert pdf.startswith(b"%PDF-1.4") and pdf.endswith(b"%%EOF\n")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    assert pdf[startxref:].startswith(b"xref\n")
    offsets = [int(line[:10]) for line in pdf[startxref:].split(b"\n")[3:8]]
    for number, offset in enumerate(offsets, start=1):
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())
    assert b"(Birth certificate \\(test\\)) Tj" in pdf
    assert pdf == docgen.certificate_pdf("Birth certificate (test)", ["Name: A \\ B", "x"], "footer")


@pytest.mark.parametrize(
    ("head", "expected"),
    [(b"%PDF-1.7\n", "application/pdf"), (docgen.PNG_MAGIC, "image/png"), (b"\xff\xd8\xff\xe0", "image/jpeg"),
     (b"<html>", None), (b"MZ\x90\x00", None), (b"", None)],
    ids=["pdf", "png", "jpeg", "html", "exe", "empty"],
)  # fmt: skip
def test_upload_type_comes_from_magic_bytes(head: bytes, expected: str | None) -> None:
    assert docgen.sniff_content_type(head) == expected


# -- document store -----------------------------------------------------------------------------------------


def test_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = store_mod.DocumentStore(tmp_path)
    sha, size = store.put_bytes(b"hello civic")
    assert sha == hashlib.sha256(b"hello civic").hexdigest() and size == 11
    path = tmp_path / "sha256" / sha[:2] / sha
    assert path.read_bytes() == b"hello civic"
    assert store.put_bytes(b"hello civic") == (sha, 11)
    assert list(store.iter_blobs()) == [(sha, 11)]
    assert store.check_blob(sha, 11) is None
    assert store.check_blob(sha, 12) == "size 11 bytes, expected 12"
    path.chmod(0o644)
    path.write_bytes(b"hello CIVIC")
    assert store.check_blob(sha, 11).startswith("content changed")
    path.unlink()
    assert store.check_blob(sha, 11) == "missing from the store"


def test_store_stream_enforces_the_size_limit_and_leaves_no_temp_files(tmp_path: Path) -> None:
    import io

    store = store_mod.DocumentStore(tmp_path)
    _sha, size, head = store.put_stream(io.BytesIO(b"%PDF-" + b"x" * 100), 1000)
    assert size == 105 and head == b"%PDF-xxxxxxxxxxx"
    with pytest.raises(store_mod.TooLarge):
        store.put_stream(io.BytesIO(b"y" * 2000), 1000)
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(ValueError, match="not a sha256"):
        store.path_for("../../etc/passwd")


def test_store_probe_needs_an_existing_directory(tmp_path: Path) -> None:
    store_mod.DocumentStore(tmp_path).probe()
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(store_mod.StoreError, match="does not exist"):
        store_mod.DocumentStore(tmp_path / "not-mounted").probe()
    assert not (tmp_path / "not-mounted").exists(), "the probe must not create a missing store"
    (tmp_path / "file").write_text("")
    with pytest.raises(store_mod.StoreError):
        store_mod.DocumentStore(tmp_path / "file").probe()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_store_probe_fails_on_a_read_only_directory(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp").chmod(0o555)
    try:
        with pytest.raises(store_mod.StoreError, match="probe write failed"):
            store_mod.DocumentStore(tmp_path).probe()
    finally:
        (tmp_path / "tmp").chmod(0o755)


# -- manifest comparison ------------------------------------------------------------------------------------

TABLES = {"payments": {"rows": 10, "hash": "a"}, "ulbs": {"rows": 413, "hash": "b"}}


@pytest.mark.parametrize(
    ("actual", "expected_problems"),
    [
        (TABLES, []),
        ({**TABLES, "payments": {"rows": 9, "hash": "c"}}, ["table payments: 9 rows, manifest says 10 (1 missing)"]),
        ({**TABLES, "payments": {"rows": 12, "hash": "c"}}, ["table payments: 12 rows, manifest says 10 (2 extra)"]),
        ({**TABLES, "payments": {"rows": 10, "hash": "c"}},
         ["table payments: same row count (10) but row contents differ"]),
        ({"ulbs": TABLES["ulbs"]}, ["table payments: in the manifest, missing from the database"]),
    ],
    ids=["same", "deleted", "added", "changed", "table-gone"],
)  # fmt: skip
def test_diff_tables(actual: dict, expected_problems: list[str]) -> None:
    assert manifest.diff_tables(TABLES, actual) == expected_problems


def test_diff_documents_names_each_problem() -> None:
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    expected = {a: 1, b: 2, c: 3}
    in_db = {a: 1, b: 2, d: 4}
    broken = {b: "content changed (sha256 now eee)", d: "missing from the store"}
    problems, checked = manifest.diff_documents(expected, in_db, lambda sha, _size: broken.get(sha), jobs=2)
    assert problems == [
        f"document {c}: in the manifest, but no documents row references it any more",
        f"document {d}: referenced by the database, not in the manifest",
        f"document {b} (2 bytes): content changed (sha256 now eee)",
        f"document {d} (4 bytes): missing from the store",
    ]
    assert checked == 10


def test_manifest_file_is_checked_against_its_own_digest(tmp_path: Path) -> None:
    files = {"a" * 64: 5}
    data = {"format": manifest.FORMAT, "schema_versions": [1, 2], "tables": TABLES,
            "documents": {"count": 1, "bytes": 5, "digest": manifest.files_digest(files), "files": files}}  # fmt: skip
    path = tmp_path / "m.json"
    manifest.write_manifest(data, path)
    assert manifest.read_manifest(path)["tables"] == TABLES
    path.write_text(path.read_text().replace('": 5', '": 6'))
    with pytest.raises(manifest.ManifestError, match="does not match its digest"):
        manifest.read_manifest(path)
    path.write_text("{}")
    with pytest.raises(manifest.ManifestError, match="not a civic-services-manifest"):
        manifest.read_manifest(path)


# -- seed plan and generation (no database) -----------------------------------------------------------------


def test_size_plans() -> None:
    assert seed.planned_properties(seed.SIZES["large"], 1) >= 1_000_000
    assert 5_000 <= seed.planned_properties(seed.SIZES["small"], 1) <= 20_000
    assert seed.planned_properties(seed.SIZES["tiny"], 1) < 1_500


def _generate(size: str, seed_value: int, ulb_count: int = 30) -> tuple[str, list[str]]:
    out: dict[str, list[str]] = {t: [] for t in seed.TABLES}
    docs: list[str] = []

    def sink(data: bytes) -> tuple[str, int]:
        docs.append(hashlib.sha256(data).hexdigest())
        return docs[-1], len(data)

    ids = seed.Ids()
    for ulb in ulbs.ULBS[:ulb_count]:
        seed.generate_ulb(ulb, seed.SIZES[size], seed_value, ids, out, sink)
    text = "".join(line for t in seed.TABLES for line in out[t])
    return hashlib.sha256(text.encode()).hexdigest(), docs


def test_generation_is_deterministic_per_seed() -> None:
    first, docs1 = _generate("tiny", 42)
    again, docs2 = _generate("tiny", 42)
    other, _docs = _generate("tiny", 43)
    assert first == again and docs1 == docs2
    assert first != other


def test_generated_copy_lines_are_well_formed() -> None:
    out: dict[str, list[str]] = {t: [] for t in seed.TABLES}
    seed.generate_ulb(ulbs.ULBS[1], seed.SIZES["tiny"], 1, seed.Ids(), out, lambda d: ("0" * 64, len(d)))
    for table, lines in out.items():
        for line in lines:
            assert line.endswith("\n") and "\\" not in line.replace("\\N", "")
            assert line.count("\t") == len(seed.COLUMNS[table]) - 1, (table, line)
    services = {line.split("\t")[3] for line in out["payments"]}
    assert {"property_tax", "water_tax"} <= services


# -- migrations and release bookkeeping ---------------------------------------------------------------------


def test_migration_files_are_numbered_without_gaps() -> None:
    names = sorted(p.name for p in (PROJECT / "app/civic_services/migrations").glob("*.sql"))
    assert names[0].startswith("001_")
    assert [int(n[:3]) for n in names] == list(range(1, len(names) + 1))
    assert all(re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", n) for n in names)


def test_source_tree_has_no_release_file_and_reports_dev() -> None:
    assert release.read_release() is None
    assert release.version_info()["build_id"] == "dev"
