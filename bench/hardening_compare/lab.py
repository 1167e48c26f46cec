"""The lab side: playbook runs with progress, probes on the hosts, and the leftover check after teardown."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType

from .parsing import failed_units, markers_in
from .report import Health

PROJECT = Path(__file__).resolve().parents[2]
VENV_BIN = PROJECT / ".venv" / "bin"
SOURCE_INVENTORY = PROJECT / "bench" / "inventories" / "hardening"
SERVICES_PLAYBOOK = PROJECT / "bench" / "hardening_compare" / "playbooks" / "services.yml"
BRIDGE = "enp-bh"
SUBNET_PREFIX = "198.18.96."
HOST_PREFIX = "bh-"
# lab_down.yml asks for a typed confirmation (a destructive playbook); the benchmark only destroys its own lab.
DOWN_EXTRA = ["-e", "enp_lab_down_confirm=down"]
PG_PORT = 5432
SSLREQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest: a server answers b"S" (TLS on) or b"N"
LYNIS_REPORT = "/var/log/lynis-report.dat"
LYNIS_COMMAND = "lynis audit system --quick --no-colors --no-log"
TLS_DIR = "/etc/ssl/enp-postgresql"  # roles/postgresql vars/main.yml __postgresql_tls_dir (CA for verify-full)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop the current playbook, tear down, report what we have."""


def raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Teardown must finish: ignore Ctrl-C/TERM while it runs (it is bounded by its timeout)."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def enp_lab_utils() -> ModuleType:
    """plugins/module_utils/enp_lab.py (pure Python) without Ansible's module_utils import machinery."""
    spec = importlib.util.spec_from_file_location("enp_lab_utils", PROJECT / "plugins" / "module_utils" / "enp_lab.py")
    assert spec and spec.loader  # noqa: S101 - a file of this repository
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("enp_lab_utils", module)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- inventory and environment


def write_inventory(directory: Path, variants: list[str]) -> dict[str, str]:
    """A copy of bench/inventories/hardening with only the hosts of the variants that run; returns host -> address."""
    import yaml  # PyYAML comes with ansible-core in the venv

    shutil.copytree(SOURCE_INVENTORY / "group_vars", directory / "group_vars")
    data = yaml.safe_load((SOURCE_INVENTORY / "hosts.yml").read_text())
    group = data["all"]["children"]["estate"]["children"]["data"]["children"]["postgresql"]["children"]["db_primary"]
    kept = {name: hv for name, hv in group["hosts"].items() if hv.get("hc_variant") in variants}
    group["hosts"] = kept
    header = "---\n# Written by bench/hardening_compare.py from bench/inventories/hardening (this run's variants).\n"
    (directory / "hosts.yml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return {name: hv["ansible_host"] for name, hv in kept.items()}


def ansible_env(state_dir: Path, workdir: Path, anchor_paths: dict[str, Path] | None = None) -> dict[str, str]:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        # A private fact cache: ansible.cfg's shared one (.cache/facts, keyed by host name) could hand a fresh
        # host the facts of an earlier run's host of the same name.
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(workdir / "facts"),
        # lockdown skips hundreds of rules per run: without this the log is mostly "skipping".
        ANSIBLE_DISPLAY_SKIPPED_HOSTS="False",
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )
    paths = anchor_paths or {}
    if "collections" in paths:
        # Only the temporary path (plus the venv's `ansible` bundle, always searched): never ~/.ansible.
        env["ANSIBLE_COLLECTIONS_PATH"] = str(paths["collections"])
    if "roles" in paths:
        env["ANSIBLE_ROLES_PATH"] = f"{paths['roles']}:{PROJECT / 'roles'}"
    return env


# ---------------------------------------------------------------- running playbooks


@dataclass
class PlaybookRun:
    rc: int | None  # None: timed out or interrupted
    seconds: float
    output: str
    log: Path


def run_playbook(
    playbook: str | Path,
    inventory: Path,
    env: dict[str, str],
    log: Path,
    timeout: float,
    label: str,
    extra: list[str] | None = None,
) -> PlaybookRun:
    """ansible-playbook in its own session (Ctrl-C reaches us, not it), output to a log, a progress line
    every 15 s (lockdown runs ~700 tasks: one line per task would drown the report)."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *(extra or [])]
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as sink:
        sink.write("$ " + shlex.join(cmd) + "\n")
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
    next_progress = started + 15
    try:
        while rc is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=0.5)
            now = time.monotonic()
            if rc is None and now >= next_progress:
                next_progress = now + 15
                tasks = re.findall(r"^TASK \[(.+?)\] \*+", log.read_text(errors="replace"), re.MULTILINE)
                last = tasks[-1] if tasks else "(starting)"
                print(f"      {now - started:6.0f}s  {label}: {len(tasks)} tasks so far, now: {last[:90]}", flush=True)
            if rc is None and now - started > timeout:
                print(f"      ! {label}: no result after {timeout:.0f}s, stopping it", flush=True)
                stop_group(proc)
                break
    except Interrupted:
        print(f"\n      ! interrupted during {label}: stopping ansible-playbook (PID {proc.pid})", flush=True)
        stop_group(proc)
        raise
    return PlaybookRun(rc, time.monotonic() - started, log.read_text(errors="replace"), log)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """INT, then KILL, the process group of the ansible-playbook we started (its own session)."""
    with interrupts_deferred():
        for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
                return


# ---------------------------------------------------------------- running commands on a host


@dataclass
class Completed:
    rc: int | None  # None: timed out
    stdout: str
    stderr: str


def _run(argv: list[str], stdin: str, timeout: float) -> Completed:
    try:
        proc = subprocess.run(  # noqa: S603 - ssh/nsenter with our own fixed arguments
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Completed(None, out, f"timed out after {timeout:.0f}s")
    return Completed(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Ssh:
    """A fresh SSH connection per command as the Ansible user: no ControlMaster, so a broken sshd shows."""

    address: str
    key: Path
    user: str = "enp"

    def argv(self, command: str) -> list[str]:
        options = [
            "BatchMode=yes",
            "ControlMaster=no",
            "ControlPath=none",
            "UserKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=no",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
        ]
        flags = [flag for option in options for flag in ("-o", option)]
        return ["ssh", "-i", str(self.key), *flags, f"{self.user}@{self.address}", command]

    def run(self, script: str, root: bool = False, stdin: str = "", timeout: float = 60) -> Completed:
        command = f"sudo -n /bin/sh -c {shlex.quote(script)}" if root else f"/bin/sh -c {shlex.quote(script)}"
        return _run(self.argv(command), stdin, timeout)


@dataclass
class Nsenter:
    """Root commands inside a host through its namespaces, from the controller: used only when the Ansible
    user can no longer log in or use sudo, so a host that locked its operator out is still measured."""

    leader: int

    @classmethod
    def for_host(cls, state_dir: Path, name: str) -> Nsenter:
        record = json.loads((state_dir / "hosts" / name / "host.json").read_text())
        pid, start = record.get("pid"), record.get("start_time")
        stat = Path(f"/proc/{pid}/stat").read_text()
        if int(stat.rsplit(")", 1)[1].split()[19]) != start:
            raise RuntimeError(f"nspawn PID {pid} of {name} is not the process the lab started")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            raise RuntimeError(f"host {name} (nspawn PID {pid}) has no init process")
        return cls(int(children[0]))

    def run(self, script: str, root: bool = True, stdin: str = "", timeout: float = 60) -> Completed:
        del root  # always root
        argv = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--"]
        argv += ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        argv += ["HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-c", script]
        return _run(argv, stdin, timeout)


Runner = Ssh | Nsenter


def pg_answers(address: str, timeout: float = 5) -> bool:
    """PostgreSQL answers an SSLRequest from the controller with b"S" (TLS available)."""
    try:
        with socket.create_connection((address, PG_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(SSLREQUEST)
            return sock.recv(1) == b"S"
    except OSError:
        return False


def _pg_script(address: str, database: str, user: str) -> str:
    conninfo = (
        f"host={address} port={PG_PORT} dbname={database} user={user} sslmode=verify-full "
        f"sslrootcert={TLS_DIR}/ca.crt connect_timeout=5"
    )
    query = "SELECT current_user || ' ssl=' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    return (
        "read -r PGPASSWORD; export PGPASSWORD; "
        f"pg_isready -q -h {address} -p {PG_PORT}; echo probe.pg_isready=$?; "
        f"out=$(psql {shlex.quote(conninfo)} -X -A -t -v ON_ERROR_STOP=1 -c {shlex.quote(query)} 2>&1); "
        'echo probe.psql_rc=$?; echo "probe.psql_out=$(echo "$out" | tr "\\n" " ")"'
    )


def probe_health(
    name: str,
    address: str,
    key: Path,
    state_dir: Path,
    app_password: str,
    database: str = "civic",
    app_user: str = "civic_app",
) -> tuple[Health, Runner | None]:
    """Fresh SSH login and sudo; then (over SSH+sudo, else via nsenter) sshd -t, failed units, and the service:
    TLS login as the app role with a query through the host's own address; and from the controller, an SSLRequest."""
    health = Health()
    ssh = Ssh(address, key)
    login = ssh.run("true", timeout=30)
    health.ssh_login = login.rc == 0
    if not health.ssh_login:
        lines = (login.stderr or login.stdout).strip().splitlines()
        health.ssh_error = (lines[-1] if lines else f"ssh rc={login.rc}")[:160]
    sudo = ssh.run("true", root=True, timeout=30) if health.ssh_login else None
    health.sudo = bool(sudo and sudo.rc == 0)
    runner: Runner | None
    if health.sudo:
        runner, health.via = ssh, "ssh+sudo"
    else:
        why = "SSH login refused" if not health.ssh_login else "sudo -n refused"
        try:
            runner, health.via = Nsenter.for_host(state_dir, name), f"nsenter from the controller ({why})"
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            health.via = f"nothing: {why} and nsenter failed ({exc})"
            return health, None
    sshd = runner.run("sshd -t", root=True, timeout=30)
    health.sshd_config_ok = sshd.rc == 0
    units = runner.run("systemctl --failed --no-legend --plain", root=True, timeout=30)
    health.failed_units = failed_units(units.stdout) if units.rc == 0 else None
    pg = runner.run(_pg_script(address, database, app_user), root=True, stdin=app_password + "\n", timeout=60)
    found = markers_in(pg.stdout, "probe")
    health.service_ok = found.get("psql_rc") == "0" and f"{app_user} ssl=t" in found.get("psql_out", "")
    if health.service_ok:
        health.service_detail = f"TLS login as {app_user} and a query OK"
    else:
        health.service_detail = (
            f"pg_isready rc={found.get('pg_isready', '?')}, psql rc={found.get('psql_rc', '?')}: "
            f"{found.get('psql_out', pg.stderr.strip())[:200]}"
        )
    health.network_ok = pg_answers(address)
    return health, runner


@dataclass
class LynisRun:
    report: str  # the report file's text ("" when there is none)
    error: str
    seconds: float
    screen: str  # Lynis' screen output, kept in the work folder


def run_lynis(runner: Runner, timeout: float) -> LynisRun:
    """A fresh audit (the previous report is removed first), then the report file."""
    started = time.monotonic()
    lynis = runner.run(f"rm -f {LYNIS_REPORT}; {LYNIS_COMMAND}", root=True, timeout=timeout)
    seconds = time.monotonic() - started
    report = runner.run(f"cat {LYNIS_REPORT}", root=True, timeout=60)
    error = ""
    if lynis.rc != 0:
        error = f"`{LYNIS_COMMAND}` rc={lynis.rc}: " + (lynis.stderr or lynis.stdout).strip()[-200:]
    if report.rc != 0:
        error = (error + "; " if error else "") + f"no {LYNIS_REPORT}: {report.stderr.strip()[:160]}"
    return LynisRun(report.stdout if report.rc == 0 else "", error, seconds, lynis.stdout)


def run_oscap(runner: Runner, content: Path, profile: str, timeout: float) -> dict[str, object]:
    """oscap xccdf eval of a data stream given by the operator; `available: False` when oscap is missing."""
    check = runner.run("command -v oscap", root=True, timeout=30)
    if check.rc != 0:
        return {"available": False, "reason": "oscap is not installed on the host (not in the baseline mirror)"}
    remote = "/var/tmp/enp-bench-scap-content.xml"  # noqa: S108 - on the throwaway lab host, written as root
    copy = runner.run(f"cat > {remote}", root=True, stdin=content.read_text(errors="replace"), timeout=120)
    if copy.rc != 0:
        return {"available": True, "error": f"copying the content failed: {copy.stderr.strip()[:160]}"}
    profile_arg = f"--profile {shlex.quote(profile)} " if profile else ""
    result = runner.run(f"oscap xccdf eval {profile_arg}{remote}", root=True, timeout=timeout)
    return {"available": True, "rc": result.rc, "stdout": result.stdout}


# ---------------------------------------------------------------- leftovers


def our_markers(state_dir: Path, workdir: Path, hosts: list[str]) -> list[str]:
    table = enp_lab_utils().isolation_table_name(str(state_dir))
    return [str(state_dir), str(workdir), SUBNET_PREFIX, BRIDGE, f"vb-{HOST_PREFIX}", *hosts, table]


def leftovers(before: dict[str, list[str]], markers: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(ours, unrelated): what appeared since `before`, split by whether it carries one of our markers; plus our
    cgroup folders and TCP sessions to our subnet, which the snapshot cannot attribute."""
    sys.path.insert(0, str(PROJECT / "tests" / "integration"))
    from labstate import diff, snapshot  # the integration tests' own leftover snapshot

    ours: dict[str, list[str]] = {}
    unrelated: dict[str, list[str]] = {}
    for key, change in diff(before, snapshot()).items():
        for item in change["left_behind"]:
            target = ours if any(m in item for m in markers) else unrelated
            target.setdefault(key, []).append(item)
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/enp-lab/{HOST_PREFIX}*"))
    if cgroups:
        ours["cgroups"] = ours.get("cgroups", []) + cgroups
    tcp = subprocess.run(["ss", "-tnH"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    peers = [ln.split()[4] for ln in tcp.splitlines() if len(ln.split()) > 4]
    sessions = [peer for peer in peers if peer.startswith(SUBNET_PREFIX)]
    if sessions:
        ours["tcp_sessions"] = sessions
    return ours, unrelated


def snapshot() -> dict[str, list[str]]:
    sys.path.insert(0, str(PROJECT / "tests" / "integration"))
    from labstate import snapshot as take

    return take()
