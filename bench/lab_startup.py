#!/usr/bin/env python3
"""Benchmark for "Foundation": how fast does the lab bring up 1, 10 and 30 Debian hosts?

Drives the real code path (`ansible-playbook playbooks/lab_up.yml`, then `lab_down.yml`) on a
throwaway inventory per size, with its own state folder (ENP_LAB_DIR), its own bridges
(enp-bn-a, enp-bn-b) and addresses (198.18.100.0/24, 198.18.101.0/24) and host names (bn-hNN),
so it never touches inventories/lab, molecule or the integration tests.

Measures, per run:
- lab-up wall time until the playbook returns (it waits for SSH on every host and logs in with sudo);
- the split: profile_tasks timings per phase, and our own watcher's first host boot -> last SSH banner;
- memory per host from each host's memory cgroup, after the lab has been idle for --settle seconds;
- teardown wall time, and a before/after leftover check (tests/integration/labstate.py).

COLD runs point ENP_CACHE_DIR at a fresh folder, so debootstrap builds the golden image; WARM runs use
the normal cache. Two scopes, always named in the table:
- hosts: `-e lab_mirror_enabled=false --skip-tags apt_baseline`: image, bridges, boot, SSH, sudo login only;
- full:  the default lab_up: the above plus the signed baseline mirror (built from the .deb cache in
         ENP_CACHE_DIR and served on each bridge) and the apt_baseline role on every host.

    sudo .venv/bin/python bench/lab_startup.py            # hosts: 1 cold, 1/10/30 warm; full: 1/10 warm
    sudo .venv/bin/python bench/lab_startup.py --sizes 10 --cold-sizes '' --full-sizes '' --json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

PROJECT = Path(__file__).resolve().parents[1]
VENV_BIN = PROJECT / ".venv" / "bin"
sys.path.insert(0, str(PROJECT / "tests" / "integration"))
from labstate import diff, snapshot  # noqa: E402

TARGET_HOSTS = 10
TARGET_SECONDS = 60.0
ZONES = {  # zone -> (bridge, subnet prefix); far from inventories/lab (1-4), tests (60-61), molecule (250)
    "bn_a": ("enp-bn-a", "198.18.100"),
    "bn_b": ("enp-bn-b", "198.18.101"),
}
HOST_PREFIX = "bn-h"
# lab_down.yml asks for a typed confirmation (a destructive playbook); the benchmark only destroys its own lab.
DOWN_EXTRA = ["-e", "enp_lab_down_confirm=down"]
# Work folders on disk (like the real image cache), not on a tmpfs /tmp.
WORK_PARENT = Path("/var/tmp")  # noqa: S108 - mkdtemp below makes a private folder in it
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = {  # profile_tasks task-name fragment -> phase
    "Lab | Image |": "image",
    "Lab | Mirror |": "mirror",
    "Lab | Hosts | Boot every host": "boot",
    "Lab | Hosts | Wait for SSH": "wait_ssh",
    "Lab | Log in": "login",
    "Apt baseline |": "apt_baseline",
    "Lab | Teardown | Close SSH control": "ssh_close",
    "Lab | Teardown | Stop and delete every host": "stop_hosts",
    "Lab | Teardown | Stop controller-side services": "services",
}
# What each scope passes to lab_up.yml (see the module docstring).
SCOPES = {
    "hosts": ["-e", "lab_mirror_enabled=false", "--skip-tags", "apt_baseline"],
    "full": [],
}


INTERRUPTED = "interrupted (Ctrl-C or SIGTERM); torn down"


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop the current playbook, tear down, report what we have."""


# ---------------------------------------------------------------- inventory


@dataclass
class Host:
    name: str
    zone: str
    address: str
    gateway: bool = False


def plan_hosts(size: int) -> list[Host]:
    """1 host: one zone. More: two zones like inventories/lab, with a zone gateway as the last host."""
    if size == 1:
        return [Host(f"{HOST_PREFIX}01", "bn_a", f"{ZONES['bn_a'][1]}.11")]
    hosts = []
    for index in range(size - 1):
        zone = "bn_a" if index % 2 == 0 else "bn_b"
        hosts.append(Host(f"{HOST_PREFIX}{index + 1:02d}", zone, f"{ZONES[zone][1]}.{11 + index // 2}"))
    hosts.append(Host(f"{HOST_PREFIX}{size:02d}", "bn_a", f"{ZONES['bn_a'][1]}.254", gateway=True))
    return hosts


def write_inventory(directory: Path, hosts: list[Host]) -> None:
    """Same layout as inventories/lab: hosts.yml, group_vars/all/zones.yml, one group_vars file per zone group,
    gateways.yml, and group_vars/estate/ copied from inventories/lab (connection and mirror settings)."""
    zones_used = sorted({h.zone for h in hosts} | ({"bn_b"} if any(h.gateway for h in hosts) else set()))
    group_vars = directory / "group_vars"
    (group_vars / "all").mkdir(parents=True)
    shutil.copytree(PROJECT / "inventories" / "lab" / "group_vars" / "estate", group_vars / "estate")
    zones = [
        "---",
        "# Written by bench/lab_startup.py: benchmark zones, clear of inventories/lab, tests and molecule.",
        "enp_zones:",
    ]
    inventory = ["---", "# Written by bench/lab_startup.py.", "all:", "  children:", "    estate:", "      children:"]
    for zone in zones_used:
        bridge, prefix = ZONES[zone]
        zones += [
            f"  {zone}:",
            f"    description: lab_startup benchmark zone {zone}",
            f"    subnet: {prefix}.0/24",
            f"    gateway: {prefix}.254",
            f"    lab_bridge: {bridge}",
            f"    lab_controller: {prefix}.1",
        ]
        (group_vars / f"{zone}.yml").write_text(f"---\nenp_zone: {zone}\n")
        members = [h for h in hosts if h.zone == zone and not h.gateway]
        inventory += [f"        {zone}:"] + (["          hosts:"] if members else [])
        inventory += [f"            {h.name}: {{ansible_host: {h.address}}}" for h in members]
    gateways = [h for h in hosts if h.gateway]
    if gateways:
        (group_vars / "gateways.yml").write_text("---\nenp_zone: bn_a\nenp_gateway_host: true\n")
        inventory += ["        gateways:", "          hosts:"]
        inventory += [f"            {h.name}: {{ansible_host: {h.address}}}" for h in gateways]
    (group_vars / "all" / "zones.yml").write_text("\n".join(zones) + "\n")
    (directory / "hosts.yml").write_text("\n".join(inventory) + "\n")


# ---------------------------------------------------------------- measurement helpers


def boottime() -> float:
    """Seconds since boot on the same clock as /proc/PID/stat start times."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def ssh_banner(address: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


class BootWatcher:
    """Per host: when its nspawn started (from host.json) and when sshd first sent its banner."""

    def __init__(self, state_dir: Path, hosts: list[Host]) -> None:
        self.state_dir = state_dir
        self.launched: dict[str, float] = {}
        self.mem_at_first_boot: int | None = None  # MemAvailable when the first host started
        self.answered: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, args=(h,), daemon=True) for h in hosts]

    def __enter__(self) -> BootWatcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)

    def _watch(self, host: Host) -> None:
        record = self.state_dir / "hosts" / host.name / "host.json"
        while not self._stop.is_set():
            if host.name not in self.launched:
                with contextlib.suppress(OSError, ValueError):
                    start = json.loads(record.read_text()).get("start_time")
                    if start:
                        self.launched[host.name] = start / CLK_TCK
                        with self._lock:
                            if self.mem_at_first_boot is None:
                                self.mem_at_first_boot = mem_available()
                if host.name not in self.launched:
                    self._stop.wait(0.1)
                    continue
            if ssh_banner(host.address):
                self.answered[host.name] = boottime()
                return
            self._stop.wait(0.1)


def mem_available() -> int:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def cgroup_memory(cgroup_dirs: list[str]) -> tuple[int | None, int | None]:
    """(usage incl. page cache and kernel memory, anonymous RSS) of one host's memory cgroup."""
    for path in map(Path, cgroup_dirs):
        for usage_leaf, rss_key in (("memory.usage_in_bytes", "total_rss"), ("memory.current", "anon")):
            if (path / usage_leaf).exists():
                usage = int((path / usage_leaf).read_text().split()[0])
                stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
                return usage, int(stat[rss_key]) if rss_key in stat else None
    return None, None


def parse_profile(output: str) -> dict[str, float]:
    """Seconds per task from ansible.posix.profile_tasks' TASKS RECAP (task name -> seconds)."""
    _, _, recap = output.partition("TASKS RECAP")
    timings: dict[str, float] = {}
    for line in recap.splitlines():
        match = re.match(r"^(.+?) -+ (\d+\.\d+)s$", line.strip())
        if match:
            timings[match.group(1)] = timings.get(match.group(1), 0.0) + float(match.group(2))
    return timings


def phases_of(timings: dict[str, float]) -> dict[str, float]:
    phases: dict[str, float] = {}
    for task, seconds in timings.items():
        phase = next((p for fragment, p in PHASES.items() if fragment in task), "other")
        phases[phase] = round(phases.get(phase, 0.0) + seconds, 2)
    return phases


def task_statuses(output: str) -> dict[str, set[str]]:
    """Task name -> statuses seen (ok, changed, skipping, failed, ...), from the default callback."""
    statuses: dict[str, set[str]] = {}
    current = ""
    for line in output.splitlines():
        task = re.match(r"^TASK \[(.+)\] \*+", line)
        if task:
            current = task.group(1)
            statuses.setdefault(current, set())
            continue
        status = re.match(r"^(ok|changed|skipping|failed|fatal|included):", line)
        if status and current:
            statuses[current].add(status.group(1))
    return statuses


def statuses_for(statuses: dict[str, set[str]], fragment: str) -> set[str]:
    return set().union(*[s for task, s in statuses.items() if fragment in task])


def failure_excerpt(output: str, lines: int = 25) -> str:
    interesting = [ln for ln in output.splitlines() if re.match(r"^\s*(fatal|failed|msg|ERROR|\[ERROR\])", ln)]
    return "\n".join((interesting or output.splitlines())[-lines:])


# ---------------------------------------------------------------- running playbooks


@dataclass
class PlaybookRun:
    rc: int | None  # None: timed out or interrupted
    seconds: float
    output: str
    log: Path


def run_playbook(
    playbook: str, inventory: Path, env: dict[str, str], log: Path, timeout: float, extra: list[str], label: str
) -> PlaybookRun:
    """ansible-playbook in its own session (Ctrl-C reaches us, not it), output to a log, progress on stdout."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}", *extra]
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as sink:
        sink.write("$ " + " ".join(cmd) + "\n")
        sink.flush()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv: the venv's ansible-playbook and our own paths
            cmd,
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    rc: int | None = None
    shown = 0
    try:
        while rc is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=0.5)
            shown = show_progress(log, shown, label, started)
            if rc is None and time.monotonic() - started > timeout:
                print(f"      ! {label}: no result after {timeout:.0f}s, stopping it", flush=True)
                stop_group(proc)
                break
    except Interrupted:
        print(f"\n      ! interrupted during {label}: stopping ansible-playbook (PID {proc.pid})", flush=True)
        stop_group(proc)
        raise
    return PlaybookRun(rc, time.monotonic() - started, log.read_text(errors="replace"), log)


def show_progress(log: Path, shown: int, label: str, started: float) -> int:
    tasks = re.findall(r"^TASK \[(?:lab : )?(.+?)\] \*+", log.read_text(errors="replace"), re.MULTILINE)
    for name in tasks[shown:]:
        print(f"      {time.monotonic() - started:6.1f}s  {label}: {name}", flush=True)
    return len(tasks)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """INT, then KILL, the process group of the ansible-playbook we started (its own session)."""
    with interrupts_deferred():
        for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
                return


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Teardown must finish: ignore Ctrl-C/TERM while it runs (it is bounded by --down-timeout)."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# ---------------------------------------------------------------- one benchmark run


@dataclass
class RunResult:
    label: str
    size: int
    cache: str  # cold | warm
    scope: str  # hosts | full (SCOPES)
    includes: str
    ok: bool = False
    error: str = ""
    up_s: float | None = None
    per_host_s: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    down_phases: dict[str, float] = field(default_factory=dict)
    image_built: bool | None = None
    mirror_statuses: list[str] = field(default_factory=list)
    first_boot_to_last_ssh_s: float | None = None
    boot_to_ssh_p50_s: float | None = None
    boot_to_ssh_max_s: float | None = None
    before_first_boot_s: float | None = None
    after_last_ssh_s: float | None = None
    ssh_answering: int = 0
    mem_mean_mib: float | None = None
    mem_max_mib: float | None = None
    rss_mean_mib: float | None = None
    sys_delta_per_host_mib: float | None = None
    down_s: float | None = None
    down_ok: bool = False
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    unrelated_changes: dict[str, list[str]] = field(default_factory=dict)
    loadavg_before: float | None = None
    logs: list[str] = field(default_factory=list)


def our_markers(run_dir: Path, hosts: list[Host], cache_dir: Path | None) -> list[str]:
    markers = [HOST_PREFIX, *[bridge for bridge, _ in ZONES.values()], *[f"{p}." for _, p in ZONES.values()]]
    markers += [str(run_dir)] + ([str(cache_dir)] if cache_dir else [])
    # Host side of the gateway's extra veths (enp_lab.extra_veth_name): vx<sha1(name)[:6]>-N.
    markers += [f"vx{hashlib.sha1(h.name.encode()).hexdigest()[:6]}-" for h in hosts if h.gateway]  # noqa: S324 - a name, not security
    return markers


def leftover_check(
    before: dict[str, list[str]], markers: list[str], workdir: Path
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(ours, unrelated): what appeared during the run, split by whether it carries one of our markers."""
    ours: dict[str, list[str]] = {}
    unrelated: dict[str, list[str]] = {}
    for key, change in diff(before, snapshot()).items():
        for item in change["left_behind"]:
            target = ours if any(m in item for m in markers) else unrelated
            target.setdefault(key, []).append(item)
    # Things labstate does not look at, or cannot attribute: our cgroup dirs and TCP sessions to our subnets.
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/enp-lab/{HOST_PREFIX}*"))
    if cgroups:
        ours["cgroups"] = ours.get("cgroups", []) + cgroups
    with open("/proc/mounts", encoding="utf-8") as handle:
        mounts = [line.split()[1] for line in handle if line.split()[1].startswith(str(workdir))]
    if mounts:
        ours["mounts"] = sorted(set(ours.get("mounts", []) + mounts))
    tcp = subprocess.run(["ss", "-tnH"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    peers = [ln.split()[4] for ln in tcp.splitlines() if len(ln.split()) > 4]
    sessions = [peer for peer in peers if any(peer.startswith(f"{p}.") for _, p in ZONES.values())]
    if sessions:
        ours["tcp_sessions"] = sessions
    return ours, unrelated


def run_once(
    args: argparse.Namespace, workdir: Path, size: int, cache: str, scope: str, warm_cache_env: str | None
) -> RunResult:
    label = f"{size} host{'s' if size > 1 else ''}, {cache} cache, {scope}"
    includes = "lab_up: preflight, limits, " + (
        "debootstrap of the golden image" if cache == "cold" else "cached image"
    )
    includes += ", ssh key, bridges, " + ("baseline mirror build+serve, " if scope == "full" else "")
    includes += "boot, wait SSH, sudo login" + (", apt_baseline on every host" if scope == "full" else "")
    result = RunResult(label=label, size=size, cache=cache, scope=scope, includes=includes)
    slug = f"{size:02d}-{cache}-{scope}"
    run_dir = workdir / f"run-{slug}"
    inventory, state_dir = run_dir / "inventory", run_dir / "state"
    run_dir.mkdir()
    hosts = plan_hosts(size)
    write_inventory(inventory, hosts)
    cache_dir = workdir / f"cold-cache-{slug}" if cache == "cold" else None
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        # Skipped tasks (the role's other lab_state branches) would only clutter the log and the progress lines.
        ANSIBLE_DISPLAY_SKIPPED_HOSTS="False",
        PROFILE_TASKS_TASK_OUTPUT_LIMIT="500",
        PROFILE_TASKS_SORT_ORDER="none",
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )
    if cache_dir is not None:
        cache_dir.mkdir()
        env["ENP_CACHE_DIR"] = str(cache_dir)
    elif warm_cache_env is not None:
        env["ENP_CACHE_DIR"] = warm_cache_env
    else:
        env.pop("ENP_CACHE_DIR", None)
    extra = SCOPES[scope]
    markers = our_markers(run_dir, hosts, cache_dir)

    print(f"\n== {label}: {len(hosts)} hosts in {run_dir}", flush=True)
    result.loadavg_before = os.getloadavg()[0]
    before = snapshot()
    mem_before = mem_available()
    up: PlaybookRun | None = None
    try:
        with BootWatcher(state_dir, hosts) as watcher:
            up_started = boottime()
            up = run_playbook("lab_up.yml", inventory, env, run_dir / "lab_up.log", args.timeout, extra, "lab-up")
            up_ended = boottime()
        result.logs.append(str(up.log))
        statuses = task_statuses(up.output)
        result.phases = phases_of(parse_profile(up.output))
        result.image_built = "changed" in statuses_for(statuses, "Lab | Image |")
        result.mirror_statuses = sorted(statuses_for(statuses, "Lab | Mirror |"))
        if up.rc != 0:
            why = "timed out" if up.rc is None else f"failed (rc={up.rc})"
            raise RuntimeError(f"lab_up {why} after {up.seconds:.1f}s; log {up.log}\n{failure_excerpt(up.output)}")
        result.up_s = round(up.seconds, 2)
        result.per_host_s = round(up.seconds / size, 2)
        if watcher.launched and len(watcher.answered) == len(hosts):
            first_boot, last_ssh = min(watcher.launched.values()), max(watcher.answered.values())
            per_host = [watcher.answered[n] - watcher.launched[n] for n in watcher.answered]
            result.first_boot_to_last_ssh_s = round(last_ssh - first_boot, 2)
            result.boot_to_ssh_p50_s = round(statistics.median(per_host), 2)
            result.boot_to_ssh_max_s = round(max(per_host), 2)
            result.before_first_boot_s = round(first_boot - up_started, 2)
            result.after_last_ssh_s = round(up_ended - last_ssh, 2)
        if cache == "cold" and not result.image_built:
            raise RuntimeError("the cold run did not build the golden image (image task not 'changed'): not a cold run")
        if cache == "warm" and result.image_built:
            result.error = "warm run built the image (cache was empty): counted, but this row is really cold"

        time.sleep(args.settle)
        usages, rsss = [], []
        for host in hosts:
            record = json.loads((state_dir / "hosts" / host.name / "host.json").read_text())
            usage, rss = cgroup_memory(record.get("cgroups", []))
            if usage is not None:
                usages.append(usage)
            if rss is not None:
                rsss.append(rss)
        result.ssh_answering = sum(ssh_banner(h.address, 1.0) for h in hosts)
        mib = 1024 * 1024
        if usages:
            result.mem_mean_mib = round(statistics.mean(usages) / mib, 1)
            result.mem_max_mib = round(max(usages) / mib, 1)
        if rsss:
            result.rss_mean_mib = round(statistics.mean(rsss) / mib, 1)
        baseline = watcher.mem_at_first_boot or mem_before  # after the image build: debootstrap's cache is noise
        result.sys_delta_per_host_mib = round((baseline - mem_available()) / size / mib, 1)
        result.ok = result.ssh_answering == size
        if not result.ok:
            result.error = f"only {result.ssh_answering}/{size} hosts answer SSH after {args.settle:.0f}s idle"
        print(
            f"   up {result.up_s:.1f}s ({result.per_host_s:.2f} s/host); first boot -> last SSH "
            f"{fmt(result.first_boot_to_last_ssh_s)}s; memory/host {fmt(result.mem_mean_mib)} MiB mean, "
            f"{fmt(result.mem_max_mib)} max",
            flush=True,
        )
    except Interrupted:
        result.error = INTERRUPTED  # reported as a row; main() stops after this run's teardown
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        result.error = str(exc)
        print(f"   ! {label}: {exc}", flush=True)
    finally:
        with interrupts_deferred():
            print(f"   tearing down {label} (Ctrl-C is ignored until teardown ends)", flush=True)
            down = run_playbook(
                "lab_down.yml", inventory, env, run_dir / "lab_down.log", args.down_timeout, DOWN_EXTRA, "lab-down"
            )
            result.logs.append(str(down.log))
            result.down_ok = down.rc == 0
            result.down_s = round(down.seconds, 2) if result.down_ok else None
            result.down_phases = phases_of(parse_profile(down.output))
            if not result.down_ok:
                msg = f"lab_down failed (rc={down.rc}); log {down.log}\n{failure_excerpt(down.output)}"
                result.error = (result.error + "\n" if result.error else "") + msg
                print(f"   ! {msg}", flush=True)
            ours, unrelated = leftover_check(before, markers, workdir)
            result.leftovers, result.unrelated_changes = ours, unrelated
            if ours:
                result.ok = False
                print(f"   ! leftovers: {json.dumps(ours)}", flush=True)
                print(
                    f"     records kept in {state_dir}; retry with:\n     ENP_LAB_DIR={state_dir} "
                    f"ANSIBLE_CONFIG={PROJECT}/ansible.cfg {VENV_BIN}/ansible-playbook -i {inventory} "
                    "playbooks/lab_down.yml -e enp_lab_down_confirm=down",
                    flush=True,
                )
            else:
                print(f"   teardown {fmt(result.down_s)}s; leftovers: none", flush=True)
                shutil.rmtree(state_dir, ignore_errors=True)
                if cache_dir is not None and not args.keep_cold_cache:
                    shutil.rmtree(cache_dir, ignore_errors=True)
    return result


# ---------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(results: list[RunResult], total_s: float, warm_cache: Path) -> dict[str, object]:
    print("\nLab startup benchmark (bench/lab_startup.py) - playbooks/lab_up.yml and lab_down.yml, real nspawn hosts")
    print(f"machine: {os.cpu_count()} cores, {mem_total_gib():.0f} GiB, {platform.release()}; warm cache {warm_cache}")
    head = (
        f"{'hosts':>5} {'cache':<5} {'scope':<5} {'lab-up s':>8} {'s/host':>7} {'mem/host MiB mean':>17} "
        f"{'max':>6} {'teardown s':>10}  {'leftovers':<9} result"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        left = "none" if not r.leftovers else "YES"
        status = "ok" if r.ok else ("FAILED" if not r.up_s else "CHECK")
        print(
            f"{r.size:>5} {r.cache:<5} {r.scope:<5} {fmt(r.up_s):>8} {fmt(r.per_host_s, '.2f'):>7} "
            f"{fmt(r.mem_mean_mib):>17} {fmt(r.mem_max_mib):>6} {fmt(r.down_s):>10}  {left:<9} {status}"
        )
    cols = [("image", 5), ("boot", 6), ("wait_ssh", 8), ("login", 5), ("mirror", 6), ("apt_baseline", 12), ("other", 5)]
    head2 = (
        f"{'hosts':>5} {'cache':<5} {'scope':<5} "
        + " ".join(f"{name:>{width}}" for name, width in cols)
        + f" | {'pre-boot':>8} {'1st boot->last SSH':>18} {'boot->SSH p50/max':>17}"
        + f" {'RSS MiB':>7} {'MemAvail/host':>13}"
    )
    print("\nSplit of lab-up in seconds (left: profile_tasks per phase; right: our watcher on host.json + SSH banners)")
    print(head2 + "\n" + "-" * len(head2))
    for r in results:
        p50max = f"{fmt(r.boot_to_ssh_p50_s)}/{fmt(r.boot_to_ssh_max_s)}"
        sys_delta = fmt(r.sys_delta_per_host_mib) if r.size >= 10 else "-"
        print(
            f"{r.size:>5} {r.cache:<5} {r.scope:<5} "
            + " ".join(f"{fmt(r.phases.get(name)):>{width}}" for name, width in cols)
            + f" | {fmt(r.before_first_boot_s):>8} {fmt(r.first_boot_to_last_ssh_s):>18} {p50max:>17} "
            f"{fmt(r.rss_mean_mib):>7} {sys_delta:>13}"
        )
    dcols = [("ssh_close", 9), ("stop_hosts", 10), ("services", 8), ("other", 5)]
    head3 = f"{'hosts':>5} {'cache':<5} {'scope':<5} {'teardown':>8} " + " ".join(f"{n:>{w}}" for n, w in dcols)
    print("\nSplit of teardown in seconds (profile_tasks of lab_down.yml)")
    print(head3 + "\n" + "-" * len(head3))
    for r in results:
        print(
            f"{r.size:>5} {r.cache:<5} {r.scope:<5} {fmt(r.down_s):>8} "
            + " ".join(f"{fmt(r.down_phases.get(n)):>{w}}" for n, w in dcols)
        )
    print(
        """
What the rows include:
  lab-up    wall time of `ansible-playbook playbooks/lab_up.yml` until it returns: preflight, inotify limits,
            golden image (cold: debootstrap into a fresh ENP_CACHE_DIR; warm: the cached image), SSH key,
            bridges, boot every host, wait for SSH on each, log in as the operator and run `sudo -n true`.
  scope     hosts = -e lab_mirror_enabled=false --skip-tags apt_baseline (host startup only);
            full  = default lab_up: + build/sign/serve the baseline mirror (.debs from the warm cache)
                    + the apt_baseline role on every host (sources, apt update/upgrade, local fact).
  mem/host  the host's memory cgroup after --settle s idle (v1 usage_in_bytes: RSS + page cache + kernel
            memory); RSS MiB = total_rss of that cgroup; MemAvail/host = controller-wide MemAvailable drop
            from first host boot to measurement / hosts (shown from 10 hosts; noisy when others are busy).
  teardown  wall time of `ansible-playbook playbooks/lab_down.yml -e enp_lab_down_confirm=down`.
  Sizes > 1 use two zones and a zone gateway host with an interface in both, like inventories/lab.
""".rstrip()
    )

    ratios: dict[str, object] = {}
    by_key = {(r.size, r.cache, r.scope): r for r in results}
    target = by_key.get((TARGET_HOSTS, "warm", "hosts"))
    print()
    if target and target.up_s:
        ratio = target.up_s / TARGET_SECONDS
        verdict = "meets" if ratio <= 1 else "MISSES"
        print(
            f"target: {TARGET_HOSTS} hosts up (SSH answering) in <= {TARGET_SECONDS:.0f} s warm: measured "
            f"{target.up_s:.1f} s = {ratio:.2f} x target -> {verdict} it "
            f"(headroom {TARGET_SECONDS - target.up_s:+.1f} s)"
        )
        ratios["target_ratio"] = round(ratio, 3)
    else:
        print(f"target: {TARGET_HOSTS} hosts warm (scope hosts) was not measured successfully in this run")
    full_target = by_key.get((TARGET_HOSTS, "warm", "full"))
    if full_target and full_target.up_s:
        ratio = full_target.up_s / TARGET_SECONDS
        print(
            f"  for reference, the full lab_up (mirror + apt_baseline) of {TARGET_HOSTS} hosts: "
            f"{full_target.up_s:.1f} s = {ratio:.2f} x target"
        )
        ratios["full_target_ratio"] = round(ratio, 3)
    cold1, warm1 = by_key.get((1, "cold", "hosts")), by_key.get((1, "warm", "hosts"))
    if cold1 and warm1 and cold1.up_s and warm1.up_s:
        ratio = cold1.up_s / warm1.up_s
        print(
            f"1 host: cold {cold1.up_s:.1f} s vs warm {warm1.up_s:.1f} s -> cold/warm = {ratio:.1f}x "
            f"(warm/cold = {warm1.up_s / cold1.up_s:.2f}); golden image build {fmt(cold1.phases.get('image'))} s"
        )
        ratios["cold_over_warm_1"] = round(ratio, 2)
        if not any(r.cache == "cold" and r.size > 1 for r in results):
            print(
                f"  cold at N hosts ~= image build ({fmt(cold1.phases.get('image'))} s) + warm time at N: the image is"
                " built once, before any host boots (measure it with --cold-sizes 1,10,30)"
            )
    warm = sorted((r.size, r.up_s) for r in results if r.cache == "warm" and r.scope == "hosts" and r.up_s)
    for (n1, t1), (n2, t2) in itertools.pairwise(warm):
        slope = (t2 - t1) / (n2 - n1)
        print(
            f"warm marginal cost {n1}->{n2} hosts: {slope:.2f} s per extra host "
            f"({t2 / t1:.2f}x time for {n2 / n1:.0f}x hosts)"
        )
        ratios[f"marginal_s_per_host_{n1}_{n2}"] = round(slope, 3)
    for r in results:
        if r.scope != "full" or not r.up_s:
            continue
        ran = bool({"changed", "ok", "included"} & set(r.mirror_statuses))
        base = by_key.get((r.size, "warm", "hosts"))
        extra = f"{r.up_s - base.up_s:+.1f} s vs scope hosts ({r.up_s / base.up_s:.2f}x)" if base and base.up_s else ""
        print(
            f"full lab_up, {r.size} host{'s' if r.size > 1 else ''}: {r.up_s:.1f} s {extra}; mirror "
            f"{fmt(r.phases.get('mirror'))} s, apt_baseline {fmt(r.phases.get('apt_baseline'))} s"
            + ("" if ran else " - NOTE: the mirror task did not run")
        )
        if base and base.up_s:
            ratios[f"full_minus_hosts_s_{r.size}"] = round(r.up_s - base.up_s, 2)
    left = [r for r in results if r.leftovers]
    print("leftovers: none" if not left else "leftovers: " + "; ".join(f"{r.label}: {r.leftovers}" for r in left))
    for r in results:
        if r.unrelated_changes:
            summary = "; ".join(
                f"{key}: {len(items)} (e.g. {items[0][:70]})" for key, items in sorted(r.unrelated_changes.items())
            )
            print(f"  not ours, appeared during '{r.label}' (someone else's lab or test?): {summary}")
    for r in results:
        if r.error:
            print(f"note [{r.label}]: {r.error.splitlines()[0]}")
        if r.loadavg_before and r.loadavg_before > 1.0:
            print(f"note [{r.label}]: load average {r.loadavg_before:.2f} before the run (others busy on the machine)")
    print(f"total benchmark time: {total_s:.0f} s")
    return ratios


def mem_total_gib() -> float:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        return int(handle.readline().split()[1]) / 1024 / 1024


# ---------------------------------------------------------------- main


def sizes_arg(text: str) -> list[int]:
    sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    if any(s < 1 or s > 99 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be between 1 and 99 hosts")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=sizes_arg, default=[1, 10, 30], help="warm-cache sizes (default 1,10,30)")
    parser.add_argument(
        "--cold-sizes",
        type=sizes_arg,
        default=[1],
        help="cold-cache sizes; each runs debootstrap (~1 min) (default 1; '' for none)",
    )
    parser.add_argument(
        "--full-sizes",
        type=sizes_arg,
        default=[1, 10],
        help="warm sizes to run as the full default lab_up (+ baseline mirror, apt_baseline) (default 1,10; '')",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write results as JSON (default path: WORKDIR/lab_startup.json)",
    )
    parser.add_argument("--keep-going", action="store_true", help="continue with the next size after a failure")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per lab_up (default 600)")
    parser.add_argument("--down-timeout", type=float, default=300, help="seconds allowed per lab_down (default 300)")
    parser.add_argument("--settle", type=float, default=5, help="idle seconds before reading memory (default 5)")
    parser.add_argument("--workdir", type=Path, help="where inventories, state and logs go (default: /var/tmp/...)")
    parser.add_argument("--keep-cold-cache", action="store_true", help="keep the cold runs' fresh image caches")
    return parser.parse_args(argv)


def preflight() -> Path:
    """Refuse to start when we cannot run or when a previous run left our bridges or hosts behind."""
    if os.geteuid() != 0:
        sys.exit(
            "bench/lab_startup.py needs root: the lab creates bridges, overlay mounts and systemd-nspawn hosts.\n"
            "Run it as root, e.g. `sudo .venv/bin/python bench/lab_startup.py`."
        )
    if not (VENV_BIN / "ansible-playbook").exists():
        sys.exit(f"{VENV_BIN}/ansible-playbook is missing: run `make setup` first.")
    stale = sorted(
        p.name
        for p in Path("/sys/class/net").iterdir()
        if p.name in {b for b, _ in ZONES.values()} or p.name.startswith(f"vb-{HOST_PREFIX}")
    )
    if stale:
        states = sorted(str(p) for p in WORK_PARENT.glob("enp-bench-*/run-*/state"))
        sys.exit(
            f"interfaces {', '.join(stale)} already exist: a previous benchmark run (or someone else) is still up.\n"
            "Tear it down with its own records, e.g. for each state folder below:\n"
            f"  ENP_LAB_DIR=STATE ANSIBLE_CONFIG={PROJECT}/ansible.cfg {VENV_BIN}/ansible-playbook "
            "-i STATE/../inventory playbooks/lab_down.yml -e enp_lab_down_confirm=down\n  "
            + "\n  ".join(states or ["(none found)"])
        )
    cache = Path(os.environ.get("ENP_CACHE_DIR") or Path.home() / ".cache" / "enp")
    return cache


def warm_image(cache: Path) -> tuple[Path, bool]:
    """(image folder, cached?) of the golden image lab_up would use, asked of enp_lab_image itself in check mode,
    so the cache key (suite, packages, revision) is never re-implemented here."""
    import yaml  # PyYAML comes with ansible-core in the venv

    defaults = yaml.safe_load((PROJECT / "roles" / "lab" / "defaults" / "main.yml").read_text())
    module_args = {
        "cache_dir": str(cache / "images"),
        "suite": defaults["lab_image_suite"],
        "packages": defaults["lab_image_packages"],
    }
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [str(VENV_BIN / "ansible"), "-i", "localhost,", "localhost", "-c", "local", "--check"]
    cmd += ["-m", "enp_lab_image", "-a", json.dumps(module_args)]
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    try:
        data, _end = json.JSONDecoder().raw_decode(proc.stdout.split("=>", 1)[1].lstrip())
        return Path(data["rootfs"]).parent, not data["changed"]
    except (IndexError, KeyError, ValueError):
        sys.exit(
            f"could not ask enp_lab_image where the golden image is (rc={proc.returncode}):\n"
            f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )


def wait_for_other_build(image_dir: Path, timeout: float) -> bool:
    """If another lab is building the same image right now, wait for it: enp_lab_image has no lock, and a
    second build of the same key deletes the first one's half-built tree. Returns True once it is cached."""
    building = image_dir.with_name(image_dir.name + ".building")
    if not building.exists():
        return False
    print(f"   {building} exists: another lab is building the warm image now; waiting up to {timeout:.0f}s", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and building.exists():
        time.sleep(2)
    return (image_dir / "COMPLETE").exists()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warm_cache = preflight()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="enp-bench-", dir=WORK_PARENT))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    plan = [(n, "cold", "hosts") for n in args.cold_sizes] + [(n, "warm", "hosts") for n in args.sizes]
    plan += [(n, "warm", "full") for n in args.full_sizes]
    warm_env = os.environ.get("ENP_CACHE_DIR")
    print(
        f"lab_startup: {len(plan)} runs ({', '.join(f'{n} {c} {s}' for n, c, s in plan)}); work folder {workdir}",
        flush=True,
    )
    if any(c == "warm" for _, c, _ in plan):
        image_dir, cached = warm_image(warm_cache)
        if not cached and not wait_for_other_build(image_dir, args.timeout):
            print(f"   warm cache has no {image_dir.name} yet: priming it with an uncounted 1-host run", flush=True)
            plan.insert(len(args.cold_sizes), (1, "prime", "hosts"))
    started = time.monotonic()
    results: list[RunResult] = []
    interrupted = False
    try:
        for index, (size, cache, scope) in enumerate(plan, start=1):
            print(f"\n[{index}/{len(plan)}]", end="", flush=True)
            result = run_once(args, workdir, size, "warm" if cache == "prime" else cache, scope, warm_env)
            if cache == "prime" and result.ok:
                continue  # uncounted: it only filled the warm cache
            results.append(result)
            if result.error == INTERRUPTED:
                raise Interrupted("SIGINT")
            if cache == "prime":
                print("   ! priming the warm cache failed; warm rows would be cold. Stopping.", flush=True)
                break
            if not result.ok and not args.keep_going:
                print("   stopping after this failure (use --keep-going to continue with the next size)", flush=True)
                break
    except Interrupted as exc:
        interrupted = True
        print(f"\ninterrupted ({exc}): every lab started so far has been torn down; partial results follow", flush=True)
    total = time.monotonic() - started
    ratios = print_report(results, total, warm_cache)
    if args.json is not None:
        path = Path(args.json) if args.json else workdir / "lab_startup.json"
        payload = {
            "benchmark": "bench/lab_startup.py",
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "mem_gib": round(mem_total_gib(), 1), "kernel": platform.release()},
            "target": {"hosts": TARGET_HOSTS, "seconds": TARGET_SECONDS, "cache": "warm"},
            "total_seconds": round(total, 1),
            "interrupted": interrupted,
            "ratios": ratios,
            "runs": [asdict(r) for r in results],
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"json: {path}")
    print(f"logs: {workdir}/run-*/lab_up.log, lab_down.log")
    if interrupted:
        return 130
    complete = len(results) == len([run for run in plan if run[1] != "prime"])
    return 0 if complete and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
