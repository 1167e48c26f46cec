#!/usr/bin/env python3
"""Benchmark for the rolling redeploy: does every citizen request succeed while the app servers are replaced one
at a time, how long does the rollout take, and does a broken release stop at the first host and roll it back?

Needs the lab estate up and deployed (`make lab-up`, then `ansible-playbook -i inventories/lab playbooks/site.yml`);
it checks https://198.18.1.10/health with the lab CA first and says so if not. Then, on the deployed estate:

1. good:    redeploy the other good release (1.0.1 <-> 1.0.2: whichever /version does not report now, so every run
            changes something); expect the playbook to pass and /version to answer the new version only;
2. broken:  redeploy a release whose /health always answers 503 (build_release.py --broken health); expect the
            playbook to fail at the first app host, that host rolled back, /version still the good version;
3. restore: redeploy the version found at the start, so the estate is left as it was.

During each rollout the request loop (enp.requestloop, in-process) sends 8 requests/s through the load balancer
(new TLS connection each, paths / /health /version /api/ulbs), from --settle seconds before the playbook starts
until --settle seconds after it ends. Every failed request is counted and listed: the target is zero.

    .venv/bin/python bench/redeploy.py                  # as the user who ran make lab-up (root)
    .venv/bin/python bench/redeploy.py --skip-broken --json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
VENV_BIN = PROJECT / ".venv" / "bin"
sys.path.insert(0, str(PROJECT))  # enp.requestloop from this checkout, also without `pip install -e .`
from enp.requestloop import (  # noqa: E402
    DEFAULT_PATHS,
    DEFAULT_RATE,
    LoopConfig,
    RequestLoop,
    UsageError,
    describe,
    error_kind,
    fetch,
)

DEFAULT_URL = "https://198.18.1.10"  # lb1 in inventories/lab
DEFAULT_SERVER_NAME = "portal.enagar.lab"  # enp_portal_name in inventories/lab/group_vars/all/services.yml
LAB_DIR = Path(os.environ.get("ENP_LAB_DIR") or PROJECT / ".lab")
DEFAULT_CA = LAB_DIR / "pki" / "ca" / "ca.crt"
GOOD_VERSIONS = ("1.0.1", "1.0.2")  # the good rollout goes to whichever of these is not deployed now
BROKEN_VERSION = "1.0.0+broken-health"  # build_release.py --broken health: /health always 503
PLAYBOOK = "playbooks/redeploy.yml"
WORK_PARENT = Path("/var/tmp")  # noqa: S108 - mkdtemp below makes a private folder in it
VERSION_PROBES = 8  # /version asked this often after a rollout (two web servers x two app servers behind it)

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_NOT_READY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop the playbook and the loop, report what we have."""


class NotReady(Exception):
    """The estate (or this controller) is not ready for the benchmark; the message says what to do."""


# ---------------------------------------------------------------- parsing ansible-playbook output (pure)

_TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*)\] \*+\s*$")
# ansible.posix.profile_tasks, after every task banner: "<date> (<task>)       <total since start> ****".
_STAMP = re.compile(r"\(\d+:\d{2}:\d{2}\.\d{3}\)\s+(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2})\.(?P<ms>\d{3})\s+\*+\s*$")
_RESULT = re.compile(r"^(?:ok|changed|failed|fatal|skipping|unreachable|rescued|ignored): \[(?P<host>[^\]\s]+)")


def per_host_seconds(output: str, hosts: Sequence[str]) -> dict[str, float]:
    """Seconds each of ``hosts`` was being rolled, from profile_tasks' timestamps in ``output``.

    A task belongs to a host when that host is the only one of ``hosts`` in its result lines (``[app1]``,
    ``[app1 -> web1]`` for delegated drain steps); tasks naming none of them (controller steps, hidden skips)
    belong to a host when they sit between two of its tasks. Tasks naming several (a pre-flight on all app
    servers) belong to none. A task lasts until the next task starts (or the TASKS RECAP stamp). Empty when the
    output has no profile_tasks stamps: then nothing here is reliable.
    """
    wanted = set(hosts)
    tasks: list[tuple[float | None, set[str]]] = []
    end: float | None = None
    in_recap = False
    for line in output.splitlines():
        if _TASK.match(line):
            tasks.append((None, set()))
            continue
        if line.startswith("TASKS RECAP"):
            in_recap = True
            continue
        stamp = _STAMP.search(line)
        if stamp:
            seconds = int(stamp["h"]) * 3600 + int(stamp["m"]) * 60 + int(stamp["s"]) + int(stamp["ms"]) / 1000
            if in_recap:
                end = seconds
            elif tasks and tasks[-1][0] is None:
                tasks[-1] = (seconds, tasks[-1][1])
            continue
        result = _RESULT.match(line)
        if result and tasks and result["host"] in wanted:
            tasks[-1][1].add(result["host"])
    if not tasks or any(start is None for start, _ in tasks):
        return {}
    starts = [start for start, _ in tasks if start is not None]
    ends = [*starts[1:], end]
    owners: list[str | None] = [
        next(iter(named)) if len(named) == 1 else ("*" if named else None) for _, named in tasks
    ]
    for index, owner in enumerate(owners):  # a neutral task between two tasks of the same host is that host's
        if owner is None:
            before = next((o for o in reversed(owners[:index]) if o is not None), None)
            after = next((o for o in owners[index + 1 :] if o is not None), None)
            owners[index] = before if before == after else "*"
    seconds_by_host: dict[str, float] = {}
    for owner, start, stop in zip(owners, starts, ends, strict=True):
        if owner in wanted and stop is not None:
            seconds_by_host[owner] = seconds_by_host.get(owner, 0.0) + (stop - start)
    return {host: round(seconds_by_host[host], 1) for host in hosts if host in seconds_by_host}


def failure_excerpt(output: str, limit: int = 16) -> str:
    """The failed tasks for a person: 'TASK [...]', each 'fatal:'/'failed:' line and the first lines of its
    result when it continues on indented lines (result_format yaml); the last lines of output if none."""
    lines = output.splitlines()
    picked: list[str] = []
    task = ""
    following = 0
    for line in lines:
        if _TASK.match(line):
            task, following = line.split(" *")[0], 0
        elif line.startswith(("fatal:", "failed:")):
            picked += [task, line[:300]] if task and task not in picked else [line[:300]]
            following = 4
        elif following and line.startswith((" ", "\t")) and line.strip():
            picked.append(line[:300])
            following -= 1
        else:
            following = 0
    return "\n".join(picked[-limit:]) if picked else "\n".join(lines[-limit:])


def app_hosts_from_graph(graph: str, group: str = "appservers") -> list[str]:
    """Host names under ``@group:`` in `ansible-inventory --graph group` output."""
    names = [m[1] for m in re.finditer(r"\|--([^@\s]\S*)\s*$", graph, re.MULTILINE)]
    return list(dict.fromkeys(names))  # a host in two child groups is listed twice


def pick_good_version(current: str, choices: Sequence[str] = GOOD_VERSIONS) -> str:
    """The first of ``choices`` that is not ``current``: repeated runs always change the release."""
    return next(v for v in choices if v != current)


# ---------------------------------------------------------------- the estate


@dataclass
class Endpoint:
    url: str
    ca: Path
    server_name: str | None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return fetch(self.url, self.ca, path, server_name=self.server_name, timeout=timeout)

    def versions(self, probes: int = VERSION_PROBES) -> dict[str, int]:
        """What /version says over ``probes`` new connections (spread over the web and app servers)."""
        seen: Counter[str] = Counter()
        for _ in range(probes):
            try:
                status, body = self.get("/version")
                version = str(json.loads(body).get("version")) if status == 200 else f"HTTP {status}"
            except (OSError, ValueError) as exc:
                version = f"error: {error_kind(exc)}"
            seen[version] += 1
            time.sleep(0.1)  # well inside the balancer's rate limit
        return dict(seen)


def not_deployed(endpoint: Endpoint, reason: str) -> NotReady:
    return NotReady(
        f"the lab estate is not deployed or not healthy: {reason}.\n"
        f"Bring the lab up and deploy the estate first, from {PROJECT} as root:\n"
        "    make lab-up\n"
        "    .venv/bin/ansible-playbook -i inventories/lab playbooks/site.yml\n"
        f"then run this benchmark again (it checks {endpoint.url}/health with the CA {endpoint.ca})."
    )


def check_estate(endpoint: Endpoint) -> tuple[str, str | None]:
    """(the one version the estate serves, its build id); NotReady with what to do otherwise."""
    if not endpoint.ca.is_file():
        raise not_deployed(endpoint, f"there is no lab CA at {endpoint.ca} (the pki role writes it in site.yml)")
    try:
        status, body = endpoint.get("/health")
    except UsageError as exc:
        raise NotReady(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise not_deployed(
            endpoint, f"{endpoint.url}/health gave no answer ({error_kind(exc)}: {describe(exc)})"
        ) from None
    if status != 200:
        raise not_deployed(
            endpoint, f"{endpoint.url}/health answers HTTP {status}: {body[:300].decode(errors='replace')}"
        )
    versions = endpoint.versions()
    if len(versions) != 1 or next(iter(versions)).startswith(("HTTP ", "error: ")):
        raise NotReady(
            f"{endpoint.url}/version does not answer one version: {versions}. A rollout may have stopped halfway: "
            f"put one release everywhere first, e.g. .venv/bin/ansible-playbook -i inventories/lab {PLAYBOOK} "
            "-e enp_app_version=VERSION"
        )
    current = next(iter(versions))
    try:
        build_id = json.loads(endpoint.get("/version")[1]).get("build_id")
    except (OSError, ValueError):
        build_id = None
    return current, build_id


def inventory_app_hosts(inventory: str) -> list[str]:
    cmd = [str(VENV_BIN / "ansible-inventory"), "-i", inventory, "--graph", "appservers"]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    hosts = app_hosts_from_graph(proc.stdout) if proc.returncode == 0 else []
    if not hosts:
        raise NotReady(
            f"no hosts in group appservers of {inventory} (ansible-inventory rc={proc.returncode}): "
            f"{proc.stderr[-500:]}"
        )
    return hosts


# ---------------------------------------------------------------- release artifacts


@dataclass
class Artifact:
    version: str
    path: str
    build_id: str | None
    built: bool  # False: an artifact that was already in dist/ (the deployed original)


def build_release(version: str, broken: bool = False) -> Artifact:
    cmd = [str(VENV_BIN / "python"), "scripts/build_release.py", "--version", version, "--json"]
    cmd += ["--broken", "health"] if broken else []
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise NotReady(
            f"scripts/build_release.py --version {version} failed (rc={proc.returncode}):\n{proc.stderr[-1500:]}"
        )
    info = json.loads(proc.stdout)
    return Artifact(version, info["artifact"], info.get("build_id"), built=True)


def original_artifact(version: str) -> Artifact:
    """The artifact of the version found deployed: the one in dist/ if there is one, else rebuilt from source."""
    path = PROJECT / "dist" / f"civic-services-{version}.tar.gz"
    if path.is_file() and path.with_name(path.name + ".sha256").is_file():
        return Artifact(version, str(path), None, built=False)
    return build_release(version)


# ---------------------------------------------------------------- one rollout


@dataclass
class Phase:
    name: str  # good | broken | restore
    version_from: str
    version_to: str
    expect_playbook_ok: bool
    expect_version: str  # what /version should answer afterwards
    rc: int | None = None
    rollout_s: float | None = None
    per_host_s: dict[str, float] = field(default_factory=dict)
    s_per_app_host: float | None = None
    requests: int = 0
    failed: int = 0
    rate_limited: int = 0
    skipped: int = 0
    p95_ms: float | None = None
    longest_gap_s: float | None = None
    versions_after: dict[str, int] = field(default_factory=dict)
    as_expected: bool = False
    problems: list[str] = field(default_factory=list)
    loop: dict[str, Any] = field(default_factory=dict)
    log: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version_from} -> {self.version_to}"


def ansible_env() -> dict[str, str]:
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        PROFILE_TASKS_TASK_OUTPUT_LIMIT="500",
        PROFILE_TASKS_SORT_ORDER="none",
        PYTHONUNBUFFERED="1",
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )


def run_playbook(cmd: list[str], log: Path, timeout: float, label: str, loop: RequestLoop) -> tuple[int | None, float]:
    """(rc or None on timeout, seconds); output in ``log``; progress lines: each task, and new loop failures."""
    started = time.monotonic()
    with log.open("wb") as out:
        # Its own session, so a timeout or Ctrl-C stops the whole process group (stop_group).
        proc = subprocess.Popen(  # noqa: S603 - the fixed ansible-playbook command built in run_phase
            cmd, cwd=PROJECT, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    rc: int | None = None
    shown = failed_shown = 0
    try:
        while rc is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=0.5)
            tasks = re.findall(
                r"^(?:TASK|RUNNING HANDLER) \[(?:\w+ : )?(.+?)\] \*+", log.read_text(errors="replace"), re.M
            )
            sent, failed = loop.progress()
            for name in tasks[shown:]:
                elapsed = time.monotonic() - started
                print(f"      {elapsed:6.1f}s  {label}: {name}  (loop: {sent} requests, {failed} failed)", flush=True)
            shown = len(tasks)
            if failed > failed_shown:
                print(
                    f"      {time.monotonic() - started:6.1f}s  ! loop: {failed - failed_shown} more failed request(s)",
                    flush=True,
                )
                failed_shown = failed
            if rc is None and time.monotonic() - started > timeout:
                print(f"      ! {label}: no result after {timeout:.0f}s, stopping ansible-playbook", flush=True)
                stop_group(proc)
                break
    except Interrupted:
        print(f"\n      ! interrupted during {label}: stopping ansible-playbook (PID {proc.pid})", flush=True)
        stop_group(proc)
        raise
    return rc, time.monotonic() - started


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
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_phase(args: argparse.Namespace, endpoint: Endpoint, phase: Phase, app_hosts: list[str], workdir: Path) -> None:
    """Loop on, playbook, loop off, /version; fills ``phase`` in place (also when interrupted)."""
    log = workdir / f"{phase.name}.log"
    phase.log = str(log)
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        args.inventory,
        PLAYBOOK,
        "-e",
        f"enp_app_version={phase.version_to}",
    ]
    for extra in args.extra_vars:
        cmd += ["-e", extra]
    expect = "playbook passes" if phase.expect_playbook_ok else "playbook fails at the first host and rolls it back"
    print(f"\n== {phase.label}: expect {expect}, /version {phase.expect_version}, no failed requests", flush=True)
    print(f"   {' '.join(cmd[1:])}  (log {log})", flush=True)
    config = LoopConfig(
        url=endpoint.url,
        ca_file=endpoint.ca,
        paths=tuple(args.paths),
        server_name=endpoint.server_name,
        rate=args.rate,
        workers=args.workers,
        timeout=args.request_timeout,
        keepalive=args.keepalive,
    )
    loop = RequestLoop(config).start()
    try:
        time.sleep(args.settle)
        try:
            phase.rc, seconds = run_playbook(cmd, log, args.timeout, phase.name, loop)
        except Interrupted:
            phase.problems.append("interrupted: the playbook was stopped")
            raise
        if phase.rc is not None:
            phase.rollout_s = round(seconds, 1)
        time.sleep(args.settle)
    finally:
        with interrupts_deferred():  # requests in flight end within their timeout
            loop.stop()
            result = loop.result(timeout=args.request_timeout * 4 + 10)
        summary = result.summary
        phase.loop = result.to_dict()
        phase.requests, phase.failed, phase.rate_limited = summary.total, summary.failed, summary.rate_limited
        phase.skipped = summary.skipped
        phase.p95_ms, phase.longest_gap_s = summary.latency_ms.get("p95"), summary.longest_gap_s
        print(f"   loop: {result.summary_line()}", flush=True)
    output = log.read_text(errors="replace")
    phase.per_host_s = per_host_seconds(output, app_hosts)
    if phase.rollout_s is not None:
        phase.s_per_app_host = round(phase.rollout_s / len(app_hosts), 1)
    phase.versions_after = endpoint.versions()
    evaluate(phase, output)
    verdict = (
        "as expected" if phase.as_expected else "UNEXPECTED: " + "; ".join(p.split("\n")[0] for p in phase.problems)
    )
    print(
        f"   playbook rc={phase.rc} in {fmt(phase.rollout_s)} s; /version after: {phase.versions_after}; {verdict}",
        flush=True,
    )


def evaluate(phase: Phase, output: str) -> None:
    problems = phase.problems
    if phase.rc is None:
        problems.append("the playbook timed out (stopped)")
    elif (phase.rc == 0) != phase.expect_playbook_ok:
        problems.append(f"the playbook {'failed' if phase.rc else 'passed'} (rc={phase.rc})")
        if phase.rc:
            problems.append("failed tasks:\n" + failure_excerpt(output))
    if phase.failed:
        problems.append(f"{phase.failed} of {phase.requests} requests failed")
    if phase.requests == 0:
        problems.append("the request loop sent nothing")
    if set(phase.versions_after) != {phase.expect_version}:
        problems.append(f"/version answers {phase.versions_after}, expected only {phase.expect_version}")
    phase.as_expected = not problems


# ---------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def short(version: str) -> str:
    return version.replace("+broken-health", "+broken")


def print_report(
    phases: list[Phase], app_hosts: list[str], endpoint: Endpoint, args: argparse.Namespace, total_s: float
) -> dict[str, Any]:
    print(
        f"\nRolling redeploy benchmark (bench/redeploy.py) - {PLAYBOOK} on {args.inventory}, "
        f"{len(app_hosts)} app hosts ({', '.join(app_hosts)})"
    )
    print(
        f"request loop: {args.rate:g}/s, {args.workers} workers, "
        f"{'keep-alive' if args.keepalive else 'new connection each'}, timeout {args.request_timeout:g} s, "
        f"{' '.join(args.paths)} via {endpoint.url}"
        + (f" (name {endpoint.server_name})" if endpoint.server_name else "")
        + f"; from {args.settle:g} s before to {args.settle:g} s after each playbook"
    )
    print(f"machine: {os.cpu_count()} cores, {platform.release()}, load average {os.getloadavg()[0]:.2f}")
    host_cols = "".join(f" {h + ' s':>8}" for h in app_hosts)
    head = (
        f"{'phase':<8} {'release':<24} {'playbook':<10} {'rollout s':>9} {'s/app host':>10}{host_cols} "
        f"{'requests':>8} {'failed':>6} {'429':>4} {'p95 ms':>7} {'gap s':>6}  {'/version after':<16} result"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for p in phases:
        stopped = "stopped" if any(x.startswith("interrupted") for x in p.problems) else "timeout"
        playbook = stopped if p.rc is None else ("ok" if p.rc == 0 else f"failed {p.rc}")
        after = ",".join(short(v) for v in p.versions_after) or "-"
        hosts = "".join(f" {fmt(p.per_host_s.get(h)):>8}" for h in app_hosts)
        release = f"{short(p.version_from)} -> {short(p.version_to)}"
        verdict = "as expected" if p.as_expected else "UNEXPECTED"
        print(
            f"{p.name:<8} {release:<24} {playbook:<10} {fmt(p.rollout_s):>9} "
            f"{fmt(p.s_per_app_host):>10}{hosts} {p.requests:>8} {p.failed:>6} {p.rate_limited:>4} "
            f"{fmt(p.p95_ms):>7} {fmt(p.longest_gap_s, '.2f'):>6}  {after:<16} {verdict}"
        )
    print(
        f"""
Columns:
  rollout s     wall time of ansible-playbook playbooks/redeploy.yml (all of it: pre-flight, every host, checks)
  s/app host    rollout s / app hosts in the inventory (the broken rollout stops after its first host)
  <host> s      that host's share, from profile_tasks timestamps: the tasks whose results name only it (drain on the
                web tier, deploy, health check, re-enable; '-' when the log does not allow a clean split)
  requests      sent by the loop during the rollout and --settle s either side; failed includes 429
  p95 ms        95th percentile latency of answered requests; gap s = longest time without a successful answer
  /version      what {VERSION_PROBES} new connections to /version answered after the rollout""".rstrip()
    )
    ratios: dict[str, Any] = {}
    total_requests = sum(p.requests for p in phases)
    total_failed = sum(p.failed for p in phases)
    print()
    if phases:
        verdict = "YES" if total_failed == 0 and total_requests else "NO"
        print(
            f"zero failed requests during the rollouts: {verdict} ({total_failed} of {total_requests} failed: "
            + ", ".join(f"{p.name} {p.failed}/{p.requests}" for p in phases)
            + ")"
        )
        ratios["failed_over_total"] = round(total_failed / total_requests, 5) if total_requests else None
    for p in phases:
        if p.s_per_app_host is not None and p.expect_playbook_ok:
            print(
                f"{p.name}: {p.rollout_s:.1f} s for {len(app_hosts)} app hosts = {p.s_per_app_host:.1f} s per app host"
            )
            ratios[f"{p.name}_s_per_app_host"] = p.s_per_app_host
    broken = next((p for p in phases if p.name == "broken"), None)
    if broken and broken.rollout_s is not None:
        touched = [h for h in app_hosts if h in broken.per_host_s]
        print(
            f"broken: stopped after {broken.rollout_s:.1f} s"
            + (f" having touched {', '.join(touched)}" if touched else "")
            + f"; /version afterwards {broken.versions_after} (expected {broken.expect_version} only)"
        )
    for p in phases:
        for failure in p.loop.get("failures", [])[:5]:
            what = failure["detail"] or failure["error"] or f"HTTP {failure['status']}"
            print(f"  {p.name}: failed request at +{failure['offset_s']:.2f}s {failure['path']}: {what}")
        if p.skipped:
            print(f"  {p.name}: {p.skipped} requests not sent (every worker was waiting): answers were slow")
        if p.rate_limited:
            print(
                f"  {p.name}: {p.rate_limited} answered 429: the loop (plus anything else on this controller) "
                "was too fast; lower --rate"
            )
        for problem in p.problems:
            print(f"  {p.name}: " + problem.replace("\n", "\n      "))
    print(f"total benchmark time: {total_s:.0f} s")
    return ratios


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Exit status: 0 every phase as expected, 1 something unexpected (failed requests, wrong version, "
        "playbook result), 2 usage, 3 the estate is not ready (with what to do), 130 interrupted.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the portal's load balancer (default {DEFAULT_URL})")
    parser.add_argument("--ca", type=Path, default=DEFAULT_CA, help=f"CA to verify it with (default {DEFAULT_CA})")
    parser.add_argument(
        "--server-name",
        default=DEFAULT_SERVER_NAME,
        help=f"certificate name, SNI and Host (default {DEFAULT_SERVER_NAME}; '' for the URL's host)",
    )
    parser.add_argument("--inventory", "-i", default="inventories/lab", help="inventory (default inventories/lab)")
    parser.add_argument(
        "--versions",
        default=",".join(GOOD_VERSIONS),
        help=f"two good versions to alternate between (default {','.join(GOOD_VERSIONS)})",
    )
    parser.add_argument(
        "--broken-version", default=BROKEN_VERSION, help=f"version of the broken release (default {BROKEN_VERSION})"
    )
    parser.add_argument("--skip-broken", action="store_true", help="only the good rollout and the restore")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"loop requests/s (default {DEFAULT_RATE:g}; the balancer allows 10/s, burst 20)",
    )
    parser.add_argument("--workers", type=int, default=4, help="loop requests in flight at most (default 4)")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="seconds per loop request (default 5)")
    parser.add_argument("--keepalive", action="store_true", help="loop reuses connections (default: a new one each)")
    parser.add_argument(
        "--path", dest="paths", action="append", help=f"loop path, repeatable (default {' '.join(DEFAULT_PATHS)})"
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="loop seconds before and after each playbook (default 5)"
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per playbook run (default 1200)")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], help="passed to every redeploy.yml run")
    parser.add_argument("--workdir", type=Path, help="where logs and JSON go (default /var/tmp/enp-bench-redeploy-*)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write results as JSON (default WORKDIR/redeploy.json)",
    )
    args = parser.parse_args(argv)
    args.paths = args.paths or list(DEFAULT_PATHS)
    args.versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    if len(args.versions) != 2 or args.versions[0] == args.versions[1]:
        parser.error("--versions: give two different versions, e.g. 1.0.1,1.0.2")
    if args.broken_version in args.versions:
        parser.error("--broken-version must differ from the good --versions")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    endpoint = Endpoint(args.url, args.ca, args.server_name or None)
    try:
        if not (VENV_BIN / "ansible-playbook").exists():
            raise NotReady(f"{VENV_BIN}/ansible-playbook is missing: run `make setup` first.")
        print(f"redeploy: checking the estate at {endpoint.url} (CA {endpoint.ca})", flush=True)
        original, original_build = check_estate(endpoint)
        if not (PROJECT / PLAYBOOK).is_file():
            raise NotReady(f"{PLAYBOOK} does not exist in {PROJECT}: there is no rolling redeploy to measure yet.")
        app_hosts = inventory_app_hosts(args.inventory)
        target = pick_good_version(original, args.versions)
        print(f"   serving {original} (build {original_build or '?'}); app hosts {', '.join(app_hosts)}", flush=True)
        print(
            f"   building releases: {target}" + ("" if args.skip_broken else f", {args.broken_version} (broken)"),
            flush=True,
        )
        artifacts = [build_release(target)]
        if not args.skip_broken:
            artifacts.append(build_release(args.broken_version, broken=True))
        restore = original_artifact(original)
        artifacts.append(restore)
        for artifact in artifacts:
            how = f"built, build {artifact.build_id}" if artifact.built else "already in dist/, deployed before"
            print(f"   {artifact.path} ({how})", flush=True)
        if restore.built and original_build and restore.build_id != original_build:
            print(
                f"   note: {restore.path} was rebuilt from today's source (build {restore.build_id}); the hosts "
                f"keep the unpacked {original} (build {original_build}) and switch back to it",
                flush=True,
            )
    except NotReady as exc:
        print(f"bench/redeploy.py: {exc}", file=sys.stderr)
        return EXIT_NOT_READY
    except UsageError as exc:
        print(f"bench/redeploy.py: {exc}", file=sys.stderr)
        return EXIT_USAGE

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="enp-bench-redeploy-", dir=WORK_PARENT))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    plan = [Phase("good", original, target, True, target)]
    if not args.skip_broken:
        plan.append(Phase("broken", target, args.broken_version, False, target))
    print(
        f"redeploy: {len(plan) + 1} rollouts ({', '.join(p.label for p in plan)}, then restore {original}); "
        f"work folder {workdir}",
        flush=True,
    )
    started = time.monotonic()
    phases: list[Phase] = []
    interrupted = False
    try:
        for phase in plan:
            phases.append(phase)  # filled in place, so an interrupted phase is still reported
            run_phase(args, endpoint, phase, app_hosts, workdir)
            if not phase.as_expected and phase.name == "good":
                print("   the good rollout did not go as expected: skipping the broken one, restoring", flush=True)
                break
        now = phases[-1].versions_after if phases else {}
        if set(now) != {original}:
            current = next(iter(now)) if len(now) == 1 else "?"
            phases.append(Phase("restore", current, original, True, original))
            run_phase(args, endpoint, phases[-1], app_hosts, workdir)
        else:
            print(f"\n== restore: the estate still serves {original} only; nothing to restore", flush=True)
    except Interrupted as exc:
        interrupted = True
        if phases and not phases[-1].as_expected and not phases[-1].problems:
            phases[-1].problems.append("interrupted")
        print(
            f"\ninterrupted ({exc}). The estate may be between releases: check {endpoint.url}/version and put "
            f"{original} back with\n  .venv/bin/ansible-playbook -i {args.inventory} {PLAYBOOK} "
            f"-e enp_app_version={original}",
            flush=True,
        )
    total = time.monotonic() - started
    ratios = print_report(phases, app_hosts, endpoint, args, total)
    if args.json is not None:
        path = Path(args.json) if args.json else workdir / "redeploy.json"
        payload = {
            "benchmark": "bench/redeploy.py",
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "loadavg": os.getloadavg()[0]},
            "inventory": args.inventory,
            "app_hosts": app_hosts,
            "original_version": original,
            "total_seconds": round(total, 1),
            "interrupted": interrupted,
            "ratios": ratios,
            "phases": [asdict(p) for p in phases],
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"json: {path}")
    print(f"logs: {workdir}/<phase>.log")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if phases and all(p.as_expected for p in phases) else EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
