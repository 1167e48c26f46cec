"""One typed way into ansible-runner.

Every playbook the CLI starts goes through :func:`run_playbook`, which owns runner's untyped keyword
arguments. Each run gets its own private data dir under ``<project>/.enp/runs/<timestamp>-<command>/``;
runner writes that run's artifacts (command, stdout, job_events/, status, rc) into the same directory, so
one folder holds everything about one run, and runner's ``rotate_artifacts`` keeps the newest ones.

The results come from the recorded events: ``playbook_on_stats`` gives the per-host counts and the data that
playbooks publish with ``ansible.builtin.set_stats`` (``artifact_data``); ``runner_on_failed`` and
``runner_on_unreachable`` give the failing task and message for each host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeAlias

import ansible_runner
from ansible_runner.exceptions import AnsibleRunnerException

PROJECT_ENV = "ENP_PROJECT_DIR"
"""Environment variable naming the repository root (the directory holding ansible.cfg)."""

RUNS_SUBDIR = Path(".enp") / "runs"
"""Where run directories live, relative to the project dir (ignored by git)."""

KEEP_RUNS = 50
"""rotate_artifacts: how many run directories runner keeps; the oldest are deleted when a new run starts."""

# Runner only injects its own per-run jsonfile fact cache (ANSIBLE_CACHE_PLUGIN*) when fact_cache_type is
# "jsonfile". Any other value leaves fact caching to the project's ansible.cfg, whose cache in .cache/facts is
# shared between runs on purpose (a second playbook in the same drill skips re-gathering).
_FACT_CACHE_FROM_ANSIBLE_CFG = "ansible.cfg"

# How often (seconds) runner polls the cancel callback; runner's default of 5 s makes Ctrl-C feel ignored.
_POLL_SECONDS = 1

Event: TypeAlias = Mapping[str, Any]
EventHandler: TypeAlias = Callable[[Event], None]
StatusHandler: TypeAlias = Callable[[str], None]
CancelCallback: TypeAlias = Callable[[], bool]

_STAT_KEYS = ("ok", "changed", "dark", "failures", "ignored", "rescued", "skipped", "processed")
_MSG_LIMIT = 2000


class ProjectNotFoundError(Exception):
    """No enp project (a directory with ansible.cfg) could be located."""


class RunnerSetupError(Exception):
    """The run could not be started: missing playbook, inventory or ansible-playbook."""


@dataclass(frozen=True)
class HostFailure:
    """One host that failed or could not be reached, with the task and Ansible's message."""

    host: str
    task: str
    msg: str
    unreachable: bool = False
    task_path: str = ""


@dataclass
class RunResult:
    """What one playbook run produced.

    status: runner's final status: successful, failed, canceled, timeout or error.
    rc: ansible-playbook's exit status (254 when canceled).
    stats: playbook_on_stats counts, {"ok": {host: n}, "failures": {...}, "dark": {...}, ...}; empty if the
        playbook never reached its recap (syntax error, interrupted).
    set_stats: global data published with ansible.builtin.set_stats, e.g. {"enp_lab_status": {...}}.
    """

    status: str
    rc: int
    stats: dict[str, dict[str, int]]
    artifact_dir: Path
    failures: list[HostFailure] = field(default_factory=list)
    set_stats: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def unreachable_hosts(self) -> list[str]:
        return sorted(host for host, count in self.stats.get("dark", {}).items() if count)

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(host for host, count in self.stats.get("failures", {}).items() if count)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        data["artifact_dir"] = str(self.artifact_dir)
        return data


# --------------------------------------------------------------------------------------------------------------
# Locating the project and the run directory


def find_project_dir(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The repository root: $ENP_PROJECT_DIR, else the first directory holding ansible.cfg above ``start``.

    Without ``start`` the search begins at this package (an editable install lives in the repository), then at
    the current directory.
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(PROJECT_ENV)
    if configured:
        path = Path(configured).expanduser().resolve()
        if not (path / "ansible.cfg").is_file():
            raise ProjectNotFoundError(
                f"{PROJECT_ENV}={configured} has no ansible.cfg; point it at the root of the enp repository"
            )
        return path
    starts = [start] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        for directory in (origin.resolve(), *origin.resolve().parents):
            if (directory / "ansible.cfg").is_file():
                return directory
    searched = " or ".join(str(s) for s in starts)
    raise ProjectNotFoundError(
        f"no ansible.cfg found above {searched}; run enp from the repository or set {PROJECT_ENV} to its root"
    )


def _slug(command: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", command).strip("-").lower() or "run"


def new_run_dir(project_dir: Path, command: str, now: datetime | None = None) -> Path:
    """Create ``<project>/.enp/runs/<UTC timestamp>-<command>/`` (suffixed -2, -3... if taken)."""
    runs = project_dir / RUNS_SUBDIR
    runs.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{_slug(command)}"
    for attempt in range(1, 1000):
        path = runs / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise RunnerSetupError(f"cannot create a run directory under {runs}: 999 runs named {base} already exist")


def _tool_path() -> str:
    """PATH with this interpreter's bin dir first, so a venv's ansible-playbook is found without activation."""
    bin_dir = str(Path(sys.executable).parent)
    current = os.environ.get("PATH", os.defpath)
    if shutil.which("ansible-playbook", path=bin_dir) is None and shutil.which("ansible-playbook") is None:
        raise RunnerSetupError(
            f"ansible-playbook not found next to {sys.executable} or on PATH; install the tools with `make setup`"
        )
    return os.pathsep.join([bin_dir, current])


# --------------------------------------------------------------------------------------------------------------
# Reading results out of runner events


def _failure_message(res: Mapping[str, Any]) -> str:
    """The most useful one-paragraph explanation in a failed or unreachable task result."""
    parts: list[str] = []
    msg = res.get("msg")
    if msg:
        parts.append(str(msg))
    for item in res.get("results") or []:
        if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
            label = item.get("_ansible_item_label", item.get("item"))
            parts.append(f"item {label}: {_failure_message(item)}")
            break
    for key in ("stderr", "module_stderr", "stdout", "module_stdout"):
        text = res.get(key)
        if isinstance(text, str) and text.strip():
            tail = text.strip().splitlines()[-3:]
            parts.append(f"{key}: " + " / ".join(line.strip() for line in tail))
            break
    rc = res.get("rc")
    if isinstance(rc, int) and rc != 0:
        parts.append(f"exit status {rc}")
    message = "; ".join(parts) if parts else "no message from Ansible"
    return message if len(message) <= _MSG_LIMIT else message[: _MSG_LIMIT - 3] + "..."


def _merge_stats_data(into: dict[str, Any], data: Mapping[str, Any], aggregate: bool) -> None:
    """ansible.builtin.set_stats semantics: aggregate merges dicts and concatenates lists, else replace."""
    for key, value in data.items():
        old = into.get(key)
        if aggregate and isinstance(old, dict) and isinstance(value, Mapping):
            into[key] = {**old, **value}
        elif aggregate and isinstance(old, list) and isinstance(value, list):
            into[key] = old + value
        else:
            into[key] = value


def summarize_events(
    events: Iterable[Event],
) -> tuple[dict[str, dict[str, int]], list[HostFailure], dict[str, Any]]:
    """(stats, failures, set_stats) from a run's events, in the order runner recorded them.

    A host's failure is its last failed/unreachable event that did not have ignore_errors; hosts whose failure
    was rescued (not counted in the recap) are dropped. When the recap is missing (run interrupted), set_stats
    is rebuilt from the set_stats task results seen so far.
    """
    stats: dict[str, dict[str, int]] = {}
    last_failure: dict[str, HostFailure] = {}
    seen_set_stats: dict[str, Any] = {}
    recap_set_stats: dict[str, Any] | None = None

    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            stats = {key: dict(data.get(key) or {}) for key in _STAT_KEYS}
            recap_set_stats = dict(data.get("artifact_data") or {})
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                continue
            host = str(data.get("host", "?"))
            last_failure[host] = HostFailure(
                host=host,
                task=str(data.get("task") or data.get("task_action") or "?"),
                msg=_failure_message(data.get("res") or {}),
                unreachable=kind == "runner_on_unreachable",
                task_path=str(data.get("task_path") or ""),
            )
        elif kind == "runner_on_ok":
            published = (data.get("res") or {}).get("ansible_stats")
            if isinstance(published, Mapping) and not published.get("per_host"):
                _merge_stats_data(seen_set_stats, published.get("data") or {}, bool(published.get("aggregate", True)))

    if stats:
        counted = {h for key in ("failures", "dark") for h, n in stats[key].items() if n}
        failures = [f for h, f in last_failure.items() if h in counted]
        failures += [
            HostFailure(host=h, task="?", msg="no failure event was recorded; read stdout in the run directory")
            for h in counted - last_failure.keys()
        ]
    else:
        failures = list(last_failure.values())
    failures.sort(key=lambda f: f.host)
    return stats, failures, recap_set_stats if recap_set_stats is not None else seen_set_stats


# --------------------------------------------------------------------------------------------------------------
# Ctrl-C


@contextlib.contextmanager
def interrupt_flag() -> Iterator[threading.Event]:
    """While active, SIGINT, SIGTERM and SIGHUP (terminal gone) set the returned flag instead of killing enp, so
    the run can stop ansible-playbook cleanly and still be recorded; the previous handlers come back afterwards."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def _handler(_signum: int, _frame: FrameType | None) -> None:
        flag.set()

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class GracefulCancel:
    """runner's cancel_callback that stops ansible-playbook the way Ctrl-C in a terminal does.

    runner cancels by SIGKILL to ansible-playbook's process group, which misses the workers: they run each task
    in a session of their own and would go on running it, orphaned. So when a stop is first requested this sends
    SIGINT to ansible-playbook (its pid comes with every event): it ends its workers and exits ("User
    interrupted execution"). Only if it is still running ``grace`` seconds later is runner told to cancel.
    """

    def __init__(self, requested: CancelCallback, grace: float = 15.0, on_request: StatusHandler | None = None) -> None:
        self.requested = requested
        self.grace = grace
        self.on_request = on_request
        self.pid: int | None = None
        self.requested_at: float | None = None

    def observe(self, event: Event) -> None:
        """Remember ansible-playbook's pid from an event."""
        pid = event.get("pid")
        if isinstance(pid, int) and pid > 0:
            self.pid = pid

    def __call__(self) -> bool:
        if self.requested_at is None:
            if not self.requested():
                return False
            self.requested_at = time.monotonic()
            if self.on_request is not None:
                self.on_request("canceling")
            return not self._interrupt()
        return time.monotonic() - self.requested_at >= self.grace

    def _interrupt(self) -> bool:
        if self.pid is None:
            return False
        try:
            # runner starts ansible-playbook as a session leader; anything else means the pid is not (or no
            # longer) ours.
            if os.getpgid(self.pid) != self.pid:
                return False
            os.kill(self.pid, signal.SIGINT)
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------------------------------------------
# The wrapper


def run_playbook(
    playbook: str | Path,
    *,
    command: str,
    project_dir: Path,
    inventory: str | Path,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    verbosity: int = 0,
    event_handler: EventHandler | None = None,
    status_handler: StatusHandler | None = None,
    cancel_callback: CancelCallback | None = None,
    keep_runs: int = KEEP_RUNS,
) -> RunResult:
    """Run one playbook of the project with ansible-runner and return what happened.

    playbook and inventory are paths relative to ``project_dir`` (or absolute); both must exist. ``command``
    names the run directory (e.g. "lab up"). ``check`` adds ``--check --diff``. Handlers get every runner event
    and every status change (plus "canceling" when a stop was asked for). ``cancel_callback`` returning True stops
    the run; without one, Ctrl-C (SIGINT), SIGTERM and SIGHUP do. Either way see :class:`GracefulCancel`.
    """
    project_dir = project_dir.resolve()
    playbook_path = (project_dir / playbook).resolve()
    inventory_path = (project_dir / inventory).resolve()
    if not playbook_path.is_file():
        raise RunnerSetupError(f"playbook {playbook_path} does not exist")
    if not inventory_path.exists():
        # runner would take a missing path for inline inventory text; refuse instead.
        raise RunnerSetupError(f"inventory {inventory_path} does not exist")
    envvars = {"ANSIBLE_CONFIG": str(project_dir / "ansible.cfg"), "PATH": _tool_path()}
    run_dir = new_run_dir(project_dir, command)

    def on_status(status: Mapping[str, Any], runner_config: object = None) -> None:
        if status_handler is not None:
            status_handler(str(status.get("status", "")))

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        requested = cancel_callback or stack.enter_context(interrupt_flag()).is_set
        cancel = GracefulCancel(requested, on_request=status_handler)

        def on_event(event: dict[str, Any]) -> bool:
            cancel.observe(event)
            if event_handler is not None:
                event_handler(event)
            return True  # runner writes the event to job_events/ only if the handler returns True

        try:
            runner = ansible_runner.run(
                private_data_dir=str(run_dir),
                # artifacts of this run land in the run dir itself: <artifact_dir>/<ident> == run_dir
                artifact_dir=str(run_dir.parent),
                ident=run_dir.name,
                rotate_artifacts=keep_runs,
                project_dir=str(project_dir),
                playbook=str(playbook_path),
                inventory=str(inventory_path),
                extravars=dict(extravars or {}),
                envvars=envvars,
                cmdline="--check --diff" if check else None,
                verbosity=verbosity or None,
                fact_cache_type=_FACT_CACHE_FROM_ANSIBLE_CFG,
                settings={"pexpect_timeout": _POLL_SECONDS},
                quiet=True,
                event_handler=on_event,
                status_handler=on_status,
                cancel_callback=cancel,
            )
        except AnsibleRunnerException as exc:
            raise RunnerSetupError(f"ansible-runner could not start the run ({exc}); run directory {run_dir}") from exc
    duration = time.monotonic() - started
    stats, failures, set_stats = summarize_events(runner.events)
    status = str(runner.status)
    if cancel.requested_at is not None and status != "successful":
        status = "canceled"  # ansible-playbook stopped on our SIGINT reports "failed", rc 99
    return RunResult(
        status=status,
        rc=int(runner.rc if runner.rc is not None else -1),
        stats=stats,
        artifact_dir=Path(runner.config.artifact_dir),
        failures=failures,
        set_stats=set_stats,
        duration=round(duration, 3),
    )


def output_tail(artifact_dir: Path, lines: int = 15) -> list[str]:
    """The last lines of ansible-playbook's output in a run directory, without colour codes."""
    try:
        text = (artifact_dir / "stdout").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "")
    return [line for line in plain.splitlines() if line.strip()][-lines:]
