# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the restore point: the latest CLEAN database state and document snapshot before the attack.

Three kinds of evidence, each scored by small pure functions, then one decision:

* Document snapshots. The civic-services app keeps uploads in a content-addressed store
  (``sha256/<2 hex>/<64 hex sha256 of the content>``, partial uploads in ``tmp/``). The backup server keeps
  snapshots of a replica of it; :func:`snapshot_features` records size, times, sha256, magic and entropy of
  every file (re-reading only new or changed files) and :func:`score_document_snapshot` turns a snapshot and
  its predecessor into signs of tampering.
* Database WAL. :func:`parse_waldump` reads PostgreSQL 15 ``pg_waldump`` text into transactions and
  :func:`score_transactions` marks the ones the insert-only estate never does (UPDATE, DELETE, TRUNCATE,
  CREATE/DROP of relations outside a migration window).
* Host baselines: findings of enp_baseline_compare with a time, e.g. a new persistence unit on the db host.

:func:`choose_restore_point` turns all of it into the PostgreSQL recovery target, the base backup to start
from, the document snapshot per host, and plain sentences for the operator. Everything returned is
JSON-serialisable.

No Ansible imports and stdlib only: the module on the controller, the tests and the backup server's
python3 (Debian 12, 3.11) all load this file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

FORMAT = "enp-restore-point/1"

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium")

# --------------------------------------------------------------------------------------------------------------
# Document file features

STORE_DIR = "sha256"
TMP_DIR = "tmp"
STORE_NAME = re.compile(r"^sha256/([0-9a-f]{2})/([0-9a-f]{64})$")
STORE_MAGICS: frozenset[str] = frozenset({"pdf", "png", "jpeg"})
"""The app types every upload by its magic and accepts only these, so nothing else belongs under sha256/."""

HEAD_BYTES = 64 * 1024
"""Entropy and magic are measured on the first 64 KiB: enough to see encryption, cheap on a large store."""
TEXT_HEAD_BYTES = 4 * 1024
"""Text files keep their first 4 KiB (decoded) so the scorer can read ransom notes without rereading files."""
CHUNK = 1024 * 1024

ENCRYPTED_ENTROPY = 7.5
"""Bits per byte at or above which content of no known type looks encrypted (PDF/PNG/JPEG sit lower or are typed)."""
ENTROPY_JUMP = 1.0
MASS_RENAME_MIN = 2
TEXT_PRINTABLE = 0.95
RANSOM_NOTE_MAX = 256 * 1024
RANSOM_NAME = re.compile(r"^(readme|how_to|how-to|howto)|decrypt|recover|restore|ransom|\.(txt|html?|hta)$", re.I)
RANSOM_WORDS: tuple[str, ...] = (
    "bitcoin",
    "btc wallet",
    "monero",
    "decrypt",
    "ransom",
    ".onion",
    "tor browser",
    "your files have been encrypted",
    "files are encrypted",
)


def sniff_magic(head: bytes) -> str:
    """The type of content by its first bytes: pdf, png, jpeg, gzip, zip, text or unknown (also for empty)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    text = _decode_head(head)
    if text:
        printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f")
        if printable / len(text) >= TEXT_PRINTABLE:
            return "text"
    return "unknown"


def _decode_head(head: bytes) -> str | None:
    """UTF-8 text of a file's head, tolerating a multi-byte character cut at the end; None if not UTF-8."""
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return head[: exc.start].decode("utf-8")
        return None


def shannon_entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte, 0.0 (constant or empty) to 8.0 (uniformly random)."""
    if not data:
        return 0.0
    total = len(data)
    entropy = -sum(n / total * math.log2(n / total) for n in Counter(data).values())
    return max(0.0, min(8.0, entropy))


def file_features(path: str, rel: str) -> dict[str, Any]:
    """Size, mtime, ctime, sha256 of the whole content (streamed), magic and entropy of the first 64 KiB.

    ``text_head`` (first 4 KiB, decoded) is added only for files whose magic is ``text``. ``rel`` is the path
    inside the store, used only in error messages.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        head = handle.read(HEAD_BYTES)
        digest.update(head)
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{rel} is not a regular file")
    magic = sniff_magic(head)
    features: dict[str, Any] = {
        "size": info.st_size,
        "mtime": float(info.st_mtime),
        "ctime": float(info.st_ctime),
        "sha256": digest.hexdigest(),
        "magic": magic,
        # The reuse key of snapshot_features: this copy's own (size, mtime_ns, ctime_ns). mtime/ctime above may be
        # replaced by the source's times as evidence (a replica's ctime is when it was copied, not when it changed).
        "local": [info.st_size, info.st_mtime_ns, info.st_ctime_ns],
        "entropy": round(shannon_entropy(head), 4),
    }
    if magic == "text":
        features["text_head"] = head[:TEXT_HEAD_BYTES].decode("utf-8", errors="replace")
    return features


def _unchanged(before: Mapping[str, Any], info: os.stat_result) -> bool:
    """True when the file is the one ``before`` describes (its local stat key, else its size and times)."""
    local = before.get("local")
    if local is not None:
        return list(local) == [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    return (
        before.get("size") == info.st_size
        and before.get("mtime") == float(info.st_mtime)
        and before.get("ctime") == float(info.st_ctime)
    )


def snapshot_features(root: str, previous: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``{rel_path: features}`` of every regular file under root except ``tmp/``.

    A file whose local (size, mtime, ctime) equal the previous snapshot's entry keeps that entry, so only new or
    changed files are read (the entry's ``local`` key: its ``mtime``/``ctime`` may be a source's, see file_features).
    ctime cannot be set from user space, so a tool that restores mtime after encrypting still gets reread.
    Files that vanish during the walk are left out; other read errors raise
    (a scan that could not read the store must not look clean).
    """
    previous = previous or {}
    result: dict[str, dict[str, Any]] = {}
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        if not rel_dir:
            dirs[:] = [d for d in dirs if d != TMP_DIR]
        dirs.sort()
        for name in sorted(files):
            rel = rel_dir + name
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            before = previous.get(rel)
            if before is not None and _unchanged(before, info):
                result[rel] = dict(before)
                continue
            try:
                result[rel] = file_features(path, rel)
            except FileNotFoundError:
                continue
    return result


# --------------------------------------------------------------------------------------------------------------
# Document snapshot scoring

MALICIOUS_KINDS: frozenset[str] = frozenset({"content_name_mismatch", "ransom_note", "magic_mismatch", "mass_rename"})


def _ext(rel: str) -> str:
    base = rel.rsplit("/", 1)[-1]
    ext = os.path.splitext(base)[1].lower()
    return ext or "(none)"


def _encrypted_looking(features: Mapping[str, Any]) -> bool:
    return features.get("magic") == "unknown" and float(features.get("entropy", 0.0)) >= ENCRYPTED_ENTROPY


def _is_ransom_note(rel: str, features: Mapping[str, Any]) -> str | None:
    """Why a file looks like a ransom note, or None."""
    text = str(features.get("text_head") or "").lower()
    words = [w for w in RANSOM_WORDS if w in text]
    if words:
        return "mentions " + ", ".join(words)
    base = rel.rsplit("/", 1)[-1]
    if (
        RANSOM_NAME.search(base)
        and int(features.get("size", 0)) <= RANSOM_NOTE_MAX
        and features.get("magic") not in STORE_MAGICS
    ):
        return "named like a ransom note"
    return None


def _sign(
    kind: str, severity: str, paths: Iterable[str], detail: str, groups: Mapping[str, int] | None = None
) -> dict[str, Any]:
    paths = sorted(set(paths))
    return {
        "kind": kind,
        "severity": severity,
        "count": len(paths),
        "examples": paths[:5],
        "detail": detail,
        "groups": dict(sorted((groups or {}).items())),
    }


def score_document_snapshot(
    current: Mapping[str, Mapping[str, Any]], previous: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Signs of tampering in one snapshot of the document store (features from :func:`snapshot_features`).

    Returns ``{"signs": [{kind, severity, count, examples, detail, groups}], "malicious", "verdict"
    ("clean", "suspicious" or "malicious"), "earliest_change" (min ctime of flagged files, or None),
    "files"}``.
    """
    previous = previous or {}
    flagged: dict[str, set[str]] = {}

    def flag(kind: str, rel: str) -> None:
        flagged.setdefault(kind, set()).add(rel)

    ransom_reasons: dict[str, str] = {}
    magic_detail: Counter[str] = Counter()
    encrypted_foreign: set[str] = set()
    foreign: set[str] = set()
    for rel, features in current.items():
        match = STORE_NAME.match(rel)
        in_store = rel.startswith(STORE_DIR + "/")
        # A content-addressed store is its own integrity check: a blob's name IS the sha256 of its content, and
        # the app never rewrites a blob. So ONE file whose content does not hash to its name is tampering. This
        # is why we are right far below the thresholds commercial detectors need to avoid false alarms on
        # ordinary file servers (Veeam alerts at 200 renames, Druva at 100 encrypted files): an attacker who
        # encrypts a handful of documents, or one, is still caught.
        if match and features.get("sha256") != match.group(2):
            flag("content_name_mismatch", rel)
        why = _is_ransom_note(rel, features)
        if why:
            ransom_reasons[rel] = why
            flag("ransom_note", rel)
        elif not match:
            foreign.add(rel)
            flag("foreign_name", rel)
            if _encrypted_looking(features):
                encrypted_foreign.add(rel)
        if in_store and features.get("magic") not in STORE_MAGICS and not why:
            if _encrypted_looking(features):
                magic_detail["encrypted-looking (no known type, high entropy)"] += 1
            else:
                magic_detail[f"{features.get('magic')} where only pdf/png/jpeg are stored"] += 1
            flag("magic_mismatch", rel)
        before = previous.get(rel)
        if before is None:
            continue
        if match and features.get("sha256") == match.group(2) and before.get("sha256") != match.group(2):
            # The content hashes to its name again: the original upload is back (a restore after an earlier
            # attack). A repair is not tampering, however different it looks from the encrypted copy before it.
            continue
        if before.get("magic") != features.get("magic"):
            magic_detail[f"type changed {before.get('magic')} -> {features.get('magic')}"] += 1
            flag("magic_mismatch", rel)
        if float(features.get("entropy", 0.0)) - float(before.get("entropy", 0.0)) >= ENTROPY_JUMP:
            flag("entropy_jump", rel)
        if before.get("sha256") != features.get("sha256"):
            flag("changed", rel)

    deleted = {rel for rel in previous if rel not in current and STORE_NAME.match(rel)}
    new_foreign = {rel for rel in foreign if rel not in previous}
    # A rename shows as a vanished blob whose hash is in a new foreign name (<hash>.locked), or whose content
    # turns up under a new foreign name; without such a pair, equal numbers of vanished and new foreign names
    # (at least MASS_RENAME_MIN) are still a rename: one unrelated deletion plus one stray file is not.
    gone = {rel.rsplit("/", 1)[-1] for rel in deleted}
    renamed = {rel for rel in new_foreign if current[rel].get("sha256") in gone or any(h in rel for h in gone)}
    if deleted and new_foreign and (renamed or len(new_foreign) == len(deleted) >= MASS_RENAME_MIN):
        flagged["mass_rename"] = renamed or new_foreign

    signs: list[dict[str, Any]] = []
    if "content_name_mismatch" in flagged:
        signs.append(
            _sign(
                "content_name_mismatch",
                "critical",
                flagged["content_name_mismatch"],
                "content no longer hashes to the file's name: the document was rewritten (encrypted or altered) "
                "in a store whose blobs never change",
            )
        )
    if "ransom_note" in flagged:
        reasons = Counter(ransom_reasons.values())
        signs.append(
            _sign(
                "ransom_note",
                "critical",
                flagged["ransom_note"],
                "small text/html files that read or are named like a ransom note: "
                + "; ".join(f"{n} {why}" for why, n in sorted(reasons.items())),
            )
        )
    if "mass_rename" in flagged:
        signs.append(
            _sign(
                "mass_rename",
                "critical",
                flagged["mass_rename"],
                f"{len(deleted)} blob names disappeared and {len(new_foreign)} names outside the store layout "
                "appeared" + (f", {len(renamed)} of them carrying a vanished blob's hash" if renamed else ""),
            )
        )
    if "magic_mismatch" in flagged:
        signs.append(
            _sign(
                "magic_mismatch",
                "critical",
                flagged["magic_mismatch"],
                "content type not one the app stores: "
                + "; ".join(f"{n} {what}" for what, n in sorted(magic_detail.items())),
            )
        )
    if "foreign_name" in flagged:
        groups = Counter(_ext(rel) for rel in flagged["foreign_name"])
        signs.append(
            _sign(
                "foreign_name",
                "critical" if encrypted_foreign else "high",
                flagged["foreign_name"],
                "names outside the store layout sha256/<2 hex>/<64 hex>, by extension: "
                + ", ".join(f"{ext} {n}" for ext, n in sorted(groups.items()))
                + (f"; {len(encrypted_foreign)} with encrypted-looking content" if encrypted_foreign else ""),
                groups,
            )
        )
    if "entropy_jump" in flagged:
        signs.append(
            _sign(
                "entropy_jump",
                "high",
                flagged["entropy_jump"],
                f"entropy rose by {ENTROPY_JUMP:g} bit/byte or more since the previous snapshot "
                "(typical of encryption)",
            )
        )
    changed = flagged.get("changed", set())
    if signs:
        if changed:
            signs.append(_sign("changed", "high", changed, "blobs are immutable, yet these changed content"))
        if deleted:
            signs.append(_sign("deleted", "high", deleted, "blobs are never deleted by the app, yet these vanished"))
    elif changed or deleted:
        signs.append(
            _sign(
                "churn",
                "medium",
                changed | deleted,
                f"{len(changed)} blobs changed and {len(deleted)} were deleted in a store whose blobs never change, "
                "with no other sign of encryption; check the app server and the replica job",
                {"changed": len(changed), "deleted": len(deleted)},
            )
        )
        flagged["churn"] = changed

    malicious = any(s["kind"] in MALICIOUS_KINDS for s in signs) or bool(encrypted_foreign)
    # ctime, not mtime: a rename keeps the original upload's mtime and tools can reset mtime; ctime they cannot.
    # On the replica ctime is when the replica received the change, so it is never earlier than the attack.
    times = [
        float(current[rel]["ctime"])
        for rels in flagged.values()
        for rel in rels
        if rel in current and current[rel].get("ctime") is not None
    ]
    return {
        "signs": signs,
        "malicious": malicious,
        "verdict": "malicious" if malicious else ("suspicious" if signs else "clean"),
        "earliest_change": min(times) if times else None,
        "files": len(current),
    }


# --------------------------------------------------------------------------------------------------------------
# Database WAL: pg_waldump parsing and scoring

OPS: tuple[str, ...] = (
    "INSERT",
    "MULTI_INSERT",
    "UPDATE",
    "HOT_UPDATE",
    "DELETE",
    "TRUNCATE",
    "CREATE",
    "DROP",
    "DROP_DATABASE",
)
RECORD = re.compile(
    r"^rmgr:\s*(?P<rmgr>\S+).*?\btx:\s*(?P<xid>\d+),\s*lsn:\s*(?P<lsn>[0-9A-Fa-f]+/[0-9A-Fa-f]+).*?desc:\s*(?P<desc>.*)$"
)
BLOCKREF = re.compile(r"blkref #\d+: rel (\d+/\d+/\d+)")
XACT = re.compile(
    r"^(?P<what>COMMIT|ABORT)(?P<prepared>_PREPARED)?\s+(?:(?P<pxid>\d+):\s+)?"
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s+(?P<tz>[^;\s]+)(?P<rest>.*)$"
)
TZ_OFFSETS: dict[str, str] = {"UTC": "+00:00", "GMT": "+00:00", "UCT": "+00:00", "Z": "+00:00"}
"""pg_waldump prints commit times in its own local zone by abbreviation; run it with TZ=UTC (the roles do)."""


def relation_key(path: str) -> str:
    """``<spc>/<db>/<relfilenode>`` of a relation file path as pg_waldump prints it (base/..., global/...)."""
    parts = path.strip().split("/")
    last = parts[-1].split("_", 1)[0].split(".", 1)[0]
    if parts[0] == "base" and len(parts) == 3:
        return f"1663/{parts[1]}/{last}"
    if parts[0] == "global" and len(parts) == 2:
        return f"1664/0/{last}"
    if parts[0] == "pg_tblspc" and len(parts) == 5:
        return f"{parts[1]}/{parts[3]}/{last}"
    return path.strip()


def _lsn_value(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _commit_iso(ts: str, tz: str, tz_offsets: Mapping[str, str]) -> str:
    offset = tz if re.fullmatch(r"[+-]\d\d(:?\d\d)?", tz) else tz_offsets.get(tz.upper())
    if offset is None:
        raise ValueError(
            f"pg_waldump printed a commit time in zone {tz!r}, which is ambiguous; rerun pg_waldump with TZ=UTC "
            "(or pass tz_offsets)"
        )
    if len(offset) == 3:
        offset += ":00"
    return datetime.fromisoformat(f"{ts.replace(' ', 'T')}{offset}").astimezone(UTC).isoformat()


def _new_txn(xid: int) -> dict[str, Any]:
    return {
        "xid": xid,
        "commit_time": None,
        "aborted": False,
        "ops": dict.fromkeys(OPS, 0),
        "relations": {},
        "first_lsn": None,
        "last_lsn": None,
        "subxacts": [],
    }


def _count(txn: dict[str, Any], op: str, relation: str | None, n: int = 1) -> None:
    txn["ops"][op] += n
    if relation:
        ops = txn["relations"].setdefault(relation, {})
        ops[op] = ops.get(op, 0) + n


def _touch(txn: dict[str, Any], lsn: str) -> None:
    if txn["first_lsn"] is None or _lsn_value(lsn) < _lsn_value(txn["first_lsn"]):
        txn["first_lsn"] = lsn
    if txn["last_lsn"] is None or _lsn_value(lsn) > _lsn_value(txn["last_lsn"]):
        txn["last_lsn"] = lsn


def _fold(parent: dict[str, Any], child: dict[str, Any]) -> None:
    for op, n in child["ops"].items():
        parent["ops"][op] += n
    for rel, ops in child["relations"].items():
        mine = parent["relations"].setdefault(rel, {})
        for op, n in ops.items():
            mine[op] = mine.get(op, 0) + n
    for lsn in (child["first_lsn"], child["last_lsn"]):
        if lsn:
            _touch(parent, lsn)


def parse_waldump(lines: Iterable[str], *, tz_offsets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Transactions in PostgreSQL 15 ``pg_waldump`` text output, in order of their first record.

    Each is ``{xid, commit_time (ISO UTC, None if aborted or not finished in this WAL), aborted, ops {INSERT,
    MULTI_INSERT (tuples), UPDATE, HOT_UPDATE, DELETE, TRUNCATE, CREATE (new relation files), DROP (files
    listed in COMMIT rels:)}, relations {"<spc>/<db>/<relfilenode>": {op: n}}, first_lsn, last_lsn, subxacts}``.
    Records of committed subtransactions are folded into their top-level transaction. TRUNCATE records (only
    written with wal_level=logical) name relation OIDs, kept as ``relid/<oid>``; with wal_level=replica a
    TRUNCATE shows as CREATE of new files and DROP of the old ones. Lines that are not records, unknown
    resource managers and descriptions, and ``tx: 0`` records are ignored.
    """
    offsets = {**TZ_OFFSETS, **{k.upper(): v for k, v in (tz_offsets or {}).items()}}
    txns: dict[int, dict[str, Any]] = {}
    for line in lines:
        match = RECORD.match(line.strip())
        if not match:
            continue
        rmgr, desc, lsn = match["rmgr"], match["desc"].strip(), match["lsn"]
        xid = int(match["xid"])
        if rmgr == "Transaction":
            xact = XACT.match(desc)
            if xact and xact["pxid"]:
                xid = int(xact["pxid"])
        if xid == 0:
            continue
        word = desc.split(" ", 1)[0].split("+", 1)[0]
        blockref = BLOCKREF.search(desc)
        relation = blockref.group(1) if blockref else None
        txn = txns.get(xid)
        if rmgr == "Heap" and word in ("INSERT", "UPDATE", "HOT_UPDATE", "DELETE", "TRUNCATE"):
            txn = txn or txns.setdefault(xid, _new_txn(xid))
            if word == "TRUNCATE":
                relids = re.search(r"\brelids:?\s*([\d ]+)", desc)
                for relid in (relids.group(1).split() if relids else []) or [""]:
                    _count(txn, "TRUNCATE", f"relid/{relid}" if relid else None)
            else:
                _count(txn, word, relation)
        elif rmgr == "Heap2" and word == "MULTI_INSERT":
            txn = txn or txns.setdefault(xid, _new_txn(xid))
            tuples = re.search(r"MULTI_INSERT(?:\+INIT)?\s+(?:ntuples:\s*)?(\d+)", desc)
            _count(txn, "MULTI_INSERT", relation, int(tuples.group(1)) if tuples else 1)
        elif rmgr == "Storage" and word == "CREATE":
            txn = txn or txns.setdefault(xid, _new_txn(xid))
            _count(txn, "CREATE", relation_key(desc.split(" ", 1)[1]) if " " in desc else None)
        elif rmgr == "Database" and word == "DROP":
            # PG15 "desc: DROP dir 1663/16388": a whole database's directories (its COMMIT lists no rels).
            txn = txn or txns.setdefault(xid, _new_txn(xid))
            _count(txn, "DROP_DATABASE", None)
        elif rmgr == "Transaction" and word == "ASSIGNMENT":
            top = re.search(r"xtop (\d+):\s*subxacts:\s*([\d ]+)", desc)
            if top:
                parent = txns.setdefault(int(top.group(1)), _new_txn(int(top.group(1))))
                for sub in top.group(2).split():
                    child = txns.pop(int(sub), None)
                    if child and child is not parent:
                        _fold(parent, child)
            continue
        elif rmgr == "Transaction" and (xact := XACT.match(desc)):
            txn = txn or txns.setdefault(xid, _new_txn(xid))
            sections = dict(
                (part.split(":", 1)[0].strip(), part.split(":", 1)[1])
                for part in xact["rest"].split(";")
                if ":" in part
            )
            for sub in sections.get("subxacts", "").split():
                child = txns.pop(int(sub), None)
                txn["subxacts"].append(int(sub))
                if child and child is not txn:
                    _fold(txn, child)
            if xact["what"] == "ABORT":
                txn["aborted"] = True
            else:
                txn["commit_time"] = _commit_iso(xact["ts"], xact["tz"], offsets)
                for path in sections.get("rels", "").split():
                    _count(txn, "DROP", relation_key(path))
        else:
            continue
        _touch(txn, lsn)
    return sorted(txns.values(), key=lambda t: _lsn_value(t["first_lsn"]) if t["first_lsn"] else 0)


def parse_time(value: object) -> datetime:
    """An aware UTC datetime from ISO text (naive = UTC, trailing Z allowed), epoch seconds, or a datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str) and value.strip():
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1) if "T" not in value else value.strip())
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _relfilenode(key: str) -> int | None:
    tail = re.split(r"[/:]", key)[-1]
    return int(tail) if tail.isdigit() else None


def _rel_name(key: str, relation_names: Mapping[str, str] | None) -> str:
    if relation_names:
        if key in relation_names:
            return str(relation_names[key])
        tail = re.split(r"[/:]", key)[-1]
        if tail in relation_names:
            return str(relation_names[tail])
    return key


def _in_windows(moment: datetime, windows: Sequence[tuple[datetime, datetime]]) -> bool:
    return any(start <= moment <= end for start, end in windows)


def score_transactions(
    txns: Iterable[Mapping[str, Any]],
    *,
    user_relfilenode_min: int = 16384,
    insert_only: bool = True,
    allowed_relations: Iterable[str] = (),
    relation_names: Mapping[str, str] | None = None,
    mass_threshold: int = 1000,
    allowed_windows: Iterable[Sequence[Any]] = (),
) -> list[dict[str, Any]]:
    """A verdict for every committed transaction, ordered by commit time.

    The estate's data is insert-only: the civic-services app role may only INSERT into payments and documents,
    and migrations run only during deploys. So on user relations (relfilenode >= ``user_relfilenode_min``) an
    UPDATE, HOT_UPDATE, DELETE or TRUNCATE is malicious when ``insert_only``, and a relation file CREATE or
    DROP is malicious outside ``allowed_windows`` (``[(start, end)]``, the deploys' migration windows; inside
    them nothing is flagged, as migrations may rewrite and backfill). ``mass_threshold`` rows, or a whole
    relation emptied or dropped, makes it critical; otherwise high. With ``insert_only`` false only mass
    changes and CREATE/DROP count. ``allowed_relations`` (keys, relfilenodes or names) are never flagged.

    Each verdict is ``{xid, commit_time, malicious, severity (critical, high or None), reason, reasons,
    relations {name or key: {op: n}}, rows_changed, first_lsn, last_lsn}``.
    """
    windows = [(parse_time(w[0]), parse_time(w[1])) for w in allowed_windows]
    allowed = set(allowed_relations)
    verdicts: list[dict[str, Any]] = []
    for txn in txns:
        if txn.get("aborted") or not txn.get("commit_time"):
            continue
        committed = parse_time(txn["commit_time"])
        user: dict[str, dict[str, int]] = {}
        for key, ops in (txn.get("relations") or {}).items():
            node = _relfilenode(key)
            name = _rel_name(key, relation_names)
            if node is None or node < user_relfilenode_min:
                continue
            if key in allowed or name in allowed or str(node) in allowed:
                continue
            mine = user.setdefault(name, {})
            for op, n in ops.items():
                mine[op] = mine.get(op, 0) + int(n)
        reasons: list[str] = []
        severity: str | None = None
        rows = 0
        in_window = _in_windows(committed, windows)

        def raise_to(level: str) -> None:
            nonlocal severity
            if severity != "critical":
                severity = level

        if txn["ops"].get("DROP_DATABASE"):
            # Never part of a deploy of this estate, migration window or not.
            reasons.append("dropped a whole database (DROP DATABASE)")
            raise_to("critical")
        if not in_window:
            for name, ops in sorted(user.items()):
                changed = ops.get("UPDATE", 0) + ops.get("HOT_UPDATE", 0)
                deleted = ops.get("DELETE", 0)
                rows += changed + deleted
                mass = changed + deleted >= mass_threshold
                if (insert_only and changed) or (mass and changed):
                    reasons.append(f"updated {changed} row(s) of {name}")
                    raise_to("critical" if mass else "high")
                if (insert_only and deleted) or (mass and deleted):
                    reasons.append(f"deleted {deleted} row(s) of {name}")
                    raise_to("critical" if mass else "high")
                if ops.get("TRUNCATE"):
                    reasons.append(f"emptied {name} with TRUNCATE")
                    raise_to("critical")
            dropped = sorted(name for name, ops in user.items() if ops.get("DROP"))
            created = sorted(name for name, ops in user.items() if ops.get("CREATE") and not ops.get("DROP"))
            if dropped and created:
                reasons.append(
                    f"replaced the files of {', '.join(dropped)} with new ones ({', '.join(created)}): a TRUNCATE, "
                    "VACUUM FULL, CLUSTER or table rewrite, outside any migration window"
                )
                raise_to("critical")
            elif dropped:
                reasons.append(f"dropped {', '.join(dropped)} (DROP TABLE/INDEX) outside any migration window")
                raise_to("critical")
            elif created:
                reasons.append(f"created new relation(s) {', '.join(created)} outside any migration window")
                raise_to("high")
        verdicts.append(
            {
                "xid": txn["xid"],
                "commit_time": iso(committed),
                "malicious": bool(reasons),
                "severity": severity,
                "reason": "; ".join(reasons)
                if reasons
                else ("during a migration window" if in_window else "insert only"),
                "reasons": reasons,
                "relations": user,
                "rows_changed": rows,
                "first_lsn": txn.get("first_lsn"),
                "last_lsn": txn.get("last_lsn"),
            }
        )
    return sorted(verdicts, key=lambda v: (v["commit_time"], _lsn_value(v["last_lsn"]) if v["last_lsn"] else 0))


# --------------------------------------------------------------------------------------------------------------
# The decision

SERIOUS = ("critical", "high")


def _describe_signs(score: Mapping[str, Any]) -> str:
    return "; ".join(f"{s['kind']} x{s['count']} ({s['detail']})" for s in score.get("signs", []))


def _db_target(
    incident: datetime | None,
    transactions: Sequence[Mapping[str, Any]],
    baseline_findings: Sequence[Mapping[str, Any]],
    db_hosts: Sequence[str],
) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """(target, reason, first malicious transaction or None)."""
    bad = sorted((t for t in transactions if t.get("malicious")), key=lambda t: parse_time(t["commit_time"]))
    if bad:
        first = bad[0]
        target = {"type": "xid", "xid": first["xid"], "inclusive": False, "time": iso(parse_time(first["commit_time"]))}
        reason = (
            f"transaction {first['xid']} committed at {target['time']} {first.get('reason') or 'is malicious'}; "
            f"the database is restored to just before it ({len(bad)} malicious transaction(s) in the WAL)"
        )
        return target, reason, first
    findings = sorted(
        (
            f
            for f in baseline_findings
            if f.get("host") in db_hosts and f.get("severity") in SERIOUS and f.get("time") is not None
        ),
        key=lambda f: parse_time(f["time"]),
    )
    if findings and (incident is None or parse_time(findings[0]["time"]) <= incident):
        finding = findings[0]
        moment = parse_time(finding["time"])
        target = {"type": "time", "time": iso(moment), "inclusive": False}
        reason = (
            f"no malicious transaction in the WAL, but database host {finding['host']} shows a {finding['severity']} "
            f"{finding.get('kind', 'finding')} at {iso(moment)} ({finding.get('text') or finding.get('path')}); "
            "the database is restored to just before it"
        )
        return target, reason, None
    if incident is not None:
        target = {"type": "time", "time": iso(incident), "inclusive": False}
        return (
            target,
            f"no malicious transaction or timed host finding; restoring to the incident time {iso(incident)}",
            None,
        )
    return {"type": "latest"}, "no malicious transaction, timed finding or incident time: replaying all the WAL", None


def _choose_base(
    base_backups: Sequence[Mapping[str, Any]], target: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    limit = parse_time(target["time"]) if target.get("time") else None
    skipped: list[dict[str, str]] = []
    for backup in sorted(base_backups, key=lambda b: parse_time(b["stop"]), reverse=True):
        label = str(backup.get("label"))
        stop = parse_time(backup["stop"])
        if limit is not None and stop >= limit:
            skipped.append(
                {
                    "label": label,
                    "reason": f"backup {label} ended at {iso(stop)}, not before the restore target {iso(limit)} "
                    "(it may already contain the damage); skipped",
                }
            )
            continue
        if backup.get("verified") is not True:
            skipped.append(
                {
                    "label": label,
                    "reason": f"backup {label} failed verification: {backup.get('detail') or 'not verified'}; skipped",
                }
            )
            continue
        chosen = {
            "label": label,
            "start": iso(parse_time(backup["start"])) if backup.get("start") else None,
            "stop": iso(stop),
            "verified": True,
            "detail": backup.get("detail"),
        }
        return chosen, skipped
    return None, skipped


def _choose_documents(
    snapshots: Sequence[Mapping[str, Any]],
    cutoffs: Sequence[tuple[datetime, str]],
) -> dict[str, Any]:
    """One host's choice: ``{snapshot, cutoff, cutoff_source, rejected, reason}``."""
    cutoff = min(cutoffs, default=None)
    rejected: list[dict[str, Any]] = []
    chosen: dict[str, Any] | None = None
    for snap in sorted(snapshots, key=lambda s: parse_time(s["time"]), reverse=True):
        moment = parse_time(snap["time"])
        score = snap.get("score") or {}
        reasons: list[str] = []
        if not snap.get("repository_ok"):
            reasons.append(f"repository check failed: {snap.get('repository_detail') or 'no detail'}")
        if score.get("malicious"):
            reasons.append(f"infected: {_describe_signs(score)}")
        if cutoff is not None and moment > cutoff[0]:
            reasons.append(
                f"taken at {iso(moment)}, after the earliest malicious change {iso(cutoff[0])} ({cutoff[1]})"
            )
        if reasons:
            rejected.append({"name": snap.get("name"), "time": iso(moment), "reasons": reasons})
            continue
        chosen = {
            "name": snap.get("name"),
            "time": iso(moment),
            "verdict": score.get("verdict", "clean"),
            "signs": list(score.get("signs", [])),
        }
        break
    if chosen:
        reason = f"snapshot {chosen['name']} taken at {chosen['time']} is the newest usable one"
        if chosen["verdict"] == "suspicious":
            reason += f" (suspicious, not malicious: {_describe_signs(chosen)})"
    else:
        reason = "no snapshot is usable"
    return {
        "snapshot": chosen,
        "cutoff": iso(cutoff[0]) if cutoff else None,
        "cutoff_source": cutoff[1] if cutoff else None,
        "rejected": rejected,
        "reason": reason,
    }


def _validate_override(override: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if override is None:
        return None
    reason = override.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(
            "an override of the restore point needs a non-empty 'reason' (why the automatic choice is wrong), "
            "recorded in the decision with 'by' (who decided)"
        )
    unknown = sorted(set(override) - {"database", "documents", "reason", "by"})
    if unknown:
        raise ValueError(f"unknown override key(s) {', '.join(unknown)}; use database, documents, reason, by")
    database = override.get("database")
    if database is not None:
        kind = database.get("type") if isinstance(database, Mapping) else None
        if kind not in ("xid", "time", "latest"):
            raise ValueError(
                "override database must be {type: xid, xid: N} or {type: time, time: ISO} or {type: latest}"
            )
        if kind == "xid" and not isinstance(database.get("xid"), int):
            raise ValueError("override database {type: xid} needs an integer xid")
        if kind == "time":
            parse_time(database.get("time"))
    documents = override.get("documents")
    if documents is not None and not isinstance(documents, Mapping):
        raise ValueError("override documents must map host to snapshot name")
    return {
        "database": dict(database) if database is not None else None,
        "documents": dict(documents) if documents is not None else None,
        "reason": reason.strip(),
        "by": str(override.get("by") or "unknown"),
    }


def choose_restore_point(
    *,
    incident_time: str | None,
    base_backups: Sequence[Mapping[str, Any]],
    transactions: Sequence[Mapping[str, Any]],
    document_snapshots: Sequence[Mapping[str, Any]],
    baseline_findings: Sequence[Mapping[str, Any]],
    db_hosts: Sequence[str],
    override: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The restore point: database recovery target and base backup, document snapshot per host, and why.

    Returns ``{format, ok, error, incident_time, earliest_malicious_change, earliest_malicious_source, database
    {target, reason, base_backup, skipped_base_backups, lost_transactions}, documents {host: {snapshot, cutoff,
    cutoff_source, rejected, reason}}, automatic {database, documents}, override, explanation [sentences],
    evidence {transactions, documents, baseline}}``. ValueError for an override without a reason.
    """
    checked_override = _validate_override(override)
    incident = parse_time(incident_time) if incident_time else None
    transactions = list(transactions)
    target, db_reason, first_bad = _db_target(incident, transactions, baseline_findings, db_hosts)

    # Earliest malicious change, over everything we know.
    marks: list[tuple[datetime, str]] = []
    if first_bad:
        marks.append((parse_time(first_bad["commit_time"]), f"database transaction {first_bad['xid']}"))
    timed_findings = [f for f in baseline_findings if f.get("severity") in SERIOUS and f.get("time") is not None]
    for finding in timed_findings:
        marks.append(
            (parse_time(finding["time"]), f"{finding['severity']} {finding.get('kind')} on {finding.get('host')}")
        )
    hosts = sorted({str(s["host"]) for s in document_snapshots})
    doc_marks: dict[str, list[tuple[datetime, str]]] = {}
    for snap in document_snapshots:
        score = snap.get("score") or {}
        if score.get("malicious") and score.get("earliest_change") is not None:
            mark = (parse_time(score["earliest_change"]), f"documents on {snap['host']} (snapshot {snap.get('name')})")
            doc_marks.setdefault(str(snap["host"]), []).append(mark)
            marks.append(mark)
    earliest = min(marks, default=None)

    documents: dict[str, dict[str, Any]] = {}
    for host in hosts:
        cutoffs = list(doc_marks.get(host, []))
        if first_bad:
            cutoffs.append((parse_time(first_bad["commit_time"]), f"database transaction {first_bad['xid']}"))
        if incident is not None:
            cutoffs.append((incident, "incident time"))
        cutoffs += [
            (parse_time(f["time"]), f"{f['severity']} {f.get('kind')} on {host}")
            for f in timed_findings
            if f.get("host") == host
        ]
        documents[host] = _choose_documents([s for s in document_snapshots if str(s["host"]) == host], cutoffs)

    automatic_db = {"target": target, "reason": db_reason}
    automatic = {
        "database": dict(automatic_db),
        "documents": {h: (d["snapshot"] or {}).get("name") for h, d in documents.items()},
    }
    final_target = target
    if checked_override and checked_override["database"] is not None:
        final_target = dict(checked_override["database"])
        if final_target["type"] == "xid" and "time" not in final_target:
            match = [t for t in transactions if t.get("xid") == final_target["xid"]]
            if not match:
                raise ValueError(
                    f"override names transaction {final_target['xid']}, which is not among the scored transactions; "
                    "give its commit time as database.time so the base backup can be chosen"
                )
            final_target["time"] = iso(parse_time(match[0]["commit_time"]))
        elif final_target.get("time"):
            final_target["time"] = iso(parse_time(final_target["time"]))
        if final_target["type"] != "latest":
            final_target.setdefault("inclusive", False)
        db_reason = f"operator override by {checked_override['by']}: {checked_override['reason']}"
    if checked_override and checked_override["documents"]:
        for host, wanted in checked_override["documents"].items():
            name = wanted.get("name") if isinstance(wanted, Mapping) else wanted
            snaps = [s for s in document_snapshots if str(s["host"]) == host and s.get("name") == name]
            if not snaps:
                raise ValueError(f"override names document snapshot {name!r} of host {host!r}, which is not known")
            snap = snaps[0]
            score = snap.get("score") or {}
            documents[host] = dict(
                documents.get(host, {}),
                snapshot={
                    "name": name,
                    "time": iso(parse_time(snap["time"])),
                    "verdict": score.get("verdict", "clean"),
                    "signs": list(score.get("signs", [])),
                },
                reason=f"operator override by {checked_override['by']}: {checked_override['reason']}",
            )

    base, skipped = _choose_base(base_backups, final_target)
    lost = 0
    if final_target.get("time"):
        limit = parse_time(final_target["time"])
        lost = sum(
            1
            for t in transactions
            if not t.get("malicious") and t.get("commit_time") and parse_time(t["commit_time"]) >= limit
        )
    error: str | None = None
    if base is None:
        when = f"before {final_target['time']}" if final_target.get("time") else "at all"
        error = (
            f"no verified base backup ended {when}: "
            + ("; ".join(s["reason"] for s in skipped) if skipped else "none was given")
            + ". Do not restore: verify the older base backups (pg_verifybackup) or fetch one from the offline "
            "copy, then run the selection again."
        )
    database = {
        "target": final_target,
        "reason": db_reason,
        "base_backup": base,
        "skipped_base_backups": skipped,
        "lost_transactions": lost,
    }
    missing_docs = [h for h, d in documents.items() if d["snapshot"] is None]
    if missing_docs and error is None:
        error = (
            f"no usable document snapshot for {', '.join(missing_docs)}: every one is infected, after the earliest "
            "malicious change or failed its repository check. Do not restore those hosts' documents; check the "
            "offline copy or accept an older snapshot with an override (reason required)."
        )

    explanation = _explain(database, documents, earliest, incident, checked_override, first_bad, timed_findings)
    decision = {
        "format": FORMAT,
        "ok": error is None,
        "error": error,
        "incident_time": iso(incident) if incident else None,
        "earliest_malicious_change": iso(earliest[0]) if earliest else None,
        "earliest_malicious_source": earliest[1] if earliest else None,
        "database": database,
        "documents": documents,
        "automatic": automatic,
        "override": checked_override,
        "explanation": explanation,
        "evidence": {
            "transactions": [dict(t) for t in transactions if t.get("malicious")],
            "documents": [
                {
                    "host": s["host"],
                    "name": s.get("name"),
                    "time": iso(parse_time(s["time"])),
                    "verdict": (s.get("score") or {}).get("verdict"),
                    "signs": list((s.get("score") or {}).get("signs", [])),
                    "repository_ok": bool(s.get("repository_ok")),
                }
                for s in document_snapshots
                if (s.get("score") or {}).get("signs") or not s.get("repository_ok")
            ],
            "baseline": [dict(f) for f in baseline_findings if f.get("severity") in SERIOUS],
        },
    }
    return decision


def _explain(
    database: Mapping[str, Any],
    documents: Mapping[str, Mapping[str, Any]],
    earliest: tuple[datetime, str] | None,
    incident: datetime | None,
    override: Mapping[str, Any] | None,
    first_bad: Mapping[str, Any] | None,
    timed_findings: Sequence[Mapping[str, Any]],
) -> list[str]:
    lines: list[str] = []
    target = database["target"]
    if earliest:
        lines.append(f"The earliest malicious change found is at {iso(earliest[0])} ({earliest[1]}).")
    if target["type"] == "xid":
        lines.append(
            f"Database: replay the WAL up to just before transaction {target['xid']} (recovery_target_xid = "
            f"{target['xid']}, recovery_target_inclusive = off), committed at {target.get('time')}. "
            f"Why: {database['reason']}."
        )
    elif target["type"] == "time":
        lines.append(
            f"Database: replay the WAL up to just before {target['time']} (recovery_target_time, "
            f"recovery_target_inclusive = off). Why: {database['reason']}."
        )
    else:
        lines.append(f"Database: replay all the WAL there is. Why: {database['reason']}.")
    base = database["base_backup"]
    if base:
        lines.append(f"Start from base backup {base['label']} (ended {base['stop']}, verified).")
    for skipped in database["skipped_base_backups"]:
        lines.append(skipped["reason"][0].upper() + skipped["reason"][1:] + ".")
    if target.get("time"):
        # Everything after the target is not replayed, up to the end of the WAL (the incident time, when given,
        # may be earlier or later than the target; it does not bound what is lost).
        lines.append(
            f"Lost: every change committed from {target['time']} to the end of the WAL; "
            f"{database['lost_transactions']} legitimate-looking transaction(s) in the WAL after the target must be "
            "re-entered from paper or the payment gateway's records."
        )
    if first_bad and timed_findings:
        earlier = [f for f in timed_findings if parse_time(f["time"]) < parse_time(first_bad["commit_time"])]
        if earlier:
            lines.append(
                f"Note: {len(earlier)} serious host finding(s) predate the first malicious transaction (first: "
                f"{earlier[0].get('host')} {earlier[0].get('kind')}); the WAL before it shows no tampering."
            )
    for host, choice in sorted(documents.items()):
        snap = choice["snapshot"]
        if snap:
            lines.append(
                f"Documents on {host}: restore snapshot {snap['name']} taken at {snap['time']}: {choice['reason']}."
            )
            if target.get("time") and parse_time(snap["time"]) < parse_time(target["time"]):
                lines.append(
                    f"Uploads to {host} between {snap['time']} and {target['time']} are referenced by restored "
                    "database rows: each one the backup server holds with content that still matches its sha256 is "
                    "restored too; the restore report counts any still missing (ask those citizens to upload again)."
                )
        else:
            lines.append(f"Documents on {host}: NO usable snapshot ({choice['reason']}).")
        for rejected in choice["rejected"]:
            lines.append(f"  Rejected {rejected['name']} ({rejected['time']}): {'; '.join(rejected['reasons'])}.")
    if override:
        lines.append(
            f"This is an OPERATOR OVERRIDE by {override['by']} ({override['reason']}); the automatic choice is "
            "recorded under 'automatic'."
        )
        for host, choice in sorted(documents.items()):
            snap = choice.get("snapshot") or {}
            if snap.get("verdict") == "malicious":
                lines.append(f"WARNING: the overridden snapshot for {host} is itself infected.")
    return lines
