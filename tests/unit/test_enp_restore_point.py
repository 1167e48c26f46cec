"""Restore point selection: document store features and scoring, pg_waldump parsing and scoring, the decision.

The document tests build a real content-addressed store of small valid PDF, PNG and JPEG files and tamper with
it the ways ransomware does (one encrypted blob, a ransom note, a mass rename). The WAL tests read real
PostgreSQL 15 pg_waldump output (tests/unit/data/waldump_pg15.txt, described in its header), so a parser that
only works on hand-written lines fails here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import enp_restore_point as rp

DATA = Path(__file__).resolve().parent / "data"
WALDUMP = DATA / "waldump_pg15.txt"

# A 16x16 baseline JFIF (CPython's test/imghdrdata/python.jpg), 543 bytes.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEAAQABAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkICQkKDA8MCgsOCwkJDRENDg8Q"
    "EBEQCgwSExIQEw8QEBD/2wBDAQMDAwQDBAgEBAgQCwkLEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ"
    "EBAQEBAQEBD/wAARCAAQABADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAABwQF/8QAJBAAAQQBBAICAwAAAAAAAAAAAQID"
    "BAYFBwgSExEiABQJMTL/xAAVAQEBAAAAAAAAAAAAAAAAAAAABv/EACMRAAECBQMFAAAAAAAAAAAAAAECEQMEBQYhABIxFRZhgeH/"
    "2gAMAwEAAhEDEQA/ABSm0mobc8HmExLUlRzzEWPkJWW+ulrsaUVAseUgslSlH9LKuPryIKuWPZdskzXmm3fX5m2nF4GlVxx/HOpx"
    "4ks51+MiU/Iaad7UcUo4tILoS4kqcWkezS0hO/HvuRp0rO6hWnWO1UisZVuFi4GFeyEpmGepa5S5SWVPuciFKRFLgSrwetnyPIB+"
    "Vb4N9mKhQMzo5po9XLdDs9d6ZVix2VEhiL9kuNPxw2gEKcDQ/rs8AuA8VAe0vdl7VOYn+27flGAUgmITjbhSmCg3BYlyeWDkMolv"
    "w4KOp1KM6iCNvngZHwetf//Z"
)


def make_pdf(text: str) -> bytes:
    """A minimal valid one-page PDF with a cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_png(width: int, height: int, seed: int) -> bytes:
    """A valid RGB PNG of noisy pixels: compressed image data has high entropy, yet it is a PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = hashlib.shake_256(f"png-{seed}".encode()).digest(width * height * 3)
    rows = b"".join(b"\x00" + pixels[y * width * 3 : (y + 1) * width * 3] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def random_bytes(n: int, seed: str) -> bytes:
    """Deterministic bytes that look like ciphertext (entropy close to 8)."""
    return hashlib.shake_256(seed.encode()).digest(n)


def blob_rel(content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    return f"sha256/{digest[:2]}/{digest}"


def put(root: Path, rel: str, content: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


UPLOADS: list[bytes] = [
    make_pdf("Property tax receipt ward 7 no 0001"),
    make_pdf("Birth certificate application 2026-0042"),
    make_pdf("Trade licence renewal Mahatma Gandhi Road shop 12"),
    make_png(40, 30, 1),
    make_png(24, 24, 2),
    JPEG,
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for content in UPLOADS:
        put(root, blob_rel(content), content)
    # A partial upload in tmp/ is never scored, whatever it holds.
    put(root, "tmp/upload-7f3a.part", random_bytes(3000, "partial"))
    return root


def signs_by_kind(score: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {sign["kind"]: sign for sign in score["signs"]}


# --------------------------------------------------------------------------------------------------------------
# Features


@pytest.mark.parametrize(
    ("head", "magic"),
    [
        (make_pdf("x"), "pdf"),
        (make_png(2, 2, 0), "png"),
        (JPEG, "jpeg"),
        (zlib.compressobj(wbits=31).compress(b"x") + b"\x00" * 8, "gzip"),
        (b"PK\x03\x04" + b"\x00" * 26, "zip"),
        (b"YOUR FILES HAVE BEEN ENCRYPTED\nSend 0.5 BTC\n", "text"),
        ("नगर पालिका रसीद\n".encode(), "text"),
        ("नगर".encode()[:-1], "text"),  # a multi-byte character cut by the 64 KiB head is still text
        (random_bytes(4096, "cipher"), "unknown"),
        (b"\x00\x01\x02\x03" * 100, "unknown"),
        (b"", "unknown"),
    ],
)
def test_sniff_magic(head: bytes, magic: str) -> None:
    assert rp.sniff_magic(head) == magic


@pytest.mark.parametrize(
    ("data", "low", "high"),
    [(b"", 0.0, 0.0), (b"a" * 1000, 0.0, 0.0), (bytes(range(256)) * 4, 8.0, 8.0), (b"ab" * 50, 1.0, 1.0)],
)
def test_shannon_entropy(data: bytes, low: float, high: float) -> None:
    assert low - 1e-9 <= rp.shannon_entropy(data) <= high + 1e-9


def test_file_features_hash_whole_content_and_text_head(tmp_path: Path) -> None:
    big = make_pdf("big") + random_bytes(200_000, "tail")  # longer than the 64 KiB head
    path = put(tmp_path, "big.pdf", big)
    features = rp.file_features(str(path), "big.pdf")
    assert features["sha256"] == hashlib.sha256(big).hexdigest()
    assert features["size"] == len(big)
    assert features["magic"] == "pdf"
    assert "text_head" not in features
    assert isinstance(features["mtime"], float) and isinstance(features["ctime"], float)
    note = put(tmp_path, "README.txt", b"pay us " * 2000)
    assert len(rp.file_features(str(note), "README.txt")["text_head"]) == 4096


def test_snapshot_features_skips_tmp_and_reuses_unchanged(store: Path) -> None:
    first = rp.snapshot_features(str(store), None)
    assert sorted(first) == sorted(blob_rel(c) for c in UPLOADS)
    assert {f["magic"] for f in first.values()} == {"pdf", "png", "jpeg"}
    # An unchanged file keeps the previous entry (here marked), so it was not read again ...
    marked = copy.deepcopy(first)
    reused = blob_rel(UPLOADS[0])
    marked[reused]["sha256"] = "kept-from-previous"
    second = rp.snapshot_features(str(store), marked)
    assert second[reused]["sha256"] == "kept-from-previous"
    # ... but a file rewritten in place is, even if the attacker restores its mtime.
    path = store / reused
    stat = path.stat()
    path.write_bytes(random_bytes(stat.st_size, "enc"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = rp.snapshot_features(str(store), marked)
    assert third[reused]["sha256"] == hashlib.sha256(random_bytes(stat.st_size, "enc")).hexdigest()


def test_snapshot_features_reuses_entries_whose_times_are_the_sources(store: Path) -> None:
    """The backup server records the app server's mtime/ctime as evidence; reuse must still hit (no full rehash)."""
    first = rp.snapshot_features(str(store), None)
    marked = copy.deepcopy(first)
    for entry in marked.values():
        entry["mtime"], entry["ctime"] = 1.0, 2.0  # the source's times, unlike this copy's
        entry["sha256"] = "kept-from-previous"
    second = rp.snapshot_features(str(store), marked)
    assert {entry["sha256"] for entry in second.values()} == {"kept-from-previous"}
    # A file rewritten in place is still read again.
    victim = store / blob_rel(UPLOADS[2])
    victim.write_bytes(random_bytes(victim.stat().st_size, "enc"))
    third = rp.snapshot_features(str(store), marked)
    assert third[blob_rel(UPLOADS[2])]["sha256"] != "kept-from-previous"


# --------------------------------------------------------------------------------------------------------------
# Document snapshot scoring on real stores


def test_clean_store_scores_clean(store: Path) -> None:
    first = rp.snapshot_features(str(store), None)
    score = rp.score_document_snapshot(first, None)
    assert score == {"signs": [], "malicious": False, "verdict": "clean", "earliest_change": None, "files": 6}
    # New uploads since the previous snapshot are normal too.
    put(store, blob_rel(make_pdf("new upload")), make_pdf("new upload"))
    second = rp.snapshot_features(str(store), first)
    assert rp.score_document_snapshot(second, first)["verdict"] == "clean"


def test_single_encrypted_blob_is_caught(store: Path) -> None:
    before = rp.snapshot_features(str(store), None)
    victim = blob_rel(UPLOADS[1])
    (store / victim).write_bytes(random_bytes(len(UPLOADS[1]) + 16, "aes"))
    after = rp.snapshot_features(str(store), before)
    score = rp.score_document_snapshot(after, before)
    signs = signs_by_kind(score)
    assert score["malicious"] is True and score["verdict"] == "malicious"
    assert signs["content_name_mismatch"]["count"] == 1
    assert signs["content_name_mismatch"]["examples"] == [victim]
    assert signs["content_name_mismatch"]["severity"] == "critical"
    assert "encrypted-looking" in signs["magic_mismatch"]["detail"]
    assert "type changed pdf -> unknown" in signs["magic_mismatch"]["detail"]
    assert signs["entropy_jump"]["count"] == 1
    assert signs["changed"]["count"] == 1
    assert score["earliest_change"] == after[victim]["ctime"]
    # Without a previous snapshot the content itself still gives it away.
    assert signs_by_kind(rp.score_document_snapshot(after, None))["content_name_mismatch"]["count"] == 1


def test_documents_restored_after_an_earlier_attack_are_not_taken_for_a_new_one(store: Path) -> None:
    """The archive after a restore differs from the infected one before it: the originals are back, not tampered."""
    clean = rp.snapshot_features(str(store), None)
    victim = blob_rel(UPLOADS[1])
    original = (store / victim).read_bytes()
    (store / victim).write_bytes(random_bytes(len(original) + 16, "aes"))
    infected = rp.snapshot_features(str(store), clean)
    assert rp.score_document_snapshot(infected, clean)["malicious"] is True
    (store / victim).write_bytes(original)  # the restore puts the verified original back
    repaired = rp.snapshot_features(str(store), infected)
    score = rp.score_document_snapshot(repaired, infected)
    assert score["malicious"] is False and score["verdict"] == "clean", score["signs"]


@pytest.mark.parametrize(
    ("rel", "content", "why"),
    [
        ("README_DECRYPT.txt", b"All your documents are locked. Contact us.", "named"),
        ("sha256/HOW_TO_RECOVER_FILES.html", b"<html><body>Contact us</body></html>", "named"),
        ("sha256/ab/notes", b"Your files have been encrypted. Buy bitcoin, open our .onion site", "mentions"),
    ],
)
def test_ransom_note_is_caught(store: Path, rel: str, content: bytes, why: str) -> None:
    before = rp.snapshot_features(str(store), None)
    put(store, rel, content)
    score = rp.score_document_snapshot(rp.snapshot_features(str(store), before), before)
    note = signs_by_kind(score)["ransom_note"]
    assert score["malicious"] is True
    assert note["examples"] == [rel] and why in note["detail"]


def test_mass_rename_with_encryption_is_caught(store: Path) -> None:
    before = rp.snapshot_features(str(store), None)
    for rel in list(before):
        path = store / rel
        data = path.read_bytes()
        path.unlink()
        (store / (rel + ".locked")).write_bytes(random_bytes(len(data), rel))
    score = rp.score_document_snapshot(rp.snapshot_features(str(store), before), before)
    signs = signs_by_kind(score)
    assert score["malicious"] is True
    assert signs["mass_rename"]["count"] == 6 and signs["mass_rename"]["severity"] == "critical"
    assert signs["foreign_name"]["groups"] == {".locked": 6}
    assert signs["foreign_name"]["severity"] == "critical"  # encrypted-looking content
    assert signs["deleted"]["count"] == 6
    assert len(signs["mass_rename"]["examples"]) == 5


@pytest.mark.parametrize(
    "new_name",
    [
        "{rel}.id-7Q2.[help@example.onion].crypt",  # the hash stays in the name
        "sha256/zz/invoice.pdf",  # the content stays: its hash is the vanished name
    ],
)
def test_rename_alone_is_still_caught(store: Path, new_name: str) -> None:
    before = rp.snapshot_features(str(store), None)
    rel = blob_rel(UPLOADS[0])
    (store / "sha256/zz").mkdir()
    (store / rel).rename(store / new_name.format(rel=rel))
    score = rp.score_document_snapshot(rp.snapshot_features(str(store), before), before)
    assert score["malicious"] is True
    assert signs_by_kind(score)["mass_rename"]["count"] == 1


def test_foreign_plain_file_and_deletion_are_suspicious_not_malicious(store: Path) -> None:
    before = rp.snapshot_features(str(store), None)
    (store / blob_rel(UPLOADS[2])).unlink()
    churn = rp.score_document_snapshot(rp.snapshot_features(str(store), before), before)
    assert churn["verdict"] == "suspicious" and churn["malicious"] is False
    assert [(s["kind"], s["severity"], s["count"]) for s in churn["signs"]] == [("churn", "medium", 1)]
    put(store, "exports/2026-12.pdf", make_pdf("export"))
    foreign = rp.score_document_snapshot(rp.snapshot_features(str(store), before), before)
    assert foreign["malicious"] is False
    assert signs_by_kind(foreign)["foreign_name"]["severity"] == "high"
    assert signs_by_kind(foreign)["deleted"]["count"] == 1


def feat(sha: str, magic: str = "pdf", entropy: float = 5.0, ctime: float = 100.0, size: int = 1000) -> dict:
    return {"size": size, "mtime": ctime, "ctime": ctime, "sha256": sha, "magic": magic, "entropy": entropy}


H1 = "a" * 64
H2 = "b" * 64


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        # same path, content kept: nothing, whatever the entropy
        ({f"sha256/aa/{H1}": feat(H1)}, {f"sha256/aa/{H1}": feat(H1)}, set()),
        # a blob's content that does not hash to its name
        (None, {f"sha256/aa/{H1}": feat(H2)}, {"content_name_mismatch"}),
        # entropy rose by 1.5 bits/byte under a foreign name (no hash to check)
        ({"sha256/aa/doc": feat(H1, entropy=5.0)}, {"sha256/aa/doc": feat(H2, entropy=6.5)}, {"entropy_jump"}),
        # ... by 0.5 only: no jump
        ({"sha256/aa/doc": feat(H1, entropy=5.0)}, {"sha256/aa/doc": feat(H2, entropy=5.5)}, set()),
        # type changed between snapshots
        ({"sha256/aa/doc": feat(H1)}, {"sha256/aa/doc": feat(H2, magic="zip")}, {"magic_mismatch"}),
        # encrypted-looking content in the store
        (None, {f"sha256/aa/{H1}": feat(H1, magic="unknown", entropy=7.9)}, {"magic_mismatch"}),
        # unknown but low entropy is still not a type the app stores
        (None, {f"sha256/aa/{H1}": feat(H1, magic="unknown", entropy=3.0)}, {"magic_mismatch"}),
    ],
)
def test_sign_table(previous: dict | None, current: dict, expected: set[str]) -> None:
    kinds = {s["kind"] for s in rp.score_document_snapshot(current, previous)["signs"]}
    assert expected <= kinds
    assert not ({"content_name_mismatch", "entropy_jump", "magic_mismatch"} - expected) & kinds


# --------------------------------------------------------------------------------------------------------------
# pg_waldump


@pytest.fixture(scope="module")
def waldump() -> list[dict[str, Any]]:
    with WALDUMP.open(encoding="utf-8") as handle:
        return rp.parse_waldump(handle)


def nonzero(ops: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in ops.items() if v}


# Verified against the workload that produced the fixture (its header) and by grep on the file.
EXPECTED_TXNS: list[tuple[int, bool, dict[str, int], dict[str, dict[str, int]]]] = [
    (727, False, {"INSERT": 1}, {"1663/16384/16386": {"INSERT": 1}}),
    (728, False, {"INSERT": 2}, {"1663/16384/16386": {"INSERT": 2}}),
    (729, False, {"MULTI_INSERT": 10}, {"1663/16384/16386": {"MULTI_INSERT": 10}}),
    (730, False, {"INSERT": 2}, {"1663/16384/16396": {"INSERT": 2}}),
    (731, True, {"INSERT": 1}, {"1663/16384/16386": {"INSERT": 1}}),
    (732, False, {"HOT_UPDATE": 1}, {"1663/16384/16386": {"HOT_UPDATE": 1}}),
    (733, False, {"DELETE": 9}, {"1663/16384/16386": {"DELETE": 9}}),
    (734, False, {"INSERT": 6, "MULTI_INSERT": 24, "HOT_UPDATE": 1, "CREATE": 3}, {}),
    (735, False, {"INSERT": 1}, {"1663/16384/16404": {"INSERT": 1}}),
    (736, False, {"UPDATE": 4, "CREATE": 4, "DROP": 4}, {"1663/16384/16396": {"DROP": 1}}),
    (737, False, {"DELETE": 30, "DROP": 3}, {"1663/16384/16404": {"DROP": 1}}),
    (738, False, {"UPDATE": 1}, {"1663/16384/16386": {"UPDATE": 1}}),
    (739, False, {"INSERT": 1, "DELETE": 1}, {"1663/16384/16386": {"INSERT": 1, "DELETE": 1}}),
    (741, True, {"HOT_UPDATE": 1}, {"1663/16384/16386": {"HOT_UPDATE": 1}}),
    (742, False, {"INSERT": 30}, {"1663/16384/16386": {"INSERT": 30}}),
    (743, False, {"UPDATE": 4, "TRUNCATE": 1, "CREATE": 4, "DROP": 4}, {"relid/16386": {"TRUNCATE": 1}}),
]


def test_waldump_transactions(waldump: list[dict[str, Any]]) -> None:
    assert [t["xid"] for t in waldump] == [row[0] for row in EXPECTED_TXNS]
    for txn, (xid, aborted, ops, relations) in zip(waldump, EXPECTED_TXNS, strict=True):
        assert txn["aborted"] is aborted, xid
        assert (txn["commit_time"] is None) is aborted, xid
        assert nonzero(txn["ops"]) == ops, xid
        for key, rel_ops in relations.items():
            assert txn["relations"][key] == rel_ops, (xid, key)
    by_xid = {t["xid"]: t for t in waldump}
    assert by_xid[727]["commit_time"] == "2026-12-06T07:33:00.649632+00:00"
    assert (by_xid[727]["first_lsn"], by_xid[727]["last_lsn"]) == ("0/02001F90", "0/020020A0")
    assert by_xid[739]["subxacts"] == [740] and 740 not in by_xid  # the released savepoint's DELETE is 739's
    assert set(by_xid[734]["relations"]) >= {"1663/16384/16404", "1663/16384/16407", "1663/16384/16408"}


def test_waldump_tolerates_noise_and_needs_a_known_zone() -> None:
    commit = (
        "rmgr: Transaction len (rec/tot):     34/    34, tx:        900, lsn: 0/04001EF8, prev 0/04001D68, "
        "desc: COMMIT 2026-12-06 13:03:19.552039 {zone}"
    )
    lines = [
        "pg_waldump: error: error in WAL record at 0/4010ED8: invalid record length at 0/4010F10",
        "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/04000028, prev 0/03002070, "
        "desc: CHECKPOINT_ONLINE redo 0/4000028",
        "rmgr: Heap        len (rec/tot):     54/    54, tx:          0, lsn: 0/04000100, prev 0/04000028, "
        "desc: DELETE off 3 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/16384/16386 blk 0",
        "rmgr: Heap        len (rec/tot):     54/    54, tx:        900, lsn: 0/04000200, prev 0/04000100, "
        "desc: LOCK off 3: xid 900: flags 0x00 LOCK_ONLY EXCL_LOCK , blkref #0: rel 1663/16384/16386 blk 0",
        "rmgr: Heap2       len (rec/tot):    470/   470, tx:        900, lsn: 0/04000300, prev 0/04000200, "
        "desc: MULTI_INSERT+INIT ntuples: 61, flags 0x02, blkref #0: rel 1663/16384/16385 blk 3",
        "rmgr: Frobnicate  len (rec/tot):     10/    10, tx:        900, lsn: 0/04000400, prev 0/04000300, desc: ??",
    ]
    with pytest.raises(ValueError, match="TZ=UTC"):
        rp.parse_waldump([*lines, commit.format(zone="IST")])
    (txn,) = rp.parse_waldump([*lines, commit.format(zone="IST")], tz_offsets={"IST": "+05:30"})
    assert txn["commit_time"] == "2026-12-06T07:33:19.552039+00:00"
    assert nonzero(txn["ops"]) == {"MULTI_INSERT": 61}  # PG16's 'ntuples:' form too; tx 0 and LOCK ignored
    (utc,) = rp.parse_waldump([*lines, commit.replace("13:03:19", "07:33:19").format(zone="UTC")])
    assert utc["commit_time"] == txn["commit_time"]


NAMES = {"16386": "payments", "16396": "documents", "16404": "ransom_note"}


def test_score_transactions_on_real_wal(waldump: list[dict[str, Any]]) -> None:
    verdicts = rp.score_transactions(waldump, relation_names=NAMES)
    assert [v["xid"] for v in verdicts] == [727, 728, 729, 730, 732, 733, 734, 735, 736, 737, 738, 739, 742, 743]
    assert [v["commit_time"] for v in verdicts] == sorted(v["commit_time"] for v in verdicts)
    table = {v["xid"]: (v["malicious"], v["severity"]) for v in verdicts}
    assert table == {
        727: (False, None),
        728: (False, None),
        729: (False, None),
        730: (False, None),
        732: (True, "high"),  # HOT_UPDATE of one payment
        733: (True, "high"),  # DELETE of 9 payments
        734: (True, "high"),  # CREATE TABLE outside a migration window
        735: (False, None),  # INSERT into the new table
        736: (True, "critical"),  # TRUNCATE documents, wal_level=replica: new files, old ones dropped
        737: (True, "critical"),  # DROP TABLE
        738: (True, "high"),
        739: (True, "high"),  # DELETE in a released savepoint
        742: (False, None),
        743: (True, "critical"),  # TRUNCATE payments, wal_level=logical
    }
    by_xid = {v["xid"]: v for v in verdicts}
    assert by_xid[733]["reason"] == "deleted 9 row(s) of payments" and by_xid[733]["rows_changed"] == 9
    assert "documents" in by_xid[736]["reason"] and "TRUNCATE" in by_xid[736]["reason"]
    assert "emptied payments with TRUNCATE" in by_xid[743]["reasons"]
    assert "dropped" in by_xid[737]["reason"] and "ransom_note" in by_xid[737]["reason"]


def test_score_transactions_windows_thresholds_allowed(waldump: list[dict[str, Any]]) -> None:
    whole_run = [("2026-12-06T07:00:00Z", "2026-12-06T08:00:00Z")]
    assert not any(v["malicious"] for v in rp.score_transactions(waldump, allowed_windows=whole_run))
    relaxed = {v["xid"]: v for v in rp.score_transactions(waldump, insert_only=False, relation_names=NAMES)}
    assert relaxed[733]["malicious"] is False and relaxed[743]["severity"] == "critical"
    mass = {v["xid"]: v for v in rp.score_transactions(waldump, mass_threshold=5, relation_names=NAMES)}
    assert mass[733]["severity"] == "critical" and mass[732]["severity"] == "high"
    allowed = {
        v["xid"]: v for v in rp.score_transactions(waldump, allowed_relations=("payments",), relation_names=NAMES)
    }
    assert allowed[733]["malicious"] is False and allowed[736]["malicious"] is True


# --------------------------------------------------------------------------------------------------------------
# The decision


def ts(hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, 6, hour, minute, tzinfo=UTC).isoformat()


def epoch(hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, 6, hour, minute, tzinfo=UTC).timestamp()


BASES = [
    {
        "label": "20261205T000000F",
        "start": "2026-12-05T00:00:00+00:00",
        "stop": "2026-12-05T00:05:00+00:00",
        "verified": True,
        "detail": "ok",
    },
    {"label": "20261206T010000F", "start": ts(1), "stop": ts(1, 5), "verified": True, "detail": "ok"},
    {
        "label": "20261206T020000F",
        "start": ts(2),
        "stop": ts(2, 5),
        "verified": False,
        "detail": "pg_verifybackup: checksum mismatch for file base/16384/16386",
    },
]

CLEAN = {"signs": [], "malicious": False, "verdict": "clean", "earliest_change": None, "files": 10}
INFECTED = {
    "signs": [
        {
            "kind": "content_name_mismatch",
            "severity": "critical",
            "count": 1,
            "examples": ["sha256/aa/" + H1],
            "detail": "content no longer hashes to the file's name",
            "groups": {},
        }
    ],
    "malicious": True,
    "verdict": "malicious",
    "earliest_change": epoch(3, 10),
    "files": 10,
}


def snapshots() -> list[dict[str, Any]]:
    return [
        {
            "name": "docs-0200",
            "host": "app1",
            "time": ts(2),
            "repository_ok": True,
            "repository_detail": "",
            "score": CLEAN,
        },
        {
            "name": "docs-0300",
            "host": "app1",
            "time": ts(3),
            "repository_ok": True,
            "repository_detail": "",
            "score": CLEAN,
        },
        {
            "name": "docs-0400",
            "host": "app1",
            "time": ts(4),
            "repository_ok": True,
            "repository_detail": "",
            "score": INFECTED,
        },
        {
            "name": "docs-0500",
            "host": "app1",
            "time": ts(5),
            "repository_ok": True,
            "repository_detail": "",
            "score": INFECTED,
        },
    ]


def verdict(xid: int, when: str, malicious: bool, reason: str = "insert only") -> dict[str, Any]:
    return {
        "xid": xid,
        "commit_time": when,
        "malicious": malicious,
        "severity": "critical" if malicious else None,
        "reason": reason,
        "reasons": [reason] if malicious else [],
        "relations": {},
        "rows_changed": 0,
        "first_lsn": "0/1",
        "last_lsn": "0/2",
    }


TXNS = [
    verdict(800, ts(2, 30), False),
    verdict(801, ts(3, 20), True, "deleted 5000 row(s) of payments"),
    verdict(802, ts(3, 25), False),
    verdict(803, ts(3, 40), True, "emptied payments with TRUNCATE"),
]


def decide(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "incident_time": ts(5, 30),
        "base_backups": BASES,
        "transactions": TXNS,
        "document_snapshots": snapshots(),
        "baseline_findings": [],
        "db_hosts": ["db1"],
        "override": None,
    }
    args.update(changes)
    return rp.choose_restore_point(**args)


def test_malicious_transaction_sets_an_exclusive_xid_target_and_skips_the_corrupt_base() -> None:
    decision = decide()
    assert decision["ok"] is True and decision["error"] is None
    assert decision["database"]["target"] == {"type": "xid", "xid": 801, "inclusive": False, "time": ts(3, 20)}
    assert decision["database"]["base_backup"]["label"] == "20261206T010000F"
    (skipped,) = decision["database"]["skipped_base_backups"]
    assert skipped["reason"] == (
        "backup 20261206T020000F failed verification: pg_verifybackup: checksum mismatch for file "
        "base/16384/16386; skipped"
    )
    assert decision["database"]["lost_transactions"] == 1  # 802 committed after the target
    assert decision["earliest_malicious_change"] == ts(3, 10)  # the documents went first
    assert any("recovery_target_xid = 801" in line for line in decision["explanation"])
    assert any("failed verification" in line for line in decision["explanation"])
    assert [t["xid"] for t in decision["evidence"]["transactions"]] == [801, 803]


def test_infected_newest_document_snapshots_are_rejected() -> None:
    choice = decide()["documents"]["app1"]
    assert choice["snapshot"]["name"] == "docs-0300"
    assert choice["cutoff"] == ts(3, 10) and "app1" in choice["cutoff_source"]
    assert [r["name"] for r in choice["rejected"]] == ["docs-0500", "docs-0400"]
    assert all(
        any(reason.startswith("infected: content_name_mismatch") for reason in r["reasons"]) for r in choice["rejected"]
    )


def test_snapshot_after_the_earliest_change_or_with_a_broken_repository_is_rejected() -> None:
    snaps = snapshots()[:2]
    snaps[1]["repository_ok"] = False
    snaps[1]["repository_detail"] = "borg check: segment 17 CRC mismatch"
    early = [verdict(790, ts(1, 30), True, "dropped payments")]
    decision = decide(document_snapshots=snaps, transactions=early)
    choice = decision["documents"]["app1"]
    assert choice["snapshot"] is None and decision["ok"] is False and "app1" in decision["error"]
    reasons = {r["name"]: r["reasons"] for r in choice["rejected"]}
    assert any("borg check" in r for r in reasons["docs-0300"])
    assert any("after the earliest malicious change" in r for r in reasons["docs-0200"])


@pytest.mark.parametrize(
    ("changes", "target"),
    [
        (
            {
                "transactions": TXNS[:1],
                "baseline_findings": [
                    {
                        "host": "db1",
                        "severity": "critical",
                        "kind": "new-persistence",
                        "path": "/etc/cron.d/x",
                        "time": ts(3, 5),
                        "text": "new cron job",
                    },
                    {
                        "host": "web1",
                        "severity": "critical",
                        "kind": "new-persistence",
                        "path": "/x",
                        "time": ts(2, 45),
                        "text": "not a db host",
                    },
                    {
                        "host": "db1",
                        "severity": "medium",
                        "kind": "config-drift",
                        "path": "/y",
                        "time": ts(2, 50),
                        "text": "not serious",
                    },
                    {
                        "host": "db1",
                        "severity": "high",
                        "kind": "package-changed",
                        "path": "/z",
                        "time": None,
                        "text": "no time",
                    },
                ],
            },
            {"type": "time", "time": ts(3, 5), "inclusive": False},
        ),
        ({"transactions": TXNS[:1]}, {"type": "time", "time": ts(5, 30), "inclusive": False}),
        ({"transactions": TXNS[:1], "incident_time": None, "document_snapshots": []}, {"type": "latest"}),
    ],
)
def test_database_target_without_malicious_transactions(changes: dict[str, Any], target: dict[str, Any]) -> None:
    assert decide(**changes)["database"]["target"] == target


def test_no_usable_base_backup_is_an_error_saying_what_to_do() -> None:
    decision = decide(base_backups=BASES[2:])
    assert decision["ok"] is False and decision["database"]["base_backup"] is None
    assert "no verified base backup" in decision["error"] and "pg_verifybackup" in decision["error"]
    assert "failed verification" in decision["error"]


@pytest.mark.parametrize("override", [{"database": {"type": "latest"}}, {"reason": "  ", "by": "x"}])
def test_override_without_reason_is_refused(override: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="reason"):
        decide(override=override)


def test_override_is_recorded_next_to_the_automatic_choice() -> None:
    override = {
        "database": {"type": "time", "time": "2026-12-06T03:00:00Z"},
        "documents": {"app1": "docs-0200"},
        "reason": "call centre reports garbled receipts from 03:00",
        "by": "on-call DBA",
    }
    decision = decide(override=override)
    assert decision["database"]["target"] == {"type": "time", "time": ts(3), "inclusive": False}
    assert decision["documents"]["app1"]["snapshot"]["name"] == "docs-0200"
    assert decision["automatic"]["database"]["target"]["xid"] == 801
    assert decision["automatic"]["documents"] == {"app1": "docs-0300"}
    assert decision["override"]["by"] == "on-call DBA"
    assert any("OPERATOR OVERRIDE" in line for line in decision["explanation"])
    with pytest.raises(ValueError, match="not known"):
        decide(override={**override, "documents": {"app1": "docs-9999"}})
    with pytest.raises(ValueError, match="commit time"):
        decide(override={**override, "database": {"type": "xid", "xid": 12345}})
    by_xid = decide(override={**override, "database": {"type": "xid", "xid": 803}})
    assert by_xid["database"]["target"] == {"type": "xid", "xid": 803, "time": ts(3, 40), "inclusive": False}


def test_decision_is_json_round_trip_safe() -> None:
    decision = decide(
        baseline_findings=[{"host": "db1", "severity": "high", "kind": "k", "path": "/p", "time": ts(2), "text": "t"}]
    )
    assert json.loads(json.dumps(decision, allow_nan=False)) == decision
    assert set(decision) == {
        "format",
        "ok",
        "error",
        "incident_time",
        "earliest_malicious_change",
        "earliest_malicious_source",
        "database",
        "documents",
        "automatic",
        "override",
        "explanation",
        "evidence",
    }


def test_end_to_end_from_real_store(store: Path) -> None:
    clean_features = rp.snapshot_features(str(store), None)
    clean = rp.score_document_snapshot(clean_features, None)
    taken = max(f["ctime"] for f in clean_features.values())
    (store / blob_rel(UPLOADS[0])).write_bytes(random_bytes(900, "late"))
    infected = rp.score_document_snapshot(rp.snapshot_features(str(store), clean_features), clean_features)
    assert infected["earliest_change"] >= taken
    decision = rp.choose_restore_point(
        incident_time=None,
        base_backups=[{"label": "b", "start": ts(0), "stop": ts(0, 5), "verified": True, "detail": "ok"}],
        transactions=[],
        document_snapshots=[
            {
                "name": "s1",
                "host": "app1",
                "time": taken,
                "repository_ok": True,
                "repository_detail": "",
                "score": clean,
            },
            {
                "name": "s2",
                "host": "app1",
                "time": infected["earliest_change"] + 60,
                "repository_ok": True,
                "repository_detail": "",
                "score": infected,
            },
        ],
        baseline_findings=[],
        db_hosts=["db1"],
        override=None,
    )
    assert decision["database"]["target"] == {"type": "latest"}
    assert decision["documents"]["app1"]["snapshot"]["name"] == "s1"
    assert [r["name"] for r in decision["documents"]["app1"]["rejected"]] == ["s2"]
    assert json.loads(json.dumps(decision)) == decision


def test_real_wal_sets_the_target(waldump: list[dict[str, Any]]) -> None:
    decision = decide(transactions=rp.score_transactions(waldump, relation_names=NAMES), document_snapshots=[])
    assert decision["database"]["target"] == {
        "type": "xid",
        "xid": 732,
        "inclusive": False,
        "time": "2026-12-06T07:33:00.666691+00:00",
    }
    # The 02:00 base backup failed verification, so the 01:00 one is used.
    assert decision["database"]["base_backup"]["label"] == "20261206T010000F"
    assert decision["database"]["lost_transactions"] == 2  # 735 and 742 committed after 732


def test_drop_database_is_found_and_always_malicious() -> None:
    lines = [
        "rmgr: Heap        len (rec/tot):     59/    59, tx:        900, lsn: 0/0A000028, prev 0/0A000000, "
        "desc: INSERT+INIT off 1 flags 0x00, blkref #0: rel 1663/16388/16448 blk 0",
        "rmgr: Transaction len (rec/tot):     34/    34, tx:        900, lsn: 0/0A000068, prev 0/0A000028, "
        "desc: COMMIT 2026-12-06 07:40:00.000001 UTC",
        "rmgr: Database    len (rec/tot):     38/    38, tx:        901, lsn: 0/0A0000A0, prev 0/0A000068, "
        "desc: DROP dir 1663/16388",
        "rmgr: Transaction len (rec/tot):     66/    66, tx:        901, lsn: 0/0A0000C8, prev 0/0A0000A0, "
        "desc: COMMIT 2026-12-06 07:41:00.000001 UTC; inval msgs: catcache 21",
    ]
    txns = rp.parse_waldump(lines)
    assert [t["ops"]["DROP_DATABASE"] for t in txns] == [0, 1]
    verdicts = rp.score_transactions(txns)
    assert [v["malicious"] for v in verdicts] == [False, True]
    assert verdicts[1]["severity"] == "critical" and "DROP DATABASE" in verdicts[1]["reason"]
    # inside a migration window too: no deploy of this estate drops a database
    window = [("2026-12-06T07:30:00Z", "2026-12-06T07:50:00Z")]
    assert rp.score_transactions(txns, allowed_windows=window)[1]["malicious"]
