"""The benchmark: build the lab, give every host the estate's packages (and one of them a million small files),
then per host, one after the other: our capture cold and warm, AIDE init, our verify and AIDE check on the
unchanged host and after changing 1% of the files; tear down; print one table.

    sudo .venv/bin/python bench/baseline.py [--files 1000000] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hardening_compare import lab

from .parsing import (
    AIDE_ATTRIBUTES,
    AIDE_EVIDENCE,
    Row,
    aide_config,
    aide_exit_meaning,
    capture_statistics,
    evidence_of,
    manifest_stats,
    markers_in,
    parse_aide,
    render_table,
    report_summary,
    speed_ratio,
    task_seconds,
)

PROJECT = lab.PROJECT
SOURCE_INVENTORY = PROJECT / "bench" / "inventories" / "baseline"
SERVICES_PLAYBOOK = PROJECT / "bench" / "baseline" / "playbooks" / "services.yml"
ROLE_DEFAULTS = PROJECT / "roles" / "baseline" / "defaults" / "main.yml"
ROLE_VARS = PROJECT / "roles" / "baseline" / "vars" / "main.yml"
BRIDGE = "enp-bb"
SUBNET_PREFIX = "198.18.86."
HOST_PREFIX = "bb-"
HOSTS = {"full": "bb-full", "files": "bb-files"}
WORK_PARENT = Path("/var/tmp")  # noqa: S108 - mkdtemp below makes a private folder in it
BENCH_TREE = "/opt/enp-bench"  # inside /opt, which baseline_paths scans
AIDE_DIR = "/var/lib/enp-bench-aide"  # outside every scanned tree
DOWN_EXTRA = ["-e", "enp_lab_down_confirm=down"]
CAPTURE_TASK = "Record packages, file hashes and persistence points"
# The code under test; another session may edit it while the benchmark runs, which would mix two versions in one
# table: every row records whether it still ran the code the run started with.
CODE_FILES = (
    "plugins/module_utils/enp_baseline*.py",
    "plugins/modules/enp_baseline_*.py",
    "roles/baseline/**/*.yml",
    "playbooks/baseline_*.yml",
)
VERIFY_TASKS = ("Capture the live state", "Fetch the live manifest", "Compare with the signed baseline")

# On the host: N files of 1-4 KiB of random bytes, 1000 per folder (creation is not measured).
MAKE_FILES = r"""
import os, random, sys, time
root, count = sys.argv[1], int(sys.argv[2])
rnd = random.Random(6)
started = time.monotonic()
for i in range(count):
    folder = f"{root}/d{i // 1000:04d}"
    if i % 1000 == 0:
        os.makedirs(folder, exist_ok=True)
    with open(f"{folder}/f{i % 1000:03d}.dat", "wb") as handle:
        handle.write(rnd.randbytes(rnd.randint(1024, 4096)))
os.sync()
print(f"bench.created={count}")
print(f"bench.seconds={time.monotonic() - started:.1f}")
"""

# On the host: change `count` files. In the small-file tree: new random content of the same size. Elsewhere (the
# full host, whose files are the system's): a comment line appended to scripts and text files only (.py, .pm,
# .pl, .sh, .txt, ...), so every changed file is a real content change and the host keeps working.
CHANGE_FILES = r"""
import os, random, sys
mode, count, tree = sys.argv[1], int(sys.argv[2]), sys.argv[3]
paths = sys.argv[4:]
rnd = random.Random(1)
changed = 0
if mode == "tree":
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(tree) for f in names)
    for path in rnd.sample(files, min(count, len(files))):
        size = os.lstat(path).st_size
        with open(path, "wb") as handle:
            handle.write(rnd.randbytes(size))
        changed += 1
else:
    suffixes = (".py", ".pm", ".pl", ".sh", ".txt", ".md", ".rst", ".pod", ".html", ".css")
    candidates = []
    for top in paths:
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", ".ansible", ".cache")]
            for name in names:
                path = os.path.join(folder, name)
                if name.endswith(suffixes) and not os.path.islink(path) and os.path.isfile(path):
                    candidates.append(path)
    candidates.sort()
    for path in rnd.sample(candidates, min(count, len(candidates))):
        with open(path, "ab") as handle:
            handle.write(b"\n# enp-bench: changed\n")
        changed += 1
    print(f"bench.candidates={len(candidates)}")
os.sync()
print(f"bench.changed={changed}")
"""

# On the host: one AIDE run, timed on the host itself (SSH and sudo are not counted); the summary part of the
# output (AIDE prints it before the detailed list) and the line count of the whole output.
AIDE_RUN = """
mkdir -p {dir}
start=$(date +%s.%N)
aide --config {dir}/aide.conf {flag} > {dir}/{step}.out 2>&1
rc=$?
end=$(date +%s.%N)
echo "bench.rc=$rc"
echo "bench.start=$start"
echo "bench.end=$end"
echo "bench.lines=$(wc -l < {dir}/{step}.out)"
{after}
head -n 80 {dir}/{step}.out
"""


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    inventory: Path
    state_dir: Path
    addresses: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    skip_paths: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    aide_version: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    code_at_start: str = ""

    @property
    def env(self) -> dict[str, str]:
        return lab.ansible_env(self.state_dir, self.workdir)

    def ssh(self, host: str) -> lab.Ssh:
        return lab.Ssh(self.addresses[host], self.state_dir / "ssh" / "id_ed25519")


# ---------------------------------------------------------------- arguments and pre-flight


def hosts_arg(text: str) -> list[str]:
    chosen = [h.strip() for h in text.split(",") if h.strip()]
    if not chosen or any(h not in HOSTS for h in chosen):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(HOSTS)} (comma-separated)")
    return [h for h in HOSTS if h in chosen]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/baseline.py",
        description="Our baseline capture/verify against AIDE init/check on the same lab hosts, same run.",
    )
    parser.add_argument("--files", type=int, default=1_000_000, help="small files on bb-files (default 1,000,000)")
    parser.add_argument("--hosts", type=hosts_arg, default=list(HOSTS), help="full,files (default both)")
    parser.add_argument("--change-percent", type=float, default=1.0, help="share of files changed (default 1)")
    parser.add_argument(
        "--no-drop-caches",
        action="store_true",
        help="do not drop the page cache before the cold steps (then every step runs warm)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab up (prints how to remove it)")
    parser.add_argument(
        "--json", nargs="?", const="", default=None, metavar="PATH", help="also write JSON (default WORKDIR/...json)"
    )
    parser.add_argument("--workdir", type=Path, help="inventory, state, logs, reports (default /var/tmp/...)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per playbook or host command")
    parser.add_argument("--down-timeout", type=float, default=600, help="seconds for lab_down (default 600)")
    args = parser.parse_args(argv)
    if args.files < 0 or not 0 < args.change_percent <= 100:
        parser.error("--files must be >= 0 and --change-percent in (0, 100]")
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        print(
            "bench/baseline.py needs root: the lab creates bridges, overlay mounts and systemd-nspawn hosts.\n"
            "Run it as root, e.g. `sudo .venv/bin/python bench/baseline.py`.",
            file=sys.stderr,
        )
        sys.exit(3)
    if not (lab.VENV_BIN / "ansible-playbook").exists():
        print(f"{lab.VENV_BIN}/ansible-playbook is missing: run `make setup` first.", file=sys.stderr)
        sys.exit(3)
    stale = sorted(
        p.name for p in Path("/sys/class/net").iterdir() if p.name == BRIDGE or p.name.startswith(f"vb-{HOST_PREFIX}")
    )
    if stale:
        states = sorted(str(p) for p in WORK_PARENT.glob("enp-bench-baseline-*/state"))
        print(
            f"interfaces {', '.join(stale)} already exist: an earlier bench/baseline run (--keep?) is still up.\n"
            "Remove it with its own records, for each state folder below:\n"
            f"  ENP_LAB_DIR=STATE ANSIBLE_CONFIG={PROJECT}/ansible.cfg {lab.VENV_BIN}/ansible-playbook "
            "-i STATE/../inventory playbooks/lab_down.yml -e enp_lab_down_confirm=down\n  "
            + "\n  ".join(states or ["(none found under /var/tmp; look for the --workdir you gave)"]),
            file=sys.stderr,
        )
        sys.exit(3)


def role_settings() -> tuple[list[str], list[str], list[str]]:
    """(paths, skip paths, sections) exactly as roles/baseline passes them to enp_baseline_capture."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    internal = yaml.safe_load(ROLE_VARS.read_text())
    fact_file = internal["__baseline_fact_file"]
    skip = [*defaults["baseline_skip_paths"], defaults["baseline_manifest_dir"], fact_file]
    return list(defaults["baseline_paths"]), skip, list(defaults["baseline_sections"])


def write_inventory(directory: Path, roles: list[str]) -> dict[str, str]:
    shutil.copytree(SOURCE_INVENTORY / "group_vars", directory / "group_vars")
    data = yaml.safe_load((SOURCE_INVENTORY / "hosts.yml").read_text())
    group = data["all"]["children"]["estate"]
    group["hosts"] = {name: hv for name, hv in group["hosts"].items() if hv.get("bb_role") in roles}
    header = "---\n# Written by bench/baseline.py from bench/inventories/baseline (this run's hosts).\n"
    (directory / "hosts.yml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return {name: hv["ansible_host"] for name, hv in group["hosts"].items()}


def code_fingerprint() -> str:
    """sha256 over the baseline code (CODE_FILES): names and contents."""
    digest = hashlib.sha256()
    for pattern in CODE_FILES:
        for path in sorted(PROJECT.glob(pattern)):
            if path.is_file():
                digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def check_code(ctx: Context, row: Row) -> Row:
    """Mark a row measured with other code than the run started with (and say so once)."""
    now = code_fingerprint()
    if now != ctx.code_at_start:
        row.note += f"; CODE CHANGED during the run ({ctx.code_at_start} -> {now}): not comparable with earlier rows"
        message = (
            f"the baseline code changed during the run ({ctx.code_at_start} -> {now}; someone edited "
            f"{', '.join(CODE_FILES)}): rows from {row.host} {row.tool} {row.step} on ran other code; rerun"
        )
        if not any(n.startswith("the baseline code changed") for n in ctx.notes):
            ctx.notes.append(message)
    return row


# ---------------------------------------------------------------- steps


def phase(text: str) -> None:
    print(f"\n== {text}", flush=True)


def drop_caches(ctx: Context) -> str:
    """The page cache is the kernel's, shared by every container: dropping it on the controller makes the next
    step read from disk. Returns the cache label of the step."""
    if ctx.args.no_drop_caches:
        return "warm"
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    return "cold"


def host_run(ctx: Context, host: str, script: str, stdin: str = "", label: str = "") -> lab.Completed:
    started = time.monotonic()
    result = ctx.ssh(host).run(script, root=True, stdin=stdin, timeout=ctx.args.timeout)
    if result.rc != 0:
        ctx.errors.append(f"{host} {label}: rc={result.rc}: {(result.stderr or result.stdout).strip()[-300:]}")
    if label:
        print(f"   {host}: {label} in {time.monotonic() - started:.1f}s (rc={result.rc})", flush=True)
    return result


def read_tail(path: Path, size: int = 65536) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        return handle.read().decode("utf-8", errors="replace")


def playbook(ctx: Context, name: str, host: str, label: str, extra: list[str]) -> lab.PlaybookRun:
    log = ctx.workdir / f"{host}-{label.replace(' ', '-').replace('%', 'pct')}.log"
    run = lab.run_playbook(
        PROJECT / "playbooks" / name, ctx.inventory, ctx.env, log, ctx.args.timeout, f"{host} {label}", extra
    )
    if run.rc != 0:
        ctx.errors.append(f"{host} {label}: ansible-playbook rc={run.rc} (log {log})")
    return run


def our_capture(ctx: Context, host: str, step: str, cache: str) -> Row:
    extra = ["-e", f"enp_baseline_hosts={host}", "-e", "enp_baseline_replace=true"]
    run = playbook(ctx, "baseline_capture.yml", host, step, extra)
    stored = ctx.state_dir / "baseline" / "store" / f"{host}.json"
    # The play's Statistics line: the stored manifest keeps the stats of the capture that wrote it (an unchanged
    # host keeps its file), so a warm capture's numbers are only in the output.
    stats = capture_statistics(run.output) or (manifest_stats(read_tail(stored)) if stored.exists() else {})
    row = Row(
        host=host,
        files=stats.get("files"),
        tool="ours",
        step=step,
        seconds=task_seconds(run.output, CAPTURE_TASK),
        e2e_seconds=round(run.seconds, 1),
        cache=cache,
        hashed=stats.get("hashed"),
        pair="init " + cache,
        evidence=evidence_of(stats, ctx.sections),
    )
    fetch = task_seconds(run.output, "Fetch the manifest to the controller")
    sign = task_seconds(run.output, "Sign the manifest")
    size = stored.stat().st_size if stored.exists() else 0
    row.note = (
        f"module {stats.get('seconds', '?')}s collecting (stats.seconds), task {row.seconds}s with writing; "
        f"fetch {fetch}s, sign {sign}s; manifest {size / 1e6:.1f} MB; reused {stats.get('reused')}"
    )
    ctx.details[f"{host} ours {step}"] = {"stats": stats, "fetch_s": fetch, "sign_s": sign, "manifest_bytes": size}
    print(f"   {host}: ours {step}: {row.seconds}s ({row.note}); playbook {run.seconds:.1f}s", flush=True)
    return row


def our_verify(ctx: Context, host: str, step: str, pair: str) -> Row:
    reports = ctx.workdir / "reports" / f"{host}-{step.replace(' ', '-').replace('%', 'pct')}"
    extra = [
        "-e",
        f"enp_baseline_hosts={host}",
        "-e",
        "enp_baseline_fail_on_findings=false",
        "-e",
        f"enp_baseline_report_dir={reports}",
    ]
    run = playbook(ctx, "baseline_verify.yml", host, step, extra)
    live = reports / f"{host}.live.json"
    stats = manifest_stats(read_tail(live)) if live.exists() else {}
    report_path = reports / f"{host}.json"
    found, by_kind = None, {}
    if report_path.exists():
        found, by_kind = report_summary(json.loads(report_path.read_text()))
    parts = {task: task_seconds(run.output, task) for task in VERIFY_TASKS}
    seconds = round(sum(v for v in parts.values() if v is not None), 2) if any(parts.values()) else None
    row = Row(
        host=host,
        files=stats.get("files"),
        tool="ours",
        step=step,
        seconds=seconds,
        e2e_seconds=round(run.seconds, 1),
        cache="warm",
        found=found,
        hashed=stats.get("hashed"),
        pair=pair,
        evidence=evidence_of(stats, ctx.sections),
    )
    split = ", ".join(f"{k.split()[-1] if k != VERIFY_TASKS[0] else 'capture'} {v}s" for k, v in parts.items())
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    row.note = f"{split}; findings by kind: {kinds or 'none'}"
    ctx.details[f"{host} ours {step}"] = {"stats": stats, "tasks": parts, "findings": found, "by_kind": by_kind}
    print(f"   {host}: ours {step}: {row.seconds}s ({row.note}); playbook {run.seconds:.1f}s", flush=True)
    return row


def aide(ctx: Context, host: str, step: str, cache: str) -> Row:
    init = step.startswith("init")
    after = f"mv -f {AIDE_DIR}/aide.db.new.gz {AIDE_DIR}/aide.db.gz" if init else ""
    script = AIDE_RUN.format(
        dir=AIDE_DIR, flag="--init" if init else "--check", step=step.replace(" ", "-").replace("%", "pct"), after=after
    )
    started = time.monotonic()
    result = ctx.ssh(host).run(script, root=True, timeout=ctx.args.timeout)
    e2e = time.monotonic() - started
    found = markers_in(result.stdout)
    parsed = parse_aide(result.stdout)
    rc = int(found["rc"]) if found.get("rc", "").lstrip("-").isdigit() else None
    seconds = None
    if "start" in found and "end" in found:
        seconds = round(float(found["end"]) - float(found["start"]), 2)
    meaning = aide_exit_meaning(rc, check=not init)
    bad = rc is None or (init and rc != 0) or (not init and rc not in range(8))
    if bad:
        ctx.errors.append(f"{host} AIDE {step}: rc={rc} ({meaning}): {'; '.join(parsed.errors)[:300]}")
    row = Row(
        host=host,
        files=parsed.entries,
        tool="AIDE",
        step=step,
        seconds=seconds,
        e2e_seconds=round(e2e, 1),
        cache=cache,
        found=None if init else parsed.found,
        hashed=None,
        evidence=list(AIDE_EVIDENCE),
        note=f"rc={rc} ({meaning}); output {found.get('lines', '?')} lines",
    )
    if not init:
        row.note += f"; added {parsed.added}, removed {parsed.removed}, changed {parsed.changed}"
    ctx.details[f"{host} AIDE {step}"] = {"rc": rc, "meaning": meaning, "summary": asdict(parsed)}
    print(f"   {host}: AIDE {step}: {seconds}s, {parsed.entries} entries ({row.note})", flush=True)
    return row


def measure_host(ctx: Context, host: str) -> None:
    rows = ctx.rows
    phase(f"{host}: ours capture cold, warm; AIDE init cold, warm; verify/check unchanged, then 1% changed")
    config = aide_config(ctx.paths, ctx.skip_paths, AIDE_DIR)
    host_run(ctx, host, f"mkdir -p {AIDE_DIR} && cat > {AIDE_DIR}/aide.conf", stdin=config, label="AIDE config")
    check = host_run(ctx, host, f"aide --config {AIDE_DIR}/aide.conf --config-check && echo bench.config=ok")
    if "bench.config=ok" not in check.stdout:
        ctx.errors.append(f"{host}: AIDE rejects the configuration: {(check.stderr or check.stdout).strip()[:300]}")
    if not ctx.aide_version:
        version = host_run(ctx, host, "aide --version 2>&1 | head -n 1")
        ctx.aide_version = version.stdout.strip()

    rows.append(check_code(ctx, our_capture(ctx, host, "capture cold", drop_caches(ctx))))
    rows.append(check_code(ctx, our_capture(ctx, host, "capture warm", "warm")))
    rows.append(aide(ctx, host, "init " + drop_caches(ctx), "cold" if not ctx.args.no_drop_caches else "warm"))
    if not ctx.args.no_drop_caches:
        rows.append(aide(ctx, host, "init warm", "warm"))
    rows.append(check_code(ctx, our_verify(ctx, host, "verify unchanged", "check unchanged")))
    rows.append(aide(ctx, host, "check unchanged", "warm"))

    files = next((r.files for r in rows if r.host == host and r.step == "capture warm" and r.files), 0) or 0
    count = max(1, round(files * ctx.args.change_percent / 100))
    mode = "tree" if host == HOSTS["files"] and ctx.args.files > 0 else "system"
    args = [mode, str(count), BENCH_TREE, *ctx.paths]
    result = host_run(
        ctx, host, "python3 - " + shlex.join(args), stdin=CHANGE_FILES, label=f"change {count} files ({mode})"
    )
    changed = markers_in(result.stdout)
    ctx.details[f"{host} change"] = changed
    pct = f"{ctx.args.change_percent:g}%"
    if changed.get("changed") and int(changed["changed"]) < count:
        ctx.notes.append(f"{host}: only {changed['changed']} files could be changed ({changed.get('candidates')})")
    rows.append(check_code(ctx, our_verify(ctx, host, f"verify {pct} changed", f"check {pct} changed")))
    rows.append(aide(ctx, host, f"check {pct} changed", "warm"))
    for row in rows:
        if row.host == host and row.step.endswith(f"{pct} changed"):
            row.note += f"; {changed.get('changed', '?')} files changed"


def make_files(ctx: Context, host: str) -> None:
    if ctx.args.files <= 0:
        return
    phase(f"{host}: {ctx.args.files:,} small files (1-4 KiB random) under {BENCH_TREE} - not measured")
    result = host_run(
        ctx,
        host,
        "python3 - " + shlex.join([BENCH_TREE, str(ctx.args.files)]),
        stdin=MAKE_FILES,
        label="create files",
    )
    found = markers_in(result.stdout)
    ctx.timings[f"{host}_create_files_s"] = float(found.get("seconds", "nan"))


def run_lab(ctx: Context, roles: list[str]) -> None:
    env = ctx.env
    hosts = [HOSTS[r] for r in roles]
    phase(f"lab up: {', '.join(hosts)} on {BRIDGE} (198.18.86.0/24), the signed mirror, apt_baseline")
    up = lab.run_playbook("playbooks/lab_up.yml", ctx.inventory, env, ctx.workdir / "lab_up.log", ctx.args.timeout,
                          "lab_up")  # fmt: skip
    ctx.timings["lab_up_s"] = round(up.seconds, 1)
    if up.rc != 0:
        ctx.errors.append(f"lab_up failed rc={up.rc} (log {up.log})")
        return
    phase("estate packages on every host: nginx, postgresql, nftables, aide (from the mirror)")
    services = lab.run_playbook(
        SERVICES_PLAYBOOK, ctx.inventory, env, ctx.workdir / "services.log", ctx.args.timeout, "services"
    )
    ctx.timings["services_s"] = round(services.seconds, 1)
    if services.rc != 0:
        ctx.errors.append(f"services playbook failed rc={services.rc} (log {services.log})")
        return
    if "files" in roles:
        started = time.monotonic()
        make_files(ctx, HOSTS["files"])
        ctx.timings["create_files_wall_s"] = round(time.monotonic() - started, 1)
    for role in roles:
        started = time.monotonic()
        measure_host(ctx, HOSTS[role])
        ctx.timings[f"{HOSTS[role]}_measure_s"] = round(time.monotonic() - started, 1)


# ---------------------------------------------------------------- teardown and leftovers


def leftovers(before: dict[str, list[str]], markers: list[str]) -> dict[str, list[str]]:
    sys.path.insert(0, str(PROJECT / "tests" / "integration"))
    from labstate import diff, snapshot

    ours: dict[str, list[str]] = {}
    for key, change in diff(before, snapshot(), markers).items():
        if key != "inotify" and change["left_behind"]:
            ours[key] = change["left_behind"]
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/enp-lab/{HOST_PREFIX}*"))
    if cgroups:
        ours["cgroups"] = cgroups
    tcp = subprocess.run(["ss", "-tnH"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    sessions = [ln.split()[4] for ln in tcp.splitlines() if len(ln.split()) > 4 and SUBNET_PREFIX in ln.split()[4]]
    if sessions:
        ours["tcp_sessions"] = sessions
    overlays = sorted(str(p) for p in (Path(markers[0]) / "hosts").glob("*/upper"))
    if overlays:
        ours["overlay_dirs"] = overlays
    return ours


def teardown(ctx: Context, before: dict[str, list[str]]) -> dict[str, Any]:
    down_cmd = (
        f"ENP_LAB_DIR={ctx.state_dir} ANSIBLE_CONFIG={PROJECT}/ansible.cfg {lab.VENV_BIN}/ansible-playbook "
        f"-i {ctx.inventory} playbooks/lab_down.yml -e enp_lab_down_confirm=down   (cwd {PROJECT})"
    )
    if ctx.args.keep:
        print(f"\n== --keep: the lab stays up; remove it with:\n   {down_cmd}", flush=True)
        return {"kept": True, "down_command": down_cmd}
    phase("lab down (always; Ctrl-C is ignored until it is done)")
    with lab.interrupts_deferred():
        down = lab.run_playbook(
            "playbooks/lab_down.yml",
            ctx.inventory,
            ctx.env,
            ctx.workdir / "lab_down.log",
            ctx.args.down_timeout,
            "lab_down",
            DOWN_EXTRA,
        )
        down_seconds = down.seconds
        if down.rc != 0:
            # Seen once after Ctrl-C: a host process in heavy I/O (AIDE on a million files) outlived the host's
            # shutdown and lab_down found its cgroup busy. It dies soon after; retry once from the records.
            print("   ! lab_down failed; retrying once in 30 s (a host process may still be exiting)", flush=True)
            time.sleep(30)
            down = lab.run_playbook(
                "playbooks/lab_down.yml",
                ctx.inventory,
                ctx.env,
                ctx.workdir / "lab_down-retry.log",
                ctx.args.down_timeout,
                "lab_down (retry)",
                DOWN_EXTRA,
            )
            down_seconds += 30 + down.seconds
        ctx.timings["lab_down_s"] = round(down_seconds, 1)
        table = lab.enp_lab_utils().isolation_table_name(str(ctx.state_dir))
        markers = [str(ctx.state_dir), str(ctx.workdir), SUBNET_PREFIX, BRIDGE, f"vb-{HOST_PREFIX}", table,
                   *HOSTS.values()]  # fmt: skip
        left = leftovers(before, markers)
    outcome: dict[str, Any] = {"down_rc": down.rc, "leftovers": left}
    if down.rc != 0 or left:
        print(f"   ! teardown incomplete (rc={down.rc}); retry with:\n     {down_cmd}", flush=True)
        outcome["down_command"] = down_cmd
    return outcome


# ---------------------------------------------------------------- report


def comparisons(rows: list[Row]) -> list[str]:
    lines = []
    aide_rows = {(r.host, r.step): r for r in rows if r.tool == "AIDE"}
    for r in rows:
        if r.tool != "ours" or not r.pair:
            continue
        other = aide_rows.get((r.host, r.pair))
        ratio = speed_ratio(r, other) if other else None
        if ratio is None or other is None:
            continue
        verdict = "faster" if ratio >= 1 else "SLOWER"
        lines.append(
            f"{r.host}: ours {r.step} {r.seconds:.1f}s vs AIDE {r.pair} {other.seconds:.1f}s: "
            f"{ratio:.2f}x AIDE's files/s ({verdict}); e2e incl. Ansible/SSH/fetch/sign {r.e2e_seconds:.1f}s"
        )
    return lines


def print_report(ctx: Context, total: float) -> list[str]:
    print(
        "\n== Baseline capture/verify (roles/baseline, enp_baseline_capture) vs "
        f"{ctx.aide_version or 'AIDE'} on the same lab hosts, same run =="
    )
    print(render_table(ctx.rows))
    print()
    for row in ctx.rows:
        if row.note:
            print(f"  {row.host} {row.tool} {row.step}: {row.note}")
    print()
    lines = comparisons(ctx.rows)
    for line in lines:
        print(line)
    ours_kinds = sorted({k for r in ctx.rows if r.tool == "ours" for k in r.evidence})
    print(f"evidence: ours {len(ours_kinds)} kinds ({', '.join(ours_kinds)}); AIDE 1 kind (files)")
    print(
        f"paths (both tools): {' '.join(ctx.paths)}; skipped: {' '.join(ctx.skip_paths)}; AIDE attributes "
        f"{AIDE_ATTRIBUTES} (ours: type, mode, uid, gid, size, sha256, link target; mtime/inode/ctime key its cache)"
    )
    cold = "dropped on the controller (sync; echo 3 > /proc/sys/vm/drop_caches) before each cold step"
    print(f"page cache: {'not dropped: every step ran warm' if ctx.args.no_drop_caches else cold}")
    print(
        "columns: s = the tool's own work (ours: the capture task / live capture + fetch + compare tasks from "
        "profile_tasks; AIDE: aide timed on the host); e2e s = the playbook / the SSH command; read = files whose "
        "content was hashed (ours; the rest came from the hash cache); found = findings (ours, after the role's "
        "noise rules) / AIDE added+removed+changed entries; ours/AIDE = files/s ratio (>1: ours faster)"
    )
    for note in ctx.notes:
        print(f"note: {note}")
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in ctx.timings.items())
    print(f"timings: {timing}")
    print(f"wall time of the whole bench: {total:.0f}s ({total / 60:.1f} min)")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores: above ~1.5 means noise)")
    for error in ctx.errors:
        print(f"error: {error}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="enp-bench-baseline-", dir=WORK_PARENT))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, workdir, workdir / "inventory", workdir / "state")
    ctx.paths, ctx.skip_paths, ctx.sections = role_settings()
    ctx.code_at_start = code_fingerprint()
    print(
        f"bench/baseline: hosts {', '.join(HOSTS[h] for h in args.hosts)}; {args.files:,} small files on "
        f"{HOSTS['files']}; work folder {workdir}; load average {os.getloadavg()[0]:.2f}; baseline code "
        f"{ctx.code_at_start}",
        flush=True,
    )
    signal.signal(signal.SIGINT, lab.raise_interrupted)
    signal.signal(signal.SIGTERM, lab.raise_interrupted)
    started = time.monotonic()
    interrupted = False
    outcome: dict[str, Any] = {}
    before = lab.snapshot()
    try:
        ctx.addresses = write_inventory(ctx.inventory, args.hosts)
        run_lab(ctx, args.hosts)
    except lab.Interrupted as exc:
        interrupted = True
        print(f"\ninterrupted ({exc}): tearing down; partial results follow", flush=True)
    except Exception as exc:  # a harness bug still tears down and reports what was measured
        ctx.errors.append(f"harness error: {exc!r}")
        traceback.print_exc()
    finally:
        if ctx.inventory.exists():
            outcome = teardown(ctx, before)
    total = time.monotonic() - started
    lines = print_report(ctx, total)
    left = outcome.get("leftovers")
    if not outcome.get("kept"):
        print("leftovers: none" if not left else f"leftovers: {left}")
    if args.json is not None:
        path = Path(args.json) if args.json else workdir / "baseline.json"
        payload = {
            "benchmark": "bench/baseline.py",
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
            "aide": {"version": ctx.aide_version, "attributes": AIDE_ATTRIBUTES},
            "baseline_code": {"at_start": ctx.code_at_start, "at_end": code_fingerprint(), "files": CODE_FILES},
            "paths": ctx.paths,
            "skip_paths": ctx.skip_paths,
            "page_cache_dropped": not args.no_drop_caches,
            "rows": [asdict(r) | {"files_per_second": r.files_per_second} for r in ctx.rows],
            "comparisons": lines,
            "details": ctx.details,
            "timings": ctx.timings,
            "total_seconds": round(total, 1),
            "interrupted": interrupted,
            "errors": ctx.errors,
            "teardown": outcome,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"json: {path}")
    print(f"logs: {workdir}/*.log, reports: {workdir}/reports/")
    if interrupted:
        return 130
    clean = outcome.get("kept") or (outcome.get("down_rc") == 0 and not left)
    return 0 if clean and not ctx.errors and ctx.rows else 1
