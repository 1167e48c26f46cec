"""Incidents: the state of one emergency rebuild on disk, so that `enp recover` can be killed and rerun.

An incident lives in ``<project>/.enp/incidents/<ID>/`` (``ID`` like ``INC-20261206-0750``):

``incident.json``
    who declared it and when: ``{"format", "id", "occurred_at", "detected_at", "declared_by", "created_at"}``,
    times in UTC ISO 8601 (``2026-12-06T07:50:00Z``); ``occurred_at`` may be null (unknown).
``journal.jsonl``
    append-only, one JSON object per line, each written with a single ``write()`` on an ``O_APPEND`` file and
    fsync'd before enp goes on. Events: ``incident_started``, ``phase_started`` (before the playbook starts),
    ``phase_running`` (ansible-playbook's pid and the ansible-runner artifact dir, at its first event),
    ``phase_done`` / ``phase_failed`` (status, rc, hosts, stats, artifact dir), ``phase_dry_run`` (check mode or
    plan only: never counts as done), ``report_written`` / ``report_failed``. A torn last line (power cut) is
    ignored when reading.
``lock``
    ``fcntl.flock``-ed by the enp process running phases (its PID written inside); the kernel releases it
    when that process dies, kill -9 included.
``<phase>/``
    where phase playbooks may write their outputs (``enp_incident_dir`` is passed to every playbook);
    ``restore/`` is the restore playbook's ``enp_restore_dir`` (decision.json, restore-report.json).
``runs/<run dir>/``
    a copy of each phase run's ansible-playbook output (stdout, status, rc, command): ``.enp/runs/`` keeps only
    the newest runs, the incident's record must outlive that rotation.
``run.json``, ``report/``
    written by `enp report`.

A phase is *done* when its last ``phase_started`` is followed by ``phase_done``; a ``phase_started`` without an
end means enp was killed mid-phase: the phase is *interrupted* and is rerun from its start (phase playbooks are
idempotent). Completed phases are skipped unless the operator asks (``--from`` / ``--redo``).

The run JSON handed to ``enp.report.write_reports(run, out_dir)`` is enp/report.py's input format
``enp-recovery-run/1`` (its docstring is the reference; it refuses unknown keys). `enp report` assembles it
(:func:`assemble_run`), keeps it in ``<incident_dir>/run.json`` and writes the report into ``<incident_dir>/report/``::

    {
      "format": "enp-recovery-run/1",
      "generated_at": "2026-12-06T09:12:00Z",
      "incident": {"id", "occurred_at", "detected_at", "declared_at", "declared_by"},   # from incident.json;
                                                      # its other report keys (organisation, category, environment,
                                                      # impact, indicators...) are passed on when an operator adds them
      "phases": [                                     # every ATTEMPT, in the order they started; a phase repeats
        {"name": "rebuild", "status": "failed",       # done | failed | dry-run (an interrupted attempt is failed)
         "started_at": ISO, "ended_at": ISO,          # interrupted: ended_at = the last thing journaled about it
         "hosts": ["web1", ...],                      # hosts the playbook processed
         "summary": "3 hosts: ok 12, changed 4, failed 0, unreachable 0; run /srv/enp/.enp/runs/<dir>"},
        ...                                           # the summary names the ansible-runner artifact dir
      ],
      "decision": <incident_dir>/restore/decision.json            (absent if there is none)
      "restore": <incident_dir>/restore/restore-report.json       (absent if there is none)
      "<section>": <incident_dir>/<phase>/<section>.json          for the report's sections: drift_findings,
                   hardening, services, ulbs_online, ulbs_total, evidence, not_applicable, targets; when several
                   phases write one section, lists are concatenated and objects merged, in phase order
    }

Other ``<phase>/*.json`` files stay in the incident folder (the report does not take unknown keys); a phase
output that is not valid JSON or is larger than 20 MiB is left out and named on screen. `enp incident status
--json` gives each phase's last attempt with its ``artifacts_dir``, ``attempts`` and per-status host counts.

Everything here is pure (parsing, deciding, assembling) except the small file helpers at the end
(:class:`IncidentStore`, :func:`append_event`, :func:`acquire_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enp.report import INCIDENT_KEYS

INCIDENTS_SUBDIR = Path(".enp") / "incidents"
"""Where incident state directories live, relative to the project dir (ignored by git)."""

CURRENT_FILE = "CURRENT"
"""File in the incidents folder naming the current incident."""

JOURNAL = "journal.jsonl"
INCIDENT_FILE = "incident.json"
LOCK_FILE = "lock"
RUN_FILE = "run.json"
REPORT_SUBDIR = "report"

INCIDENT_FORMAT = "enp-incident/1"
RUN_FORMAT = "enp-recovery-run/1"
"""The input format of enp.report (its module docstring defines every field)."""

PLAYBOOKS_ENV = "ENP_PHASE_PLAYBOOKS"
"""Overrides where phase playbooks are: a path template with ``{phase}``, e.g. ``tests/x/resume_{phase}.yml``."""

DEFAULT_PLAYBOOKS = "playbooks/{phase}.yml"

MAX_OUTPUT_BYTES = 20 * 1024 * 1024
"""Phase output files larger than this are not read into the run JSON."""

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Phase:
    """One step of the recovery: one playbook; destructive ones need the typed phase name as confirmation."""

    name: str
    help: str
    destructive: bool = False
    warning: str = ""

    @property
    def confirm_var(self) -> str:
        """The extra-var that carries the confirmation to the playbook (e.g. enp_contain_confirm=contain)."""
        return f"enp_{self.name}_confirm"

    def playbook(self, template: str = DEFAULT_PLAYBOOKS) -> str:
        return template.format(phase=self.name)


PHASES: tuple[Phase, ...] = (
    Phase(
        "contain",
        "isolate the zones, put public services behind a maintenance page, revoke app and backup credentials",
        destructive=True,
        warning="enp contain isolates every zone, takes the public services offline behind a maintenance page and "
        "revokes the app's and backup clients' credentials.",
    ),
    Phase("evidence", "collect and hash evidence (findings, processes, logs, files) before anything is wiped"),
    Phase(
        "rebuild",
        "destroy the compromised hosts and recreate them from the golden image, hardened, with fresh keys",
        destructive=True,
        warning="enp rebuild DESTROYS every estate host and recreates it from the golden image. Run enp evidence "
        "first: what is on the hosts now is lost.",
    ),
    Phase(
        "restore",
        "restore the database and documents from the latest clean restore point",
        destructive=True,
        warning="enp restore replaces the database and the document stores with the latest clean restore point.",
    ),
    Phase("verify", "check the rebuilt estate: baseline clean, hardening, seeded data, app health"),
    Phase(
        "reopen",
        "bring services back zone by zone and reopen the portal to citizens",
        destructive=True,
        warning="enp reopen opens the rebuilt estate to the public again.",
    ),
)
"""The recovery, in order. Each phase runs ``playbooks/<name>.yml``; `enp report` comes after the last."""

PHASE_NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)
PHASES_BY_NAME: dict[str, Phase] = {p.name: p for p in PHASES}


class IncidentError(Exception):
    """The operator asked for something the incident state does not allow; the message says what to do."""


# --------------------------------------------------------------------------------------------------------------
# Times and IDs


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """2026-12-06T07:50:00Z (UTC, seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a zone (Z or +05:30); a time without a zone is refused, not guessed."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except ValueError:
        raise IncidentError(
            f"{text!r} is not an ISO 8601 time; write it like 2026-12-06T07:50:00Z (UTC) or 2026-12-06T13:20+05:30"
        ) from None
    if moment.tzinfo is None:
        raise IncidentError(
            f"{text!r} has no time zone; add Z for UTC (e.g. {value}Z) or the offset, e.g. {value}+05:30 for IST"
        )
    return moment.astimezone(UTC)


def default_incident_id(detected_at: datetime) -> str:
    """INC-YYYYMMDD-HHMM from the detection time (UTC)."""
    return detected_at.astimezone(UTC).strftime("INC-%Y%m%d-%H%M")


def unique_id(base: str, taken: Iterable[str]) -> str:
    """base, else base-2, base-3... (two incidents declared in the same minute)."""
    used = set(taken)
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"


def check_incident_id(incident_id: str) -> str:
    if not _ID_RE.match(incident_id):
        raise IncidentError(
            f"incident ID {incident_id!r} is not usable as a folder name: use letters, digits, '.', '_' and '-' "
            "(at most 64), e.g. INC-20261206-0750"
        )
    return incident_id


def new_incident(
    *,
    now: datetime,
    incident_id: str | None = None,
    detected_at: str | None = None,
    occurred_at: str | None = None,
    declared_by: str = "",
    taken: Iterable[str] = (),
) -> dict[str, Any]:
    """The incident.json record, validated: times in UTC, occurred <= detected <= now (+5 min of clock skew)."""
    detected = parse_time(detected_at) if detected_at else now
    occurred = parse_time(occurred_at) if occurred_at else None
    if (detected - now).total_seconds() > 300:
        raise IncidentError(f"--detected-at {format_time(detected)} is in the future (now {format_time(now)})")
    if occurred is not None and occurred > detected:
        raise IncidentError(
            f"--occurred-at {format_time(occurred)} is after --detected-at {format_time(detected)}; an attack is "
            "noticed after it happens"
        )
    taken = list(taken)
    if incident_id:
        check_incident_id(incident_id)
        if incident_id in taken:
            raise IncidentError(
                f"incident {incident_id} already exists; continue it with: enp recover --incident {incident_id}"
            )
    else:
        incident_id = unique_id(default_incident_id(detected), taken)
    return {
        "format": INCIDENT_FORMAT,
        "id": incident_id,
        "occurred_at": format_time(occurred) if occurred else None,
        "detected_at": format_time(detected),
        "declared_by": declared_by,
        "created_at": format_time(now),
    }


# --------------------------------------------------------------------------------------------------------------
# The journal, read


def parse_journal(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(events, problems). Unparsable lines are skipped and named in problems; a torn last line is expected
    after a crash and is skipped quietly."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    lines = text.split("\n")
    torn_last = bool(lines) and lines[-1] != ""  # every complete record ends with a newline
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            if not (torn_last and number == len(lines)):
                problems.append(f"line {number} is not a journal record; skipped")
            continue
        events.append(event)
    return events, problems


@dataclass
class PhaseState:
    """What the journal says about one phase: its last attempt."""

    name: str
    status: str = "pending"  # pending | done | failed | interrupted (started, never ended: enp was killed)
    # (`enp incident status` shows "running" instead of interrupted while another enp holds the lock)
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int = 0
    artifact_dir: str | None = None
    ansible_pid: int | None = None
    enp_pid: int | None = None
    rc: int | None = None
    runner_status: str | None = None
    hosts: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


def phase_states(events: Iterable[Mapping[str, Any]], phases: Sequence[str] = PHASE_NAMES) -> dict[str, PhaseState]:
    """Each phase's state from the journal, in phase order. A start without an end is "interrupted"
    (enp died mid-phase; the caller that holds the lock knows nobody else runs it)."""
    states = {name: PhaseState(name) for name in phases}
    for event in events:
        state = states.get(str(event.get("phase")))
        if state is None:
            continue
        kind = event.get("event")
        if kind == "phase_started":
            states[state.name] = state = PhaseState(state.name, attempts=state.attempts + 1)
            state.status = "interrupted"
            state.started_at = event.get("at")
            state.enp_pid = event.get("pid")
        elif kind == "phase_running" and state.status == "interrupted":
            state.ansible_pid = event.get("ansible_pid")
            state.artifact_dir = event.get("artifact_dir") or state.artifact_dir
        elif kind in ("phase_done", "phase_failed") and state.status == "interrupted":
            state.status = "done" if kind == "phase_done" else "failed"
            state.ended_at = event.get("at")
            state.artifact_dir = event.get("artifact_dir") or state.artifact_dir
            state.rc = event.get("rc")
            state.runner_status = event.get("status")
            state.hosts = list(event.get("hosts") or [])
            state.stats = dict(event.get("stats") or {})
            state.duration = event.get("duration")
    return states


def plan_phases(
    states: Mapping[str, PhaseState],
    *,
    from_phase: str | None = None,
    redo: Iterable[str] = (),
    phases: Sequence[str] = PHASE_NAMES,
) -> list[str]:
    """The phases `enp recover` runs, in order: every phase not done, plus ``from_phase`` and all after it,
    plus each phase in ``redo``."""
    forced = set(redo)
    unknown = sorted(forced - set(phases)) + ([from_phase] if from_phase and from_phase not in phases else [])
    if unknown:
        raise IncidentError(f"unknown phase {', '.join(unknown)}; phases are: {', '.join(phases)}")
    if from_phase:
        forced |= set(phases[phases.index(from_phase) :])
    return [name for name in phases if name in forced or not states[name].done]


def pending_before(states: Mapping[str, PhaseState], phase: str, phases: Sequence[str] = PHASE_NAMES) -> list[str]:
    """Phases before ``phase`` that are not done (running one phase alone out of order is allowed, but said)."""
    return [name for name in phases[: phases.index(phase)] if not states[name].done]


def phase_extravars(
    phase: Phase, incident: Mapping[str, Any], incident_dir: str | Path, *, restore_plan_only: bool = False
) -> dict[str, Any]:
    """The extra-vars of a phase playbook. The confirmation var is included: call this only once the operator
    confirmed (or for a dry run, which changes nothing). A restore plan gets no confirmation at all."""
    extravars: dict[str, Any] = {"enp_incident_id": incident["id"], "enp_incident_dir": str(incident_dir)}
    if phase.destructive and not restore_plan_only:
        extravars[phase.confirm_var] = phase.name
    if phase.name == "restore":
        extravars["enp_restore_dir"] = f"{incident_dir}/restore"
        if incident.get("occurred_at"):
            extravars["enp_incident_time"] = incident["occurred_at"]
        if restore_plan_only:
            extravars["enp_restore_plan_only"] = True
    return extravars


def stats_summary(stats: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Totals over hosts of a playbook recap: ok, changed, failed, unreachable, skipped, rescued, ignored."""
    keys = {
        "ok": "ok",
        "changed": "changed",
        "failed": "failures",
        "unreachable": "dark",
        "skipped": "skipped",
        "rescued": "rescued",
        "ignored": "ignored",
    }
    return {name: sum(int(n) for n in (stats.get(key) or {}).values()) for name, key in keys.items()}


def strip_rerun_options(argv: Sequence[str], incident_id: str) -> list[str]:
    """The command to resume after a failure: the same, minus --from/--redo (which would run completed phases
    again) and naming the incident explicitly."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--from", "--incident"):
            skip = True
            continue
        if arg == "--redo":
            # `enp recover --redo PHASE` takes a phase; the single-phase commands' --redo is a flag.
            skip = i + 1 < len(argv) and argv[i + 1] in PHASE_NAMES
            continue
        if arg.startswith(("--from=", "--redo=", "--incident=")):
            continue
        out.append(arg)
    return [*out, "--incident", incident_id]


# --------------------------------------------------------------------------------------------------------------
# The run JSON for the report


def phase_record(phase: str, state: PhaseState, playbook: str) -> dict[str, Any]:
    """One row of `enp incident status --json`: a phase's last attempt, with its artifact dir."""
    summary: dict[str, Any] = stats_summary(state.stats)
    summary["rc"] = state.rc
    summary["runner_status"] = state.runner_status
    return {
        "name": phase,
        "playbook": playbook,
        "status": state.status,
        "started_at": state.started_at,
        "ended_at": state.ended_at,
        "duration_seconds": state.duration,
        "attempts": state.attempts,
        "hosts": list(state.hosts),
        "summary": summary,
        "artifacts_dir": state.artifact_dir,
    }


def _shift(at: str, seconds: float) -> str:
    return format_time(datetime.fromtimestamp(parse_time(at).timestamp() + seconds, UTC))


def attempt_summary(event: Mapping[str, Any]) -> str:
    """One line for the report: counts, rc, the first failure, and the ansible-runner artifact dir."""
    stats = event.get("stats") or {}
    totals = stats_summary(stats)
    hosts = len(event.get("hosts") or [])
    parts = [
        f"{hosts} host{'s' if hosts != 1 else ''}: ok {totals['ok']}, changed {totals['changed']}, "
        f"failed {totals['failed']}, unreachable {totals['unreachable']}"
    ]
    status = event.get("status")
    if status and status != "successful":
        parts.append(f"ansible-runner {status}, rc {event.get('rc')}")
    failures = event.get("failures") or []
    if failures:
        first = failures[0]
        parts.append(f"{first.get('host')} failed in {first.get('task')!r}: {str(first.get('msg'))[:200]}")
    if event.get("error"):
        parts.append(str(event["error"])[:300])
    if event.get("artifact_dir"):
        parts.append(f"run {event['artifact_dir']}")
    return "; ".join(parts)


def phase_attempts(events: Iterable[Mapping[str, Any]], phases: Sequence[str] = PHASE_NAMES) -> list[dict[str, Any]]:
    """Every attempt of every phase, in the order they started, as the report's ``phases`` entries:
    {name, status: done|failed|dry-run, started_at, ended_at, hosts, summary}. An attempt that never ended
    (enp killed) is "failed", ending at the last thing journaled about it, and says so."""
    attempts: list[dict[str, Any]] = []
    open_attempts: dict[str, dict[str, Any]] = {}

    def close_interrupted(name: str) -> None:
        attempt = open_attempts.pop(name)
        attempt["status"] = "failed"
        attempt["ended_at"] = attempt.pop("_last_at")
        where = f"; run {attempt.pop('_artifact_dir')}" if attempt.get("_artifact_dir") else ""
        attempt.pop("_artifact_dir", None)
        attempt["summary"] = (
            "interrupted: enp stopped mid-phase (kill -9, crash or power cut) and never recorded an end; "
            f"the phase was (or is to be) run again from its start{where}"
        )

    for event in events:
        name = str(event.get("phase"))
        kind = event.get("event")
        if name not in phases or not isinstance(event.get("at"), str):
            continue
        at = str(event["at"])
        if kind == "phase_started":
            if name in open_attempts:
                close_interrupted(name)
            attempt = {
                "name": name,
                "status": "failed",
                "started_at": at,
                "ended_at": None,
                "hosts": [],
                "summary": "",
                "_last_at": at,
                "_artifact_dir": None,
            }
            open_attempts[name] = attempt
            attempts.append(attempt)
        elif kind == "phase_running" and name in open_attempts:
            open_attempts[name]["_last_at"] = at
            open_attempts[name]["_artifact_dir"] = event.get("artifact_dir")
        elif kind in ("phase_done", "phase_failed") and name in open_attempts:
            attempt = open_attempts.pop(name)
            del attempt["_last_at"], attempt["_artifact_dir"]
            attempt.update(
                status="done" if kind == "phase_done" else "failed",
                ended_at=at,
                hosts=list(event.get("hosts") or []),
                summary=attempt_summary(event),
            )
        elif kind == "phase_dry_run":
            duration = float(event.get("duration") or 0.0)
            mode = "plan only" if event.get("plan_only") else "dry run (check mode)"
            attempts.append(
                {
                    "name": name,
                    "status": "dry-run",
                    "started_at": _shift(at, -duration),
                    "ended_at": at,
                    "hosts": list(event.get("hosts") or []),
                    "summary": f"{mode}, nothing recorded as done; {attempt_summary(event)}",
                }
            )
    for name in list(open_attempts):
        close_interrupted(name)
    return attempts


REPORT_SECTIONS: tuple[str, ...] = (
    "drift_findings",
    "hardening",
    "services",
    "ulbs_online",
    "ulbs_total",
    "evidence",
    "not_applicable",
    "targets",
)
"""Report sections a phase playbook may write as ``<incident_dir>/<phase>/<section>.json``."""

REPORT_INCIDENT_KEYS: tuple[str, ...] = INCIDENT_KEYS
"""incident.json keys the report knows (an operator may add the CERT-In fields to incident.json by hand)."""


def merge_section(old: object, new: object) -> object:
    """Two phases writing the same section: lists are concatenated, objects merged (later wins), else later."""
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **new}
    return new


def assemble_run(
    incident: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    generated_at: str,
) -> dict[str, Any]:
    """The run JSON described in the module docstring. ``outputs`` is {phase: {file stem: content}}, as read by
    :func:`read_outputs`."""
    record = {key: incident.get(key) for key in REPORT_INCIDENT_KEYS if incident.get(key) is not None}
    if "declared_at" not in record and incident.get("created_at"):
        record["declared_at"] = incident["created_at"]
    run: dict[str, Any] = {
        "format": RUN_FORMAT,
        "generated_at": generated_at,
        "incident": record,
        "phases": phase_attempts(events),
    }
    restore = outputs.get("restore") or {}
    if restore.get("decision") is not None:
        run["decision"] = restore["decision"]
    if restore.get("restore-report") is not None:
        run["restore"] = restore["restore-report"]
    for phase in PHASE_NAMES:
        for section, content in (outputs.get(phase) or {}).items():
            if section == "evidence" and not isinstance(content, list):
                continue  # evidence/evidence.json is the evidence phase's own summary; the records come below
            if section in REPORT_SECTIONS:
                run[section] = merge_section(run[section], content) if section in run else content
    custody = (outputs.get("evidence") or {}).get(CUSTODY_STEM)
    if isinstance(custody, list) and custody:
        run["evidence"] = [custody_item(record) for record in custody if isinstance(record, dict)]
    return run


CUSTODY_STEM = "custody"
"""The evidence phase's chain of custody, ``<incident_dir>/evidence/custody.jsonl`` (one record per item)."""


def custody_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """A chain-of-custody record as the report's evidence row (the chain's own fields stay in custody.jsonl)."""
    return {
        key: record[key] for key in ("host", "item", "sha256", "collected_at", "collected_by", "where") if key in record
    }


def read_outputs(incident_dir: Path, max_bytes: int = MAX_OUTPUT_BYTES) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """({phase: {stem: content}} from ``<incident_dir>/<phase>/*.json``, problems). A file that is too large or
    not JSON is left out and named in problems."""
    outputs: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for phase in PHASE_NAMES:
        folder = incident_dir / phase
        if not folder.is_dir():
            continue
        found: dict[str, Any] = {}
        for path in sorted(folder.glob("*.json")):
            try:
                if path.stat().st_size > max_bytes:
                    problems.append(f"{path} is larger than {max_bytes} bytes; left out of the report")
                    continue
                found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"{path} left out of the report: {exc}")
        custody = folder / f"{CUSTODY_STEM}.jsonl"
        if custody.is_file():
            try:
                if custody.stat().st_size > max_bytes:
                    problems.append(f"{custody} is larger than {max_bytes} bytes; left out of the report")
                else:
                    lines = custody.read_text(encoding="utf-8").splitlines()
                    found[CUSTODY_STEM] = [json.loads(line) for line in lines if line.strip()]
            except (OSError, ValueError) as exc:
                problems.append(f"{custody} left out of the report: {exc}")
        if found:
            outputs[phase] = found
    return outputs, problems


# --------------------------------------------------------------------------------------------------------------
# On disk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file so that a reader (or a crash) sees the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def append_event(journal: Path, event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Append one record (with ``at`` and ``pid``) in a single write to an O_APPEND file, then fsync."""
    record = {"at": format_time(now or utc_now()), "pid": os.getpid(), **event}
    data = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
    created = not journal.exists()
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a full disk; the next reader skips the torn line
            raise OSError(f"short write to {journal}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(journal.parent)
    return record


class LockHeld(Exception):
    """Another enp process works on this incident."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(holder)
        self.path = path
        self.holder = holder


@contextlib.contextmanager
def acquire_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (PID and ``what`` written inside) or raise LockHeld at once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            raise LockHeld(path, holder or "an unknown process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what} (since {format_time(utc_now())})\n".encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(path: Path) -> str | None:
    """Who holds the lock (its text), or None when nobody does. Takes a shared lock for an instant."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "an unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def process_alive(pid: int | None, name: str = "ansible-playbook") -> bool:
    """True when ``pid`` runs and its command line mentions ``name`` (a pid reused by something else is not)."""
    if not pid or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return name.encode() in cmdline


@dataclass(frozen=True)
class IncidentStore:
    """The incidents folder of a project."""

    root: Path

    @classmethod
    def for_project(cls, project_dir: Path) -> IncidentStore:
        return cls(project_dir / INCIDENTS_SUBDIR)

    def dir(self, incident_id: str) -> Path:
        return self.root / check_incident_id(incident_id)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / INCIDENT_FILE).is_file())

    def current(self) -> str | None:
        try:
            value = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return value or None

    def resolve(self, incident_id: str | None) -> str:
        """The incident to work on: the one named, else the current one; refuses with what to do."""
        chosen = incident_id or self.current()
        if not chosen:
            raise IncidentError(
                "no current incident; declare one first: enp incident start --occurred-at <ISO time of the attack>"
            )
        if not (self.dir(chosen) / INCIDENT_FILE).is_file():
            known = ", ".join(self.ids()) or "none"
            raise IncidentError(f"incident {chosen} not found in {self.root} (known: {known})")
        return chosen

    def create(self, record: Mapping[str, Any]) -> Path:
        directory = self.dir(str(record["id"]))
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        write_atomic(directory / INCIDENT_FILE, json.dumps(record, indent=2) + "\n")
        append_event(directory / JOURNAL, {"event": "incident_started", **record})
        write_atomic(self.root / CURRENT_FILE, f"{record['id']}\n")
        return directory

    def load(self, incident_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
        """(incident record, journal events, journal problems)."""
        directory = self.dir(incident_id)
        record = json.loads((directory / INCIDENT_FILE).read_text(encoding="utf-8"))
        try:
            text = (directory / JOURNAL).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        events, problems = parse_journal(text)
        return record, events, problems


def render_status(
    incident: Mapping[str, Any], states: Mapping[str, PhaseState], playbooks: str = DEFAULT_PLAYBOOKS
) -> list[str]:
    """The `enp incident status` text: incident, then one row per phase, then what comes next."""
    lines = [
        f"Incident {incident.get('id')}: occurred {incident.get('occurred_at') or 'unknown'}, detected "
        f"{incident.get('detected_at')}, declared by {incident.get('declared_by') or 'unknown'}.",
        "",
    ]
    rows = [["PHASE", "STATUS", "STARTED", "ENDED", "TRIES", "PLAYBOOK"]]
    for phase in PHASES:
        s = states[phase.name]
        rows.append(
            [
                phase.name,
                s.status.upper() if s.status in ("failed", "interrupted") else s.status,
                s.started_at or "-",
                s.ended_at or "-",
                str(s.attempts),
                phase.playbook(playbooks),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    remaining = [name for name in PHASE_NAMES if not states[name].done]
    lines.append("")
    if remaining:
        lines.append(f"Next: {remaining[0]}. `enp recover` runs {', '.join(remaining)}, then the report.")
    else:
        lines.append("Every phase is done. `enp report` writes (again) the incident report.")
    return lines
