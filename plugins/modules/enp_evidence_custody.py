#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_evidence_custody
short_description: Collect evidence from a compromised host without changing it, and keep its chain of custody
description:
  - One module, one O(action) per step of the evidence phase (docs/evidence.md, roles/evidence).
  - C(collect) runs on the managed host and only reads it (nothing is written there, in check mode or not). Processes
    are read from C(/proc) with Python, not from C(ps), which an intruder replaces first; C(ps) and C(ss) output is
    kept beside it, and a process that C(/proc) shows twice but C(ps) does not is reported as hidden. Sockets come
    from C(/proc/net) with their owning processes, accounts, sudoers, authorized_keys, cron and systemd units from
    the files, recently changed files from a bounded walk, the journal since O(since), log files, executables in
    temporary directories and the executables of suspicious running programs (read through C(/proc/PID/exe), so a
    deleted binary is copied too), and, with O(baseline), the host's live baseline manifest. Everything comes back
    in the result (base64), capped by O(max_bytes) and O(max_file_bytes); what a cap left out is listed.
  - C(store) runs on the controller and writes the items of a C(collect) result under O(dir)C(/<host>/<run_id>/)
    (0400, never overwriting a different file) and appends one custody record per item to O(dir)C(/custody.jsonl).
  - C(record) hashes files already written under O(dir) (a baseline report, a disk image) into the chain.
  - C(archive) packs a controller directory (a lab host's overlay upper layer) into a tar.gz item and records it.
  - C(summary) writes O(dir)C(/evidence.json) (per host items, bytes, status; the chain head).
  - C(verify) re-hashes every item and checks the chain; fails naming each item or line that changed.
  - In check mode nothing is written; C(collect) returns the items' sizes without their content.
options:
  action:
    description: What to do (see the description).
    type: str
    required: true
    choices: [collect, store, record, archive, summary, verify]
  dir:
    description: The incident's evidence folder on the controller (C(<enp_incident_dir>/evidence)).
    type: path
  host:
    description: Inventory name of the host the items belong to.
    type: str
  run_id:
    description: Folder of this collection round under the host's folder (UTC time, e.g. C(20261206T081500Z)).
    type: str
  incident_id:
    description: Incident ID written in every custody record.
    type: str
    default: ""
  collected_by:
    description: Who collected (C(user@controller)); default the invoking user (C(SUDO_USER) first) at this machine.
    type: str
    default: ""
  items:
    description:
      - For C(store), the C(collected) items of a C(collect) result - each C(name), C(where), C(content_b64),
        optional C(note).
      - For C(record), files under O(dir) to hash - each C(item) (path relative to O(dir)), C(where), optional C(note).
    type: list
    elements: dict
    default: []
  src:
    description: For C(archive), the directory to pack.
    type: path
  item:
    description: For C(archive), the item's path relative to O(dir).
    type: str
  where:
    description: For C(archive), where the directory came from (written in the custody record).
    type: str
    default: ""
  hosts:
    description: For C(summary), status per host (C(collected), C(reason), C(disk_image), notes).
    type: dict
    default: {}
  expected_head:
    description: For C(verify), the chain head noted elsewhere (default the one in C(evidence.json)).
    type: str
  fail_on_problems:
    description: For C(verify), fail when the chain or an item does not verify.
    type: bool
    default: true
  mode:
    description: For C(collect), C(full) (everything) or C(files) (only O(copy_paths), a second pass).
    type: str
    default: full
    choices: [full, files]
  since:
    description:
      - For C(collect), from when the journal and recently changed files are taken - ISO 8601 (UTC when it has no
        zone) or epoch seconds. Empty, the last 24 hours.
    type: str
    default: ""
  margin_hours:
    description: For C(collect), start this many hours before O(since) (intruders prepare before they strike).
    type: float
    default: 0.0
  window_hours:
    description: For C(collect) without O(since), how many hours back the journal and the walk go.
    type: float
    default: 24.0
  recent_paths:
    description: For C(collect), trees walked for recently changed files.
    type: list
    elements: str
    default: [/etc, /usr/local, /var/spool/cron, /tmp, /var/tmp, /dev/shm, /home, /root]
  recent_max_entries:
    description: For C(collect), the most recently changed files listed (newest first); the rest are counted.
    type: int
    default: 5000
  recent_copy_max_bytes:
    description: For C(collect), recently changed regular files up to this size are also copied.
    type: int
    default: 262144
  temp_dirs:
    description: For C(collect), temporary directories whose executables are copied.
    type: list
    elements: str
    default: [/tmp, /var/tmp, /dev/shm]
  log_paths:
    description: For C(collect), log files copied (globs).
    type: list
    elements: str
    default: []
  copy_paths:
    description: For C(collect), further files to copy (e.g. those the baseline flags).
    type: list
    elements: str
    default: []
  journal_max_bytes:
    description: For C(collect), the newest this many bytes of the journal text are kept (gzip'd).
    type: int
    default: 67108864
  max_bytes:
    description: For C(collect), total bytes of copied files per host; C(archive), per archive.
    type: int
    default: 268435456
  max_file_bytes:
    description: For C(collect), largest single file copied.
    type: int
    default: 33554432
  baseline:
    description:
      - For C(collect), the baseline capture options (C(paths), C(skip_paths), C(suid_paths), C(suid_skip_paths),
        C(sections), C(roles)); the live manifest is returned as the item C(baseline-live.json). Empty, none.
    type: dict
    default: {}
author: enp contributors
"""

EXAMPLES = r"""
- name: Read the host (nothing is written on it)
  enp_evidence_custody:
    action: collect
    since: "2026-12-06T07:50:00Z"
    log_paths: [/var/log/auth.log*, /var/log/syslog*]
  register: collected
  no_log: true  # the result holds /etc/shadow and log lines

- name: Write the items on the controller and chain them
  enp_evidence_custody:
    action: store
    dir: /srv/incidents/INC-1/evidence
    host: web1
    run_id: 20261206T081500Z
    incident_id: INC-1
    items: "{{ collected.collected }}"
  delegate_to: localhost

- name: Check the chain of custody (fails naming every changed item)
  enp_evidence_custody:
    action: verify
    dir: /srv/incidents/INC-1/evidence
  delegate_to: localhost
"""

RETURN = r"""
collected:
  description: C(collect) - the items, each name, where, bytes, sha256, content_b64 (not in check mode), note.
  returned: action is collect
  type: list
  elements: dict
truncated:
  description: C(collect) - what a cap left out (path, bytes, reason).
  returned: action is collect
  type: list
  elements: dict
counts:
  description: C(collect) - processes, sockets, listeners, hidden_from_ps, suspicious processes, files copied, ...
  returned: action is collect
  type: dict
records:
  description: C(store), C(record), C(archive) - the custody records appended (or that would be, in check mode).
  returned: action is store, record or archive
  type: list
  elements: dict
head:
  description: The chain head after this action.
  returned: action is store, record, archive, summary or verify
  type: str
ok:
  description: C(verify) - every item and the chain verify.
  returned: action is verify
  type: bool
problems:
  description: C(verify) - one line per item or record that does not verify.
  returned: action is verify
  type: list
  elements: str
summary:
  description: C(summary) - the content of evidence.json.
  returned: action is summary
  type: dict
text:
  description: C(summary) - one line per host for the operator.
  returned: action is summary
  type: list
  elements: str
"""

import base64
import datetime
import getpass
import glob
import io
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_custody import (
    CHAIN_FILE,
    SUMMARY_FILE,
    TEMP_DIRS,
    CappedTar,
    ChainError,
    append,
    archive_tree,
    head_of,
    hidden_pids,
    own_payload_dir,
    ps_pids,
    read_chain,
    read_processes,
    read_sockets,
    recent_files,
    sha256_bytes,
    sha256_file,
    summarise,
    summary_lines,
    temp_executables,
)

TOOLS = ("ps", "ss", "journalctl", "systemctl")
RECENT_PATHS = ("/etc", "/usr/local", "/var/spool/cron", *TEMP_DIRS, "/home", "/root")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _run(argv: list[str], limit: int = 64 << 20, timeout: int = 300) -> tuple[int, bytes, str]:
    """Run a host tool with a clean environment; keep at most the newest ``limit`` bytes of its output."""
    try:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": PATH, "LC_ALL": "C"}
        )
    except OSError as exc:
        return 127, b"", str(exc)
    chunks: list[bytes] = []
    kept = 0
    while proc.stdout and (block := proc.stdout.read(1 << 20)):
        chunks.append(block)
        kept += len(block)
        while kept - len(chunks[0]) > limit:
            kept -= len(chunks.pop(0))
    try:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return 124, b"".join(chunks), "timed out"
    data = b"".join(chunks)
    return proc.returncode, data[-limit:], err.strip()[-2000:]


def tool_record(name: str) -> dict[str, Any]:
    """Where a tool is and the sha256 of the binary that ran, with dpkg's own md5 check of it (a mismatch means the
    binary is not the packaged one; dpkg's md5sums could be forged too, the baseline's sha256 is the better check)."""
    path = shutil.which(name, path=PATH)
    if not path:
        return {"tool": name, "path": None, "note": "not installed on the host"}
    real = os.path.realpath(path)
    digest, size = sha256_file(real)
    record: dict[str, Any] = {"tool": name, "path": path, "realpath": real, "sha256": digest, "bytes": size}
    import hashlib

    with open(real, "rb") as handle:
        md5 = hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
    rel = real.lstrip("/")
    # Debian 12 merged /bin into /usr/bin: dpkg may list either spelling.
    names = {rel, path.lstrip("/"), rel.removeprefix("usr/"), "usr/" + rel.removeprefix("usr/")}
    for md5sums in glob.glob("/var/lib/dpkg/info/*.md5sums"):
        try:
            with open(md5sums, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    parts = line.split(None, 1)
                    if len(parts) == 2 and parts[1].strip() in names:
                        record["dpkg_package"] = os.path.basename(md5sums)[: -len(".md5sums")]
                        record["dpkg_md5_matches"] = parts[0] == md5
        except OSError:
            continue
        if "dpkg_package" in record:
            break
    return record


def _item(name: str, where: str, data: bytes, note: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "where": where,
        "bytes": len(data),
        "sha256": sha256_bytes(data),
        "content_b64": _b64(data),
        "note": note,
    }


def parse_since(text: str, margin_hours: float = 0.0, window_hours: float = 24.0) -> float:
    """Epoch seconds of an ISO 8601 time (UTC when it has no zone) or of epoch seconds, minus the margin; empty:
    ``window_hours`` ago."""
    text = (text or "").strip()
    if not text:
        return time.time() - window_hours * 3600
    try:
        moment = float(text)
    except ValueError:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        moment = parsed.timestamp()
    return moment - margin_hours * 3600


def collect(params: dict[str, Any]) -> dict[str, Any]:
    """Read the host; returns the items, what was left out and counts. Writes nothing anywhere."""
    from ansible.module_utils.enp_baseline_collect import (
        collect_authorized_keys,
        collect_cron,
        collect_groups,
        collect_sudoers,
        collect_units,
        collect_users,
        write_canonical,
    )

    started = time.monotonic()
    items: list[dict[str, Any]] = []
    errors: list[str] = []
    tar = CappedTar(params["max_bytes"], params["max_file_bytes"])
    counts: dict[str, Any] = {}
    since = parse_since(params["since"], params["margin_hours"], params["window_hours"])
    python = {"tool": "python3", "path": os.path.realpath("/proc/self/exe")}
    python["sha256"], python["bytes"] = sha256_file(python["path"])
    tools = [python]

    if params["mode"] == "full":
        # Processes: /proc twice around ps, so a pid in both reads but missing from ps is hidden from it.
        first = read_processes()
        ps_argv = ["ps", "-e", "-ww", "-o", "pid,ppid,user,lstart,stat,args"]
        ps_rc, ps_out, ps_err = _run(ps_argv)
        second = read_processes()
        ps_ok = ps_rc == 0
        hidden = (
            hidden_pids(
                (p["pid"] for p in first), (p["pid"] for p in second), ps_pids(ps_out.decode(errors="replace")), None
            )
            if ps_ok
            else []
        )
        # ps's own pid is in neither read of /proc (it ran between them), so nothing to subtract.
        for process in second:
            process["hidden_from_ps"] = process["pid"] in hidden
        items.append(
            _item(
                "processes.json",
                "/proc/[pid]/{stat,status,cmdline,exe,cwd,root,environ(LD_*),fd} read by python3 on the host",
                _json(
                    {
                        "read_at": datetime.datetime.now(datetime.UTC).isoformat(),
                        "hidden_from_ps": hidden,
                        "processes": second,
                    }
                ),
            )
        )
        if ps_ok:
            items.append(_item("ps.txt", " ".join(ps_argv), ps_out))
        else:
            errors.append(f"ps: {ps_err or 'rc ' + str(ps_rc)} (the process list comes from /proc only)")
        sockets = read_sockets(second)
        items.append(_item("sockets.json", "/proc/net/{tcp,tcp6,udp,udp6} + /proc/[pid]/fd", _json(sockets)))
        ss_rc, ss_out, ss_err = _run(["ss", "-tunap"])
        if ss_rc == 0:
            items.append(_item("ss.txt", "ss -tunap", ss_out))
        else:
            errors.append(f"ss: {ss_err or 'rc ' + str(ss_rc)}")
        counts.update(
            processes=len(second),
            suspicious_processes=sum(1 for p in second if p["suspicious"]),
            hidden_from_ps=len(hidden),
            sockets=len(sockets),
            listeners=sum(1 for s in sockets if s["state"] in ("LISTEN", "UNCONN")),
        )
        for process in second:
            if process["suspicious"] and process["exe_sha256"]:
                tar.add_file(
                    process["exe"].removesuffix(" (deleted)"),
                    f"executable of pid {process['pid']} ({process['suspicious']})",
                    source=f"/proc/{process['pid']}/exe",
                    arcname=f"proc-exe/{process['pid']}-{process['comm'].replace('/', '_')}",
                )

        # Accounts and persistence, read from the files (the baseline's readers, so names match its findings).
        users = collect_users("/")
        keys = collect_authorized_keys("/", users)
        homes = [(n, str(u.get("home") or "")) for n, u in users.items() if u.get("home") not in (None, "", "/")]
        accounts = {
            "users": users,
            "groups": collect_groups("/"),
            "authorized_keys": keys,
            "sudoers": collect_sudoers("/"),
        }
        items.append(
            _item(
                "accounts.json", "/etc/{passwd,shadow,group,sudoers*}, authorized_keys of every home", _json(accounts)
            )
        )
        cron = collect_cron("/")
        units = collect_units("/", homes)
        timers_rc, timers, _ = _run(["systemctl", "list-timers", "--all", "--no-pager"])
        persistence = {
            "cron": cron,
            "units": units,
            "timers": timers.decode(errors="replace") if timers_rc == 0 else None,
        }
        items.append(
            _item(
                "persistence.json",
                "cron files, systemd unit files and wants/ links, systemctl list-timers",
                _json(persistence),
            )
        )
        counts.update(users=len(users), authorized_keys=sum(len(v) for v in keys.values()), cron_files=len(cron))
        for path in [
            "/etc/passwd",
            "/etc/shadow",
            "/etc/group",
            "/etc/gshadow",
            *sorted(accounts["sudoers"]),
            *sorted(keys),
            *sorted(cron),
            "/etc/ld.so.preload",
        ]:
            if os.path.isfile(path):
                tar.add_file(path, "account, key, sudoers, cron or preload file")
        for unit in units.values():
            path = unit.get("path") or ""
            if path.startswith(("/etc/", "/run/", "/usr/local/", "/home/", "/root/")) and os.path.isfile(path):
                tar.add_file(path, "systemd unit outside the package directories")

        # Recently changed files: listed with hashes; small ones and executables in temp dirs copied.
        own = own_payload_dir()  # Ansible's unpacked module, gone when it exits: not evidence
        recent, more = recent_files(params["recent_paths"], since, params["recent_max_entries"], skip=[own])
        items.append(
            _item(
                "recent-files.json",
                f"walk of {', '.join(params['recent_paths'])} (mtime/ctime >= since)",
                _json({"since": since, "more_not_listed": more, "files": recent}),
            )
        )
        counts.update(recent_files=len(recent), recent_files_not_listed=more)
        if more:
            tar.truncated.append(
                {
                    "path": "recent-files.json",
                    "reason": f"{more} older changed files not listed "
                    f"(recent_max_entries {params['recent_max_entries']})",
                }
            )
        for path in temp_executables(params["temp_dirs"], skip=[own]):
            tar.add_file(path, "executable in a temporary directory")
        for entry in recent:
            if entry["type"] == "file" and entry["size"] <= params["recent_copy_max_bytes"]:
                tar.add_file(entry["path"], "recently changed")

        # Logs: the journal as text since `since`, and the classic log files.
        journal_argv = ["journalctl", "--no-pager", "-o", "short-iso-precise", "--since", f"@{int(since)}"]
        j_rc, journal, j_err = _run(journal_argv, limit=params["journal_max_bytes"] + 1)
        if j_rc == 0:
            import gzip

            cut = len(journal) > params["journal_max_bytes"]
            data = gzip.compress(journal[-params["journal_max_bytes"] :], mtime=0)
            note = f"only the newest {params['journal_max_bytes']} bytes (cap)" if cut else ""
            items.append(_item("journal.txt.gz", " ".join(journal_argv), data, note))
            if cut:
                tar.truncated.append({"path": "journal", "reason": note})
        else:
            errors.append(f"journalctl: {j_err or 'rc ' + str(j_rc)}")
        for pattern in params["log_paths"]:
            for path in sorted(glob.glob(pattern)):
                tar.add_file(path, "log file")

        if params["baseline"]:
            from ansible.module_utils.enp_baseline import SECTIONS
            from ansible.module_utils.enp_baseline_collect import capture

            options = params["baseline"]
            manifest = capture(
                host=params["host"] or socket.gethostname(),
                roles=options.get("roles", []),
                paths=options.get("paths", []),
                skip_paths=options.get("skip_paths", []),
                suid_paths=options.get("suid_paths", ["/"]),
                suid_skip_paths=options.get("suid_skip_paths", ["/proc", "/sys"]),
                sections=options.get("sections") or SECTIONS,
                cache=None,  # never trust (nor write) a cache on a compromised host: every file is read
            )
            out = io.StringIO()
            write_canonical(manifest, out)
            items.append(
                _item("baseline-live.json", "enp_baseline_capture's readers (no hash cache)", out.getvalue().encode())
            )
            counts["baseline_files"] = manifest["stats"].get("files")
            counts["container"] = manifest["stats"].get("container", "none")

        tools += [tool_record(name) for name in TOOLS]

    for path in params["copy_paths"]:
        if os.path.isfile(path) and not os.path.islink(path):
            tar.add_file(path, "flagged by the baseline comparison")
        elif os.path.exists(path):
            tar.not_files.append(path)
        else:
            tar.truncated.append({"path": path, "reason": "gone from the host"})

    prefix = "files" if params["mode"] == "full" else "flagged"
    tar_data = tar.close()
    items.append(
        _item(f"{prefix}.tar.gz", f"files read by python3 on the host (index in {prefix}-index.json)", tar_data)
    )
    items.append(
        _item(
            f"{prefix}-index.json",
            "sha256 of every copied file, computed on the host as it was read",
            _json({"members": tar.members, "truncated": tar.truncated, "not_regular_files": tar.not_files}),
        )
    )
    counts.update({f"{prefix}_copied": len(tar.members), f"{prefix}_bytes": tar.used, "truncated": len(tar.truncated)})
    if params["mode"] == "full":
        items.append(_item("tools.json", "sha256 of the host binaries this collection ran", _json(tools)))
    counts["seconds"] = round(time.monotonic() - started, 1)
    items.append(
        _item(
            f"collection-{params['mode']}.json",
            "what this collection did",
            _json(
                {
                    "since": since,
                    "counts": counts,
                    "errors": errors,
                    "truncated": tar.truncated,
                    "caps": {
                        k: params[k]
                        for k in (
                            "max_bytes",
                            "max_file_bytes",
                            "journal_max_bytes",
                            "recent_max_entries",
                            "recent_copy_max_bytes",
                        )
                    },
                }
            ),
        )
    )
    return {"collected": items, "truncated": tar.truncated, "counts": counts, "errors": errors}


def default_operator() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.getfqdn()}"


def store(module: AnsibleModule, params: dict[str, Any], operator: str) -> dict[str, Any]:
    base, host, run_id = params["dir"], params["host"], params["run_id"]
    if not (base and host and run_id):
        module.fail_json(msg="store needs dir, host and run_id")
    folder = os.path.join(host, run_id)
    entries, written = [], []
    for item in params["items"]:
        name = os.path.basename(str(item["name"]))
        rel = os.path.join(folder, name)
        path = os.path.join(base, rel)
        if module.check_mode:
            entries.append({"item": rel, "host": host, "where": item.get("where", ""), "bytes": item.get("bytes")})
            continue
        data = base64.b64decode(item.get("content_b64") or "")
        if item.get("sha256") and sha256_bytes(data) != item["sha256"]:
            module.fail_json(msg=f"{host}: item {name} arrived damaged (sha256 differs from the host's); collect again")
        if os.path.exists(path):
            if sha256_file(path)[0] == sha256_bytes(data):
                continue  # stored (and chained) already, e.g. a resumed run
            module.fail_json(msg=f"{path} exists with other content; evidence is never overwritten (new run_id)")
        entries.append({"item": rel, "host": host, "where": item.get("where", ""), "note": item.get("note", "")})
        written.append((path, data))
    if module.check_mode:
        return {"changed": bool(entries), "records": entries, "head": None}
    for path in (base, os.path.join(base, host), os.path.join(base, folder)):
        os.makedirs(path, mode=0o700, exist_ok=True)
    for path, data in written:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, 0o400)
    return chain(module, base, entries, params, operator)


def chain(module: AnsibleModule, base: str, entries: list[dict[str, Any]], params: dict[str, Any], operator: str):
    try:
        records = append(
            os.path.join(base, CHAIN_FILE),
            entries,
            base_dir=base,
            collected_by=operator,
            incident_id=params["incident_id"],
        )
    except (ChainError, OSError) as exc:
        module.fail_json(msg=f"chain of custody not extended: {exc}")
    for record in records:
        os.chmod(os.path.join(base, record["item"]), 0o400)
    return {"changed": bool(records), "records": records, "head": head_of(read_chain(os.path.join(base, CHAIN_FILE)))}


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(
                type="str", required=True, choices=["collect", "store", "record", "archive", "summary", "verify"]
            ),
            dir=dict(type="path"),
            host=dict(type="str"),
            run_id=dict(type="str"),
            incident_id=dict(type="str", default=""),
            collected_by=dict(type="str", default=""),
            items=dict(type="list", elements="dict", default=[]),
            src=dict(type="path"),
            item=dict(type="str"),
            where=dict(type="str", default=""),
            hosts=dict(type="dict", default={}),
            expected_head=dict(type="str"),
            fail_on_problems=dict(type="bool", default=True),
            mode=dict(type="str", default="full", choices=["full", "files"]),
            since=dict(type="str", default=""),
            margin_hours=dict(type="float", default=0.0),
            window_hours=dict(type="float", default=24.0),
            recent_paths=dict(
                type="list",
                elements="str",
                default=list(RECENT_PATHS),
            ),
            recent_max_entries=dict(type="int", default=5000),
            recent_copy_max_bytes=dict(type="int", default=262144),
            temp_dirs=dict(type="list", elements="str", default=list(TEMP_DIRS)),
            log_paths=dict(type="list", elements="str", default=[]),
            copy_paths=dict(type="list", elements="str", default=[]),
            journal_max_bytes=dict(type="int", default=64 << 20),
            max_bytes=dict(type="int", default=256 << 20),
            max_file_bytes=dict(type="int", default=32 << 20),
            baseline=dict(type="dict", default={}),
        ),
        required_if=[
            ("action", "store", ("dir", "host", "run_id")),
            ("action", "record", ("dir",)),
            ("action", "archive", ("dir", "host", "src", "item")),
            ("action", "summary", ("dir",)),
            ("action", "verify", ("dir",)),
        ],
        supports_check_mode=True,
    )
    params = module.params
    action = params["action"]
    operator = params["collected_by"] or default_operator()
    base = params["dir"]

    if action == "collect":
        result = collect(params)
        if module.check_mode:
            for item in result["collected"]:
                item.pop("content_b64")
        module.exit_json(changed=False, **result)

    if action == "store":
        module.exit_json(**store(module, params, operator))

    if action == "record":
        entries = [
            {
                "item": i["item"],
                "host": i.get("host") or params["host"] or "",
                "where": i.get("where", ""),
                "note": i.get("note", ""),
            }
            for i in params["items"]
        ]
        known = {r["item"] for r in read_chain(os.path.join(base, CHAIN_FILE))}
        entries = [e for e in entries if e["item"] not in known]
        for entry in entries:
            if not os.path.isfile(os.path.join(base, entry["item"])):
                module.fail_json(msg=f"cannot record {entry['item']}: no such file under {base}")
        if module.check_mode:
            module.exit_json(changed=bool(entries), records=entries, head=None)
        module.exit_json(**chain(module, base, entries, params, operator))

    if action == "archive":
        dest_rel = params["item"]
        dest = os.path.join(base, dest_rel)
        if not os.path.isdir(params["src"]):
            module.fail_json(msg=f"{params['host']}: {params['src']} is not a directory; nothing to archive")
        if module.check_mode:
            module.exit_json(changed=True, records=[{"item": dest_rel, "host": params["host"]}], head=None)
        if os.path.exists(dest):
            module.fail_json(msg=f"{dest} exists; evidence is never overwritten (new run_id)")
        for path in (os.path.dirname(os.path.dirname(dest)), os.path.dirname(dest)):
            os.makedirs(path, mode=0o700, exist_ok=True)
        stats = archive_tree(params["src"], dest, params["max_bytes"])
        note = f"{stats['files']} files, {stats['bytes_in']} bytes before compression"
        if stats["truncated"]:
            note += f"; {len(stats['truncated'])} left out (cap {params['max_bytes']} or unreadable)"
        result = chain(
            module,
            base,
            [{"item": dest_rel, "host": params["host"], "where": params["where"], "note": note}],
            params,
            operator,
        )
        module.exit_json(**result, archive=stats)

    if action == "summary":
        records = read_chain(os.path.join(base, CHAIN_FILE))
        summary = summarise(
            [{k: v for k, v in r.items() if k != "_line"} for r in records], params["hosts"], params["incident_id"]
        )
        if not module.check_mode:
            os.makedirs(base, mode=0o700, exist_ok=True)
            path = os.path.join(base, SUMMARY_FILE)
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=1, sort_keys=True, ensure_ascii=False)
                handle.write("\n")
            os.chmod(tmp, 0o400)
            os.replace(tmp, path)
        module.exit_json(
            changed=not module.check_mode, summary=summary, head=summary["chain"]["head"], text=summary_lines(summary)
        )

    # verify
    from ansible.module_utils.enp_custody import verify

    result = verify(base, params["expected_head"])
    msg = (
        f"chain of custody intact: {result['records']} records, {result['items']} items, {result['bytes']} bytes, "
        f"head {result['head']}"
        if result["ok"]
        else f"chain of custody BROKEN in {base}: " + "; ".join(result["problems"])
    )
    if not result["ok"] and params["fail_on_problems"]:
        module.fail_json(msg=msg, **result)
    module.exit_json(changed=False, msg=msg, **result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
