# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evidence for the cyber police and CERT-In: what a compromised host shows, read without trusting its tools,
and a chain of custody that shows any later edit.

Two halves, no Ansible imports:

* **Chain of custody** (controller, pure): every evidence item is one JSON line in ``custody.jsonl`` with its
  sha256, size, who collected it, when (``collected_at`` in UTC, ``collected_at_ist``), where from, the incident
  ID and ``prev_hash`` - the ``hash`` of the line before. Each line's ``hash`` is the sha256 of its canonical
  JSON without ``hash``, so editing an item, a line, the order of lines or removing a line in the middle breaks
  the chain at that line; cutting lines off the end is caught against the head written in ``evidence.json`` (and
  wherever the operator noted it, e.g. the CERT-In report). :func:`verify` re-hashes every item and names what
  no longer matches.
* **Host readers** (run by the module on the host, read-only): processes from ``/proc`` (not from ``ps``, which
  an intruder replaces first), every TCP/UDP socket from ``/proc/net`` with the processes that own it,
  recently modified files, executables in temporary directories. They take the ``/proc`` root and file roots as
  arguments, so unit tests feed them fake trees.

``python3 enp_custody.py verify EVIDENCE_DIR`` checks a chain with nothing but Python's standard library (an
investigator's machine needs neither Ansible nor this project).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMAT = "enp-evidence-custody/1"
SUMMARY_FORMAT = "enp-evidence/1"
GENESIS = "0" * 64
"""prev_hash of the first record of a chain."""
CHAIN_FILE = "custody.jsonl"
SUMMARY_FILE = "evidence.json"
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30), "IST")
BLOCK = 1 << 20
RECORD_FIELDS: tuple[str, ...] = (
    "seq",
    "item",
    "host",
    "sha256",
    "bytes",
    "collected_at",
    "collected_at_ist",
    "collected_by",
    "where",
    "incident_id",
    "prev_hash",
)
"""Every record has these (plus ``format`` and ``hash``; ``note`` is optional)."""
SKIP_UNLISTED = frozenset({CHAIN_FILE, SUMMARY_FILE})
"""Files of the evidence folder that are not items themselves (the chain, and the summary that names its head)."""


class ChainError(ValueError):
    """A custody file that cannot be read as a chain (not JSON, not records)."""


# ------------------------------------------------------------------------------------------- time and hashing


def timestamps(now: datetime.datetime | None = None) -> dict[str, str]:
    """The same instant in UTC (ISO 8601, Z) and IST (+05:30): CERT-In reports carry IST, the logs UTC."""
    now = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC).replace(microsecond=0)
    return {"utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "ist": now.astimezone(IST).isoformat()}


def sha256_file(path: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in 1 MiB blocks; symlinks are not followed."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON without its own ``hash`` field."""
    return sha256_bytes(canonical({k: v for k, v in record.items() if k != "hash"}).encode())


# ------------------------------------------------------------------------------------------------ the chain


def make_record(
    *,
    seq: int,
    item: str,
    host: str,
    sha256: str,
    size: int,
    collected_at: Mapping[str, str],
    collected_by: str,
    where: str,
    incident_id: str,
    prev_hash: str,
    note: str = "",
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format": FORMAT,
        "seq": seq,
        "item": item,
        "host": host,
        "sha256": sha256,
        "bytes": size,
        "collected_at": collected_at["utc"],
        "collected_at_ist": collected_at["ist"],
        "collected_by": collected_by,
        "where": where,
        "incident_id": incident_id,
        "prev_hash": prev_hash,
    }
    if note:
        record["note"] = note
    record["hash"] = record_hash(record)
    return record


def parse_chain(text: str) -> list[dict[str, Any]]:
    """The records of a custody file; a line that is not a JSON object raises ChainError naming the line."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ChainError(f"line {number} of {CHAIN_FILE} is not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise ChainError(f"line {number} of {CHAIN_FILE} is not a record")
        record["_line"] = number
        records.append(record)
    return records


def read_chain(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return parse_chain(handle.read())


def head_of(records: Sequence[Mapping[str, Any]]) -> str:
    return str(records[-1]["hash"]) if records else GENESIS


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "_line"}


def check_chain(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Problems of the chain itself (not of the items): broken links, edited lines, missing fields."""
    problems: list[str] = []
    previous = GENESIS
    for index, raw in enumerate(records):
        record = _clean(raw)
        where = f"line {raw.get('_line', index + 1)} (item {record.get('item', '?')})"
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing or "hash" not in record:
            problems.append(f"{where}: not a custody record (missing {', '.join(missing or ['hash'])})")
            previous = str(record.get("hash", ""))
            continue
        if record.get("format") != FORMAT:
            problems.append(f"{where}: format {record.get('format')!r}, this enp reads {FORMAT!r}")
        if record["seq"] != index + 1:
            problems.append(f"{where}: sequence number {record['seq']}, expected {index + 1} (a line removed or moved)")
        if record["prev_hash"] != previous:
            problems.append(
                f"{where}: prev_hash {str(record['prev_hash'])[:16]}... does not match the record before "
                f"({previous[:16]}...): a line before it was changed, removed or reordered"
            )
        actual = record_hash(record)
        if actual != record["hash"]:
            problems.append(f"{where}: the record was edited after it was written (its hash no longer matches)")
        previous = str(record["hash"])
    return problems


def append(
    chain_path: str,
    entries: Iterable[Mapping[str, Any]],
    *,
    base_dir: str,
    collected_by: str,
    incident_id: str,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """Hash each entry's file (``item`` is its path relative to ``base_dir``) and append one record per entry.

    Entries: ``{"item", "host", "where"[, "note"]}``. The chain on disk is checked first: appending to a broken
    chain would bless the break, so it raises ChainError instead."""
    records = read_chain(chain_path)
    broken = check_chain(records)
    if broken:
        raise ChainError(f"{chain_path} is already broken, nothing appended: " + "; ".join(broken[:3]))
    previous, seq = head_of(records), len(records)
    stamp = timestamps(now)
    new = []
    for entry in entries:
        digest, size = sha256_file(os.path.join(base_dir, entry["item"]))
        seq += 1
        record = make_record(
            seq=seq,
            item=str(entry["item"]),
            host=str(entry["host"]),
            sha256=digest,
            size=size,
            collected_at=stamp,
            collected_by=collected_by,
            where=str(entry["where"]),
            incident_id=incident_id,
            prev_hash=previous,
            note=str(entry.get("note") or ""),
        )
        new.append(record)
        previous = record["hash"]
    if new:
        if os.path.exists(chain_path):
            os.chmod(chain_path, 0o600)
        with open(chain_path, "a", encoding="utf-8") as handle:
            for record in new:
                handle.write(canonical(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(chain_path, 0o400)
    return new


def listed_files(base_dir: str) -> list[str]:
    """Every regular file under base_dir (relative paths), the chain and summary excepted."""
    found = []
    for top, dirs, files in os.walk(base_dir):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(top, name), base_dir)
            if rel not in SKIP_UNLISTED:
                found.append(rel)
    return found


def verify(base_dir: str, expected_head: str | None = None) -> dict[str, Any]:
    """Re-hash every item of the chain in base_dir and check the chain.

    Returns ``{"ok", "problems", "records", "head", "items", "bytes", "bad_items"}``. ``expected_head`` (from
    evidence.json when not given) catches records cut off the end of the chain."""
    chain_path = os.path.join(base_dir, CHAIN_FILE)
    problems: list[str] = []
    bad: list[str] = []
    try:
        records = read_chain(chain_path)
    except (ChainError, OSError, UnicodeDecodeError) as exc:
        return {
            "ok": False,
            "problems": [str(exc)],
            "records": 0,
            "head": None,
            "items": 0,
            "bytes": 0,
            "bad_items": [],
        }
    if not records:
        problems.append(f"no custody records in {chain_path}")
    problems += check_chain(records)
    total = 0
    seen: set[str] = set()
    for record in records:
        item = str(record.get("item", ""))
        seen.add(item)
        path = os.path.normpath(os.path.join(base_dir, item))
        if not path.startswith(os.path.normpath(base_dir) + os.sep):
            problems.append(f"item {item}: the path leaves the evidence folder")
            bad.append(item)
            continue
        try:
            digest, size = sha256_file(path)
        except OSError as exc:
            problems.append(f"item {item}: cannot be read ({exc.strerror or exc})")
            bad.append(item)
            continue
        total += size
        if digest != record.get("sha256"):
            problems.append(
                f"item {item}: content changed since it was collected (sha256 now {digest[:16]}..., "
                f"recorded {str(record.get('sha256'))[:16]}...; {size} bytes now, {record.get('bytes')} recorded)"
            )
            bad.append(item)
        elif size != record.get("bytes"):
            problems.append(f"item {item}: {size} bytes now, {record.get('bytes')} recorded")
            bad.append(item)
    head = head_of(records)
    if expected_head is None:
        summary_path = os.path.join(base_dir, SUMMARY_FILE)
        with contextlib.suppress(OSError, ValueError, AttributeError), open(summary_path, encoding="utf-8") as handle:
            expected_head = json.load(handle).get("chain", {}).get("head")
    if expected_head and expected_head != head:
        known = [r for r in records if r.get("hash") == expected_head]
        if known:
            problems.append(
                f"the chain head is record {records[-1].get('seq')} but {SUMMARY_FILE} names record "
                f"{known[0].get('seq')}: records were added after the summary was written"
            )
        else:
            problems.append(
                f"the chain head {head[:16]}... is not the head {expected_head[:16]}... written in {SUMMARY_FILE}:"
                " records were removed from the end of the chain (or the summary was edited)"
            )
    unlisted = sorted(set(listed_files(base_dir)) - seen)
    for rel in unlisted:
        problems.append(f"file {rel} is in the evidence folder but not in the chain of custody")
    return {
        "ok": not problems,
        "problems": problems,
        "records": len(records),
        "head": head,
        "items": len(seen),
        "bytes": total,
        "bad_items": bad,
        "unlisted": unlisted,
    }


def summarise(
    records: Sequence[Mapping[str, Any]], hosts: Mapping[str, Mapping[str, Any]], incident_id: str
) -> dict[str, Any]:
    """evidence.json: per host the items, bytes and status (collected / not collected and why), the chain head."""
    per_host: dict[str, dict[str, Any]] = {}
    for name, status in hosts.items():
        per_host[name] = {"items": 0, "bytes": 0, **dict(status)}
    for record in records:
        entry = per_host.setdefault(str(record["host"]), {"items": 0, "bytes": 0})
        entry["items"] += 1
        entry["bytes"] += int(record["bytes"])
    collected = sorted(h for h, s in per_host.items() if s.get("collected", s["items"] > 0))
    return {
        "format": SUMMARY_FORMAT,
        "incident_id": incident_id,
        "written_at": timestamps(),
        "chain": {
            "file": CHAIN_FILE,
            "records": len(records),
            "head": head_of(records),
            "first_at": records[0]["collected_at"] if records else None,
            "last_at": records[-1]["collected_at"] if records else None,
        },
        "totals": {
            "hosts": len(per_host),
            "hosts_collected": len(collected),
            "hosts_not_collected": sorted(set(per_host) - set(collected)),
            "items": sum(e["items"] for e in per_host.values()),
            "bytes": sum(e["bytes"] for e in per_host.values()),
        },
        "hosts": per_host,
    }


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per host for the operator: what was collected, the baseline verdict, the disk, the caps."""
    lines = []
    for name, host in sorted(summary["hosts"].items()):
        counts = host.get("counts") or {}
        if not host.get("collected", host.get("items", 0) > 0):
            lines.append(f"{name}: {host.get('reason') or 'not collected'}; {host.get('disk', '')}".rstrip("; "))
            continue
        lines.append(
            f"{name}: {host['items']} items, {host['bytes'] / 1048576:.1f} MiB; "
            f"{counts.get('processes', '?')} processes "
            f"({counts.get('suspicious_processes', 0)} suspicious, {counts.get('hidden_from_ps', 0)} hidden from ps), "
            f"{counts.get('listeners', '?')} listening sockets, {counts.get('users', '?')} accounts; "
            f"baseline: {str(host.get('baseline', '?')).removeprefix(name + ': ')}; {host.get('disk', '')}; "
            f"{host.get('truncated_count', 0)} left out by caps"
            + (f"; problems: {'; '.join(host['problems'])}" if host.get("problems") else "")
        )
    return lines


# --------------------------------------------------------------------------------------------- host readers

TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
TEMP_DIRS: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - examined, never written
PROGRAM_DIRS: tuple[str, ...] = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/")


def _read(path: str, limit: int = 1 << 16) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return None


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def parse_stat(text: str) -> dict[str, Any]:
    """/proc/PID/stat: the command name is in parentheses and may itself contain spaces and parentheses."""
    left, right = text.index("("), text.rindex(")")
    fields = text[right + 2 :].split()
    return {"comm": text[left + 1 : right], "state": fields[0], "ppid": int(fields[1]), "starttime": int(fields[19])}


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Name", "Uid", "Gid", "PPid", "NSpid"):
            out[key] = value.split()[0] if key in ("Uid", "Gid") and value.split() else value.strip()
    return out


def suspicious_exe(exe: str | None) -> str:
    """Why a running program's executable deserves a copy ("" when it looks like an installed program)."""
    if not exe:
        return ""
    if exe.endswith(" (deleted)"):
        return "the executable was deleted after it started"
    if any(exe == d or exe.startswith(d + "/") for d in TEMP_DIRS):
        return "runs from a temporary directory"
    if exe.startswith("/memfd:"):
        return "runs from memory (memfd)"
    if not exe.startswith(PROGRAM_DIRS):
        return "runs from outside the program directories"
    return ""


def read_processes(proc: str = "/proc", hash_limit: int = 64 << 20) -> list[dict[str, Any]]:
    """Every process as /proc shows it: pid, ppid, uid, gid, name, full arguments, executable (link target and
    sha256 of its content, read through /proc/PID/exe so a deleted binary is still hashed), cwd, root, LD_*
    variables of its environment, socket inodes, and why it looks suspicious."""
    processes = []
    for name in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        base = f"{proc}/{name}"
        stat_raw = _read(f"{base}/stat")
        if stat_raw is None:
            continue  # exited meanwhile
        try:
            info = parse_stat(stat_raw.decode(errors="replace"))
        except (ValueError, IndexError):
            continue
        status = parse_status((_read(f"{base}/status") or b"").decode(errors="replace"))
        cmdline = (_read(f"{base}/cmdline", 1 << 20) or b"").split(b"\0")
        args = [a.decode(errors="backslashreplace") for a in cmdline if a]
        exe = _link(f"{base}/exe")
        env = (_read(f"{base}/environ", 1 << 20) or b"").split(b"\0")
        ld_env = sorted(e.decode(errors="backslashreplace") for e in env if e.startswith(b"LD_"))
        sockets = []
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"{base}/fd"):
                target = _link(f"{base}/fd/{fd}") or ""
                if target.startswith("socket:["):
                    sockets.append(int(target[8:-1]))
        exe_sha256 = exe_size = None
        if exe:
            with contextlib.suppress(OSError):
                st = os.stat(f"{base}/exe")
                if st.st_size <= hash_limit:
                    digest = hashlib.sha256()
                    with open(f"{base}/exe", "rb") as handle:
                        while block := handle.read(BLOCK):
                            digest.update(block)
                    exe_sha256, exe_size = digest.hexdigest(), st.st_size
        processes.append(
            {
                "pid": int(name),
                "ppid": info["ppid"],
                "state": info["state"],
                "starttime_ticks": info["starttime"],
                "uid": status.get("Uid"),
                "gid": status.get("Gid"),
                "comm": info["comm"],
                "args": args,
                "kernel_thread": not args and not exe,
                "exe": exe,
                "exe_sha256": exe_sha256,
                "exe_bytes": exe_size,
                "cwd": _link(f"{base}/cwd"),
                "root": _link(f"{base}/root"),
                "ld_env": ld_env,
                "socket_inodes": sorted(sockets),
                "suspicious": suspicious_exe(exe),
            }
        )
    return processes


def _decode_address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    import ipaddress

    return f"[{ipaddress.IPv6Address(words).compressed}]"


def parse_net(text: str, proto: str) -> list[dict[str, Any]]:
    """Every socket line of /proc/net/{tcp,tcp6,udp,udp6} (not only listeners, unlike the baseline's reader)."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        (laddr, lport), (raddr, rport) = fields[1].split(":"), fields[2].split(":")
        state = (
            TCP_STATES.get(fields[3].upper(), fields[3])
            if proto.startswith("tcp")
            else ("UNCONN" if fields[3] == "07" else "ESTAB" if fields[3] == "01" else fields[3])
        )
        sockets.append(
            {
                "proto": proto,
                "local": f"{_decode_address(laddr)}:{int(lport, 16)}",
                "remote": f"{_decode_address(raddr)}:{int(rport, 16)}",
                "state": state,
                "uid": int(fields[7]),
                "inode": int(fields[9]),
            }
        )
    return sockets


def read_sockets(processes: Sequence[Mapping[str, Any]], proc: str = "/proc") -> list[dict[str, Any]]:
    """All TCP/UDP sockets of the host's network namespace with the pids and names of their owners."""
    owners: dict[int, list[str]] = {}
    for process in processes:
        for inode in process.get("socket_inodes", []):
            owners.setdefault(inode, []).append(f"{process['comm']}/{process['pid']}")
    sockets = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        raw = _read(f"{proc}/net/{proto}", 64 << 20)
        if raw:
            for sock in parse_net(raw.decode(errors="replace"), proto):
                sock["processes"] = sorted(owners.get(sock["inode"], []))
                sockets.append(sock)
    return sockets


def ps_pids(ps_output: str) -> set[int]:
    """The pids in ``ps -e -o pid,...`` output (its first column)."""
    pids = set()
    for line in ps_output.splitlines():
        first = line.split(None, 1)[0] if line.strip() else ""
        if first.isdigit():
            pids.add(int(first))
    return pids


def hidden_pids(first: Iterable[int], second: Iterable[int], from_ps: Iterable[int], ps_self: int | None) -> list[int]:
    """Processes in /proc before AND after ps ran but not in ps's output: a rootkit hiding them from ps (a
    process that started or ended meanwhile is in only one /proc read and so not counted)."""
    stable = set(first) & set(second)
    return sorted(stable - set(from_ps) - ({ps_self} if ps_self else set()))


def is_executable(path: str, st: os.stat_result) -> bool:
    """An exec bit, or content that runs anyway (ELF, a #! script) - attackers drop both in /tmp."""
    if st.st_mode & 0o111:
        return True
    head = _read(path, 4) or b""
    return head.startswith((b"\x7fELF", b"#!"))


def recent_files(
    roots: Iterable[str],
    since: float,
    max_entries: int,
    skip: Iterable[str] = (),
    hash_limit: int = 1 << 20,
) -> tuple[list[dict[str, Any]], int]:
    """Files and directories under roots changed (mtime or ctime) at or after ``since`` (epoch seconds), newest
    first, at most max_entries; small files hashed. Returns (entries, how many more were found but left out)."""
    skipped = tuple(s.rstrip("/") for s in skip if s)
    found: list[dict[str, Any]] = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if os.path.join(top, d) not in skipped)
            for name in [*files, *dirs]:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                changed = max(st.st_mtime, st.st_ctime)
                if changed < since:
                    continue
                kind = (
                    "file"
                    if stat.S_ISREG(st.st_mode)
                    else "dir"
                    if stat.S_ISDIR(st.st_mode)
                    else "link"
                    if stat.S_ISLNK(st.st_mode)
                    else "other"
                )
                entry: dict[str, Any] = {
                    "path": path,
                    "type": kind,
                    "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                    "uid": st.st_uid,
                    "gid": st.st_gid,
                    "size": st.st_size,
                    "mtime": timestamps(datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC))["utc"],
                    "ctime": timestamps(datetime.datetime.fromtimestamp(st.st_ctime, datetime.UTC))["utc"],
                    "_changed": changed,
                }
                if kind == "link":
                    entry["target"] = _link(path)
                if kind == "file":
                    entry["executable"] = is_executable(path, st)
                    if st.st_size <= hash_limit:
                        with contextlib.suppress(OSError):
                            entry["sha256"] = sha256_file(path)[0]
                found.append(entry)
    found.sort(key=lambda e: (-e["_changed"], e["path"]))
    for entry in found:
        del entry["_changed"]
    return found[:max_entries], max(0, len(found) - max_entries)


def own_payload_dir(path: str = __file__) -> str:
    """The temporary folder Ansible unpacked this module into (removed when the module exits): the collection's
    only footprint on the host, left out of the evidence. Empty when not run by Ansible."""
    marker = path.find("_payload.zip")
    return os.path.dirname(path[:marker]) if marker > 0 else ""


def temp_executables(dirs: Iterable[str] = TEMP_DIRS, max_entries: int = 1000, skip: Iterable[str] = ()) -> list[str]:
    """Executable files (by mode or content) anywhere under the temporary directories."""
    skipped = {s.rstrip("/") for s in skip if s}
    found = []
    for root in dirs:
        for top, subdirs, files in os.walk(root) if os.path.isdir(root) else ():
            subdirs[:] = sorted(d for d in subdirs if os.path.join(top, d) not in skipped)
            for name in sorted(files):
                path = os.path.join(top, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode) and is_executable(path, st):
                        found.append(path)
                if len(found) >= max_entries:
                    return found
    return found


class CappedTar:
    """A gzip'd tar built in memory with a total cap: files that would pass the cap, or are larger than the
    per-file cap, are left out and listed in ``truncated`` with the reason (never silently dropped)."""

    def __init__(self, max_bytes: int, max_file_bytes: int) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w:gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.max_bytes, self.max_file_bytes = max_bytes, max_file_bytes
        self.used = 0
        self.members: list[dict[str, Any]] = []
        self.truncated: list[dict[str, Any]] = []
        self.names: set[str] = set()
        self.by_digest: dict[str, str] = {}
        self.not_files: list[str] = []

    def add_file(self, path: str, why: str, source: str | None = None, arcname: str | None = None) -> bool:
        """Add one regular file (``source`` may be /proc/PID/exe for a running program); record its sha256."""
        arcname = (arcname or path).lstrip("/")
        if arcname in self.names:
            return True
        try:
            st = os.stat(source or path) if source else os.lstat(path)
        except OSError as exc:
            self.truncated.append({"path": path, "reason": f"cannot stat: {exc.strerror}"})
            return False
        if not stat.S_ISREG(st.st_mode):
            self.not_files.append(path)
            return False
        if st.st_size > self.max_file_bytes:
            self.truncated.append(
                {"path": path, "bytes": st.st_size, "reason": f"larger than the per-file cap {self.max_file_bytes}"}
            )
            return False
        if self.used + st.st_size > self.max_bytes:
            self.truncated.append(
                {"path": path, "bytes": st.st_size, "reason": f"the host's total cap {self.max_bytes} was reached"}
            )
            return False
        try:
            with open(source or path, "rb") as handle:
                data = handle.read(self.max_file_bytes + 1)
        except OSError as exc:
            self.truncated.append({"path": path, "reason": f"cannot read: {exc.strerror}"})
            return False
        digest = sha256_bytes(data)
        self.names.add(arcname)
        member = {"path": path, "member": arcname, "bytes": len(data), "sha256": digest, "why": why}
        if digest in self.by_digest:  # the same content twice (a /tmp binary that is also running): stored once
            member["same_as"] = self.by_digest[digest]
            self.members.append(member)
            return True
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = len(data), int(st.st_mtime), stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        self.tar.addfile(info, io.BytesIO(data))
        self.used += len(data)
        self.by_digest[digest] = arcname
        self.members.append(member)
        return True

    def add_bytes(self, arcname: str, data: bytes, why: str) -> None:
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = len(data), int(datetime.datetime.now(datetime.UTC).timestamp()), 0o400
        self.tar.addfile(info, io.BytesIO(data))
        self.used += len(data)
        self.members.append(
            {"path": None, "member": arcname, "bytes": len(data), "sha256": sha256_bytes(data), "why": why}
        )

    def close(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def gzip_capped(data: bytes, max_bytes: int) -> tuple[bytes, bool]:
    """gzip of at most max_bytes of data (the newest part is what counts in a log: keep the end)."""
    cut = len(data) > max_bytes
    return gzip.compress(data[-max_bytes:] if cut else data, mtime=0), cut


def archive_tree(src: str, dest: str, max_bytes: int) -> dict[str, Any]:
    """Controller side: a tar.gz of a whole tree (a lab host's overlay upper layer), keeping owners, modes, links
    and overlayfs whiteouts; regular files past max_bytes in total are left out and listed."""
    truncated: list[dict[str, Any]] = []
    used = files = 0
    tmp = dest + ".part"
    # Level 1: the phase runs while the estate is down, and gzip -9 of a database's files is several times slower
    # for a few percent less disk.
    with tarfile.open(tmp, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, names in os.walk(src):
            dirs.sort()
            for name in [*sorted(names), *dirs]:
                path = os.path.join(top, name)
                rel = os.path.relpath(path, src)
                try:
                    info = tar.gettarinfo(path, arcname=rel)
                except OSError as exc:
                    truncated.append({"path": "/" + rel, "reason": f"cannot read: {exc.strerror}"})
                    continue
                if info is None:  # sockets
                    continue
                info.uname = info.gname = ""  # the host's uids, not the controller's names for them
                if info.isreg():
                    if used + info.size > max_bytes:
                        truncated.append({"path": "/" + rel, "bytes": info.size, "reason": f"total cap {max_bytes}"})
                        continue
                    try:
                        with open(path, "rb") as handle:
                            data = handle.read(info.size)
                    except OSError as exc:
                        truncated.append({"path": "/" + rel, "reason": f"cannot read: {exc.strerror}"})
                        continue
                    info.size = len(data)  # a file of the running host may shrink while it is read
                    tar.addfile(info, io.BytesIO(data))
                    used += len(data)
                    files += 1
                elif info.isdir():
                    tar.addfile(info)
                else:
                    tar.addfile(info)
    os.replace(tmp, dest)
    return {"files": files, "bytes_in": used, "truncated": truncated}


def main(argv: Sequence[str]) -> int:
    """python3 enp_custody.py verify EVIDENCE_DIR [EXPECTED_HEAD]: 0 intact, 1 problems (each printed)."""
    if len(argv) < 2 or argv[0] != "verify":
        print("usage: enp_custody.py verify EVIDENCE_DIR [EXPECTED_HEAD]", file=sys.stderr)
        return 2
    result = verify(argv[1], argv[2] if len(argv) > 2 else None)
    for problem in result["problems"]:
        print(f"FAIL {problem}")
    print(
        f"{'OK' if result['ok'] else 'BROKEN'}: {result['records']} records, {result['items']} items, "
        f"{result['bytes']} bytes, chain head {result['head']}"
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
