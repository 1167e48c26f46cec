"""The recovery (or drill) report: what happened, how fast the estate came back, and the CERT-In report to file.

:func:`render` turns one *recovery run* document into a :class:`Report` with three faces of the same content:
``.json`` (normalised, with RTO/RPO computed), ``.markdown`` (plain tables) and ``.html`` (one self-contained
file: inline CSS, an inline SVG timeline, no script and no external URL, so it opens offline on any machine).
:func:`write_reports` writes ``report.json``, ``report.md`` and ``report.html`` atomically;
:func:`format_summary` gives the few lines the CLI prints at the end of a run.

Everything here is pure (no clock, no network, no Ansible); only :func:`write_reports` touches the disk.
Every value may come from a compromised host, so each one is escaped in the HTML (``html.escape``) and in the
Markdown (backslash escapes), and control characters are replaced everywhere text is shown.

Input: the recovery run (``format: enp-recovery-run/1``)
---------------------------------------------------------
One JSON object. Times are ISO 8601 strings WITH a zone (``2026-12-06T07:53:40Z`` or ``+05:30``; CERT-In D3:
logs carry time with zone); a time without a zone is refused. Only ``incident.id``, ``incident.detected_at`` and
``phases`` are required; a missing optional section is shown as "not recorded", an empty list as "none".
Unknown keys are refused (a misspelt section must not silently vanish from the report)::

    format            "enp-recovery-run/1" (optional)
    generated_at      time the report was made (optional; write_reports fills it in)
    incident:
      id              "ENP-2026-12-06-01"                       required
      occurred_at     attack start (earliest known malicious act)
      detected_at     when the incident was noticed: RTO and the CERT-In 6-hour clock start here   required
      declared_at     when it was declared an incident (optional)
      declared_by     who declared it
      organisation    "text" or {name, department, address, ...}  (CERT-In field 3)
      point_of_contact  "text" or {name, role, phone, email, ...} (24x7, CERT-In D4 / field 8)
      category        ["ransomware", ...] Annexure I types       (CERT-In field 1)
      environment     "lab" (a drill) or "production"
      affected_systems  ["portal.example.gov.in (e-Nagar Palika)", ...]   extra to the hosts seen in phases
      hosting         "on-premises" | "cloud" | ...
      impact          free text: scope and impact                (CERT-In field 5)
      indicators      [{type, value, note?}]  IPs, hashes, URLs, accounts (CERT-In field 6)
      symptoms        free text                                  (CERT-In field 9)
      cert_in_reported_at  when the CERT-In report was sent (optional)
    phases: [         in the order they ran; the same name may repeat (a retried phase)
      {name: contain|evidence|rebuild|restore|verify|reopen, status: done|failed|skipped|dry-run,
       started_at, ended_at (both required unless skipped), hosts: [str], summary: str,
       steps?: [{name, host?, status?, started_at?, ended_at?}]}]
    decision          decision.json of roles/restore, verbatim (enp_restore_point_select; enp-restore-point/1);
                      when absent, the copy inside restore-report.json is used
    restore           restore-report.json of roles/restore, verbatim (enp-restore-report/1)
    drift_findings    [{host, path, kind, detail, severity?}]   baseline verify findings (most serious first);
                      enp_baseline_compare's ``key`` / ``reason`` stand in for a missing path / detail
    hardening         {before: {host: score}, after: {host: score}}  score = % of applicable controls passing
    services          [{zone, service, host, back_at}]
    ulbs_online       number of urban local bodies served again; ulbs_total (default 413)
    evidence          [{host, item, sha256, collected_at, collected_by, where}]   chain of custody
    not_applicable    [{what, why}]   what the lab cannot do (e.g. kernel sysctls in containers)
    targets           {rto_seconds: 900, rpo_seconds: 5}   (these defaults when absent)

Definitions
-----------
* **RTO achieved** = end of the last ``reopen`` phase (status ``done``) minus ``incident.detected_at``: from
  noticing the attack to citizens being served again. No completed reopen: RTO not achieved (shown as not met).
* **RPO achieved** = ``restore.rpo_seconds`` (roles/restore: committed data before the incident that was not
  restored). Absent: not recorded (shown as not met).
* **CERT-In report due** = ``incident.detected_at`` + 6 hours (CERT-In Directions 2022, D1), shown in UTC and IST;
  *overdue* when the report is generated after it and ``incident.cert_in_reported_at`` is not set.

Output: report.json (``format: enp-recovery-report/1``)
--------------------------------------------------------
``summary`` {recovered, rto {seconds, target_seconds, met, from, to, note}, rpo {seconds, target_seconds, met,
note}, outage_seconds (attack start to reopen), failed_phases}; ``targets``; ``incident`` (times in UTC, ``Z``);
``timeline`` {start, end, phases [the input's, plus duration_seconds and offset_seconds]}; ``clean_point`` (the
decision's explanation and key evidence, and what the restore did); ``drift_findings``; ``hardening`` [{host,
before, after, change}]; ``services``; ``ulbs`` {online, total}; ``evidence``; ``not_applicable``; ``cert_in``
{due_at, due_at_ist, reported_at, on_time, overdue, fields [{number, field, value: [lines]}] (the 9 fields
commonly used in CERT-In's initial incident report)}; ``decision`` and ``restore`` verbatim. ``met`` is true,
false or null (no figure: shown as NOT MET). A section missing from the input is null.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    IST: tzinfo = ZoneInfo("Asia/Kolkata")
except (ImportError, ZoneInfoNotFoundError):  # pragma: no cover - no tzdata: India has had no DST since 1945
    IST = timezone(timedelta(hours=5, minutes=30), "IST")

INPUT_FORMAT = "enp-recovery-run/1"
FORMAT = "enp-recovery-report/1"

PHASES: tuple[str, ...] = ("contain", "evidence", "rebuild", "restore", "verify", "reopen")
STATUSES: tuple[str, ...] = ("done", "failed", "skipped", "dry-run")
DEFAULT_TARGETS: dict[str, float] = {"rto_seconds": 900, "rpo_seconds": 5}
ULBS_TOTAL = 413
CERT_IN_HOURS = 6

NOT_RECORDED = "not recorded"
_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
DASH = "\u2013"
"""Shown in an empty cell."""

_TOP_KEYS = frozenset(
    {
        "format",
        "generated_at",
        "incident",
        "phases",
        "decision",
        "restore",
        "drift_findings",
        "hardening",
        "services",
        "ulbs_online",
        "ulbs_total",
        "evidence",
        "not_applicable",
        "targets",
    }
)
INCIDENT_KEYS: tuple[str, ...] = (
    "id",
    "occurred_at",
    "detected_at",
    "declared_at",
    "declared_by",
    "organisation",
    "point_of_contact",
    "category",
    "environment",
    "affected_systems",
    "hosting",
    "impact",
    "indicators",
    "symptoms",
    "cert_in_reported_at",
)
"""The incident's fields the report knows (enp/incident.py copies exactly these from incident.json)."""
_INCIDENT_KEYS = frozenset(INCIDENT_KEYS)
_PHASE_KEYS = frozenset({"name", "status", "started_at", "ended_at", "hosts", "summary", "steps"})


class RunError(ValueError):
    """The recovery run document is not valid; the message names the field (e.g. ``phases[2].ended_at``)."""


@dataclass(frozen=True)
class Report:
    json: dict[str, Any]
    markdown: str
    html: str


# --------------------------------------------------------------------------------------------------------------
# Reading and checking the run


def _fail(path: str, problem: str) -> RunError:
    return RunError(f"recovery run: {path}: {problem}")


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    return list(value)


def _known_keys(value: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")


def _text(value: object, path: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _fail(path, "required, missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(path, f"expected text, got {type(value).__name__}")
    text = str(value)
    if required and not text.strip():
        raise _fail(path, "required, empty")
    return text


def _number(value: object, path: str) -> float | None:
    """A number, also from a numeric string (Ansible templates may render numbers as text); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(path, "expected a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(path, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _fail(path, f"expected a finite number, got {value!r}")
    return number


def parse_time(value: object, path: str = "time", *, required: bool = False) -> datetime | None:
    """An aware datetime in UTC from ISO 8601 text with a zone (or epoch seconds); RunError naming ``path``."""
    if value is None or value == "":
        if required:
            raise _fail(path, "required, missing")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        raise _fail(path, f"expected an ISO 8601 time with zone, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _fail(path, f"expected an ISO 8601 time with zone such as 2026-12-06T07:53:40Z, got {value!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _fail(path, f"time {value!r} has no zone; add Z (UTC) or +05:30 (IST)")
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _str_list(value: object, path: str) -> list[str]:
    if value is None:
        return []
    return [_text(v, f"{path}[{i}]") or "" for i, v in enumerate(_list(value, path))]


def _contact(value: object, path: str) -> dict[str, str] | str | None:
    """Free text or a flat object of texts (organisation, point of contact)."""
    if value is None or isinstance(value, str):
        return value
    obj = _mapping(value, path)
    return {str(k): _text(v, f"{path}.{k}") or "" for k, v in obj.items()}


def _records(value: object, path: str, fields: Sequence[str], times: Sequence[str] = ()) -> list[dict[str, Any]] | None:
    """A list of flat records with the given text fields; times parsed and normalised to UTC ISO."""
    if value is None:
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(_list(value, path)):
        obj = _mapping(item, f"{path}[{i}]")
        record: dict[str, Any] = {}
        for name in fields:
            record[name] = _text(obj.get(name), f"{path}[{i}].{name}")
        for name in times:
            record[name] = _iso(parse_time(obj.get(name), f"{path}[{i}].{name}"))
        for name, extra in obj.items():
            if name not in record:
                record[str(name)] = extra
        out.append(record)
    return out


def _phase(item: object, path: str) -> dict[str, Any]:
    obj = _mapping(item, path)
    _known_keys(obj, _PHASE_KEYS, path)
    name = _text(obj.get("name"), f"{path}.name", required=True)
    if name not in PHASES:
        raise _fail(f"{path}.name", f"unknown phase {name!r}; one of {', '.join(PHASES)}")
    status = _text(obj.get("status"), f"{path}.status", required=True)
    if status not in STATUSES:
        raise _fail(f"{path}.status", f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    started = parse_time(obj.get("started_at"), f"{path}.started_at", required=status != "skipped")
    ended = parse_time(obj.get("ended_at"), f"{path}.ended_at", required=status != "skipped")
    if started and ended and ended < started:
        raise _fail(f"{path}.ended_at", f"{_iso(ended)} is before started_at {_iso(started)}")
    steps = []
    for j, step in enumerate(_list(obj.get("steps") or [], f"{path}.steps")):
        spath = f"{path}.steps[{j}]"
        sobj = _mapping(step, spath)
        s_start = parse_time(sobj.get("started_at"), f"{spath}.started_at")
        s_end = parse_time(sobj.get("ended_at"), f"{spath}.ended_at")
        steps.append(
            {
                "name": _text(sobj.get("name"), f"{spath}.name", required=True),
                "host": _text(sobj.get("host"), f"{spath}.host"),
                "status": _text(sobj.get("status"), f"{spath}.status"),
                "started_at": _iso(s_start),
                "ended_at": _iso(s_end),
                "duration_seconds": (s_end - s_start).total_seconds() if s_start and s_end else None,
            }
        )
    return {
        "name": name,
        "status": status,
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "duration_seconds": (ended - started).total_seconds() if started and ended else None,
        "hosts": _str_list(obj.get("hosts"), f"{path}.hosts"),
        "summary": _text(obj.get("summary"), f"{path}.summary") or "",
        "steps": steps,
    }


def _incident(value: object) -> dict[str, Any]:
    obj = _mapping(value, "incident")
    _known_keys(obj, _INCIDENT_KEYS, "incident")
    indicators = _records(obj.get("indicators"), "incident.indicators", ("type", "value", "note"))
    return {
        "id": _text(obj.get("id"), "incident.id", required=True),
        "occurred_at": _iso(parse_time(obj.get("occurred_at"), "incident.occurred_at")),
        "detected_at": _iso(parse_time(obj.get("detected_at"), "incident.detected_at", required=True)),
        "declared_at": _iso(parse_time(obj.get("declared_at"), "incident.declared_at")),
        "declared_by": _text(obj.get("declared_by"), "incident.declared_by"),
        "organisation": _contact(obj.get("organisation"), "incident.organisation"),
        "point_of_contact": _contact(obj.get("point_of_contact"), "incident.point_of_contact"),
        "category": _str_list(obj.get("category"), "incident.category") if obj.get("category") is not None else None,
        "environment": _text(obj.get("environment"), "incident.environment"),
        "affected_systems": _str_list(obj.get("affected_systems"), "incident.affected_systems"),
        "hosting": _text(obj.get("hosting"), "incident.hosting"),
        "impact": _text(obj.get("impact"), "incident.impact"),
        "indicators": indicators,
        "symptoms": _text(obj.get("symptoms"), "incident.symptoms"),
        "cert_in_reported_at": _iso(parse_time(obj.get("cert_in_reported_at"), "incident.cert_in_reported_at")),
    }


def _hardening(value: object) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    obj = _mapping(value, "hardening")
    _known_keys(obj, frozenset({"before", "after"}), "hardening")
    before = {
        str(h): _number(s, f"hardening.before.{h}")
        for h, s in _mapping(obj.get("before") or {}, "hardening.before").items()
    }
    after = {
        str(h): _number(s, f"hardening.after.{h}")
        for h, s in _mapping(obj.get("after") or {}, "hardening.after").items()
    }
    rows = []
    for host in sorted(set(before) | set(after)):
        b, a = before.get(host), after.get(host)
        rows.append(
            {"host": host, "before": b, "after": a, "change": (a - b) if a is not None and b is not None else None}
        )
    return rows


# --------------------------------------------------------------------------------------------------------------
# Computing


def _met(achieved: float | None, target: float) -> bool | None:
    return None if achieved is None else achieved <= target


def _rto(phases: Sequence[Mapping[str, Any]], detected: datetime) -> tuple[float | None, str | None, str]:
    """(seconds, reopen end ISO, note)."""
    reopens = [p for p in phases if p["name"] == "reopen"]
    if not reopens:
        return None, None, "no reopen phase recorded: the estate is not back, so no RTO was achieved"
    last = reopens[-1]
    if last["status"] != "done":
        how = {"failed": "failed", "skipped": "was skipped", "dry-run": "was a dry run only"}[last["status"]]
        return None, None, f"the last reopen phase {how}: the estate is not back, so no RTO was achieved"
    end = parse_time(last["ended_at"])
    assert end is not None  # noqa: S101 - a done phase has times (checked in _phase)
    return (end - detected).total_seconds(), last["ended_at"], "from detection to the end of reopen"


def _as_list(value: object) -> list[Any]:
    """A list from a list, nothing from None, a one-item list from anything else (verbatim input is not checked)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _clean_point(decision: Mapping[str, Any] | None, restore: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The key facts of the restore decision and the restore, in a shape the renderers can show."""
    if decision is None and restore is None:
        return None
    decision = decision or {}
    restore = restore or {}
    db = decision.get("database") if isinstance(decision.get("database"), Mapping) else {}
    target = db.get("target") if isinstance(db.get("target"), Mapping) else {}
    base = db.get("base_backup") if isinstance(db.get("base_backup"), Mapping) else {}
    docs = decision.get("documents") if isinstance(decision.get("documents"), Mapping) else {}
    evidence = decision.get("evidence") if isinstance(decision.get("evidence"), Mapping) else {}
    restored_db = restore.get("database") if isinstance(restore.get("database"), Mapping) else {}
    restored_docs = restore.get("documents") if isinstance(restore.get("documents"), Mapping) else {}
    documents = []
    for host in sorted(set(map(str, docs)) | set(map(str, restored_docs))):
        choice = docs.get(host) if isinstance(docs.get(host), Mapping) else {}
        snap = choice.get("snapshot") if isinstance(choice.get("snapshot"), Mapping) else {}
        done = restored_docs.get(host) if isinstance(restored_docs.get(host), Mapping) else {}
        documents.append(
            {
                "host": host,
                "snapshot": snap.get("name"),
                "snapshot_time": snap.get("time"),
                "rejected": len(choice.get("rejected") or []),
                "restored": done.get("documents"),
                "refused": done.get("refused_count"),
            }
        )
    transactions = _as_list(evidence.get("transactions"))
    return {
        "ok": decision.get("ok"),
        "error": decision.get("error"),
        "explanation": [str(line).strip() for line in _as_list(decision.get("explanation"))],
        "earliest_malicious_change": decision.get("earliest_malicious_change"),
        "earliest_malicious_source": decision.get("earliest_malicious_source"),
        "database_target": dict(target) or None,
        "database_reason": db.get("reason"),
        "base_backup": base.get("label"),
        "base_backup_stop": base.get("stop"),
        "skipped_base_backups": [
            str(s.get("reason")) for s in _as_list(db.get("skipped_base_backups")) if isinstance(s, Mapping)
        ],
        "lost_transactions": db.get("lost_transactions"),
        "malicious_transactions": [
            {"xid": t.get("xid"), "commit_time": t.get("commit_time"), "reason": t.get("reason")}
            for t in transactions
            if isinstance(t, Mapping)
        ],
        "override": decision.get("override"),
        "documents": documents,
        "database_restore": {
            "host": restored_db.get("host"),
            "base_backup": restored_db.get("base_backup"),
            "seconds_copy": _number(restored_db.get("seconds_copy"), "restore.database.seconds_copy"),
            "seconds_replay": _number(restored_db.get("seconds_replay"), "restore.database.seconds_replay"),
            "seconds_total": _number(restored_db.get("seconds_total"), "restore.database.seconds_total"),
            "bytes": _number(restored_db.get("bytes"), "restore.database.bytes"),
            "amcheck_ok": restored_db.get("amcheck_ok"),
        }
        if restored_db
        else None,
        "last_recovered_transaction": restore.get("last_recovered_transaction"),
    }


def _cert_in(
    incident: Mapping[str, Any],
    phases: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]] | None,
    findings: Sequence[Mapping[str, Any]] | None,
    hardening: Sequence[Mapping[str, Any]] | None,
    clean: Mapping[str, Any] | None,
    ulbs: Mapping[str, Any],
    summary: Mapping[str, Any],
    generated: datetime | None,
) -> dict[str, Any]:
    detected = parse_time(incident["detected_at"])
    assert detected is not None  # noqa: S101 - required field
    due = detected + timedelta(hours=CERT_IN_HOURS)
    reported = parse_time(incident.get("cert_in_reported_at"))

    def contact_lines(value: object) -> list[str]:
        if value is None:
            return [NOT_RECORDED]
        if isinstance(value, Mapping):
            return [f"{k}: {v}" for k, v in value.items()]
        return [str(value)]

    hosts: dict[str, set[str]] = {}
    for phase in phases:
        if phase["name"] in ("rebuild", "restore", "evidence"):
            for host in phase["hosts"]:
                hosts.setdefault(host, set())
    for svc in services or []:
        if svc.get("host"):
            hosts.setdefault(str(svc["host"]), set()).add(f"{svc.get('service')} ({svc.get('zone')} zone)")
    for finding in findings or []:
        if finding.get("host"):
            hosts.setdefault(str(finding["host"]), set())
    affected = [f"{h}: {', '.join(sorted(s))}" if s else h for h, s in sorted(hosts.items())]
    affected += list(incident.get("affected_systems") or [])
    affected.append(f"hosting: {incident.get('hosting') or NOT_RECORDED}")

    impact = [incident["impact"]] if incident.get("impact") else []
    outage = summary.get("outage_seconds")
    if outage is not None:
        impact.append(f"citizen services down for {format_duration(outage)} (attack start to reopen)")
    if ulbs.get("online") is not None:
        impact.append(f"{ulbs['online']:g} of {ulbs['total']:g} urban local bodies served again")
    if clean and clean.get("lost_transactions") is not None:
        impact.append(f"{clean['lost_transactions']} legitimate transaction(s) after the restore point to re-enter")
    if summary["rpo"]["seconds"] is not None:
        impact.append(f"data loss window (RPO achieved): {format_duration(summary['rpo']['seconds'])}")
    if not impact:
        impact = [NOT_RECORDED]

    iocs = [
        f"{i.get('type') or 'indicator'}: {i.get('value')}" + (f" ({i['note']})" if i.get("note") else "")
        for i in incident.get("indicators") or []
    ]
    serious = [f for f in findings or [] if f.get("severity") in ("critical", "high")] or list(findings or [])
    iocs += [f"{f.get('host')}: {f.get('kind')} {f.get('path')}" for f in serious[:15]]
    if findings and len(serious) > 15:
        iocs.append(f"... {len(serious) - 15} more finding(s): see Drift findings")
    if clean:
        iocs += [
            f"malicious database transaction {t['xid']} committed {_t(t['commit_time'])}: {t['reason']}"
            for t in clean["malicious_transactions"]
        ]

    actions = [
        f"{p['name']} ({p['status']}): {p['summary']}" if p["summary"] else f"{p['name']} ({p['status']})"
        for p in phases
    ]
    other = []
    if hardening:
        after = [r["after"] for r in hardening if r["after"] is not None]
        if after:
            other.append(
                f"security controls after rebuild: hardening score {min(after):g} to {max(after):g} % across "
                f"{len(after)} host(s) (CIS-style baseline, CERT-In G1)"
            )
    if incident.get("symptoms"):
        other.append(f"symptoms observed: {incident['symptoms']}")
    if clean and clean.get("earliest_malicious_change"):
        other.append(
            f"earliest malicious change found: {_t(clean['earliest_malicious_change'])} "
            f"({clean.get('earliest_malicious_source')})"
        )
    if incident.get("environment"):
        other.append(f"environment: {incident['environment']}")
    occurred = parse_time(incident.get("occurred_at"))
    fields = [
        ("Incident category (CERT-In Annexure I)", list(incident.get("category") or []) or [NOT_RECORDED]),
        (
            "Date and time detected, and of occurrence",
            [
                f"detected: {format_time(detected)}",
                f"occurred: {format_time(occurred) if occurred else NOT_RECORDED}",
            ],
        ),
        ("Organisation details", contact_lines(incident.get("organisation"))),
        ("Affected systems (hostnames, IPs, domains, applications; on-premises or cloud)", affected),
        ("Estimated scope and impact", impact),
        ("Initial indicators of compromise (IPs, hashes, URLs, accounts)", iocs or [NOT_RECORDED]),
        ("Containment and mitigation actions taken", actions or [NOT_RECORDED]),
        ("24\u00d77 point of contact", contact_lines(incident.get("point_of_contact"))),
        ("Other information (security controls in place, symptoms observed)", other or [NOT_RECORDED]),
    ]
    return {
        "due_at": _iso(due),
        "due_at_ist": due.astimezone(IST).isoformat(),
        "reported_at": _iso(reported),
        "on_time": (reported <= due) if reported else None,
        "overdue": reported is None and generated is not None and generated > due,
        "fields": [{"number": n, "field": f, "value": v} for n, (f, v) in enumerate(fields, start=1)],
    }


def normalise(run: Mapping[str, Any], *, generated_at: datetime | str | None = None) -> dict[str, Any]:
    """The report as one JSON-serialisable dict (the content of report.json); RunError on invalid input."""
    run = _mapping(run, "(document)")
    _known_keys(run, _TOP_KEYS, "(top level)")
    if run.get("format") not in (None, INPUT_FORMAT):
        raise _fail("format", f"expected {INPUT_FORMAT!r}, got {run.get('format')!r}")
    if run.get("incident") is None:
        raise _fail("incident", "required, missing")
    incident = _incident(run["incident"])
    if run.get("phases") is None:
        raise _fail("phases", "required, missing (an empty list if nothing ran yet)")
    phases = [_phase(p, f"phases[{i}]") for i, p in enumerate(_list(run["phases"], "phases"))]
    targets_in = _mapping(run.get("targets") or {}, "targets")
    _known_keys(targets_in, frozenset(DEFAULT_TARGETS), "targets")
    targets = {
        k: (_number(targets_in.get(k), f"targets.{k}") if targets_in.get(k) is not None else v)
        for k, v in DEFAULT_TARGETS.items()
    }
    decision = run.get("decision")
    restore = run.get("restore")
    if decision is not None:
        decision = dict(_mapping(decision, "decision"))
    if restore is not None:
        restore = dict(_mapping(restore, "restore"))
        if decision is None and isinstance(restore.get("decision"), Mapping):
            decision = dict(restore["decision"])

    detected = parse_time(incident["detected_at"])
    occurred = parse_time(incident["occurred_at"])
    assert detected is not None  # noqa: S101 - required field
    rto, back_at, rto_note = _rto(phases, detected)
    rpo = _number(restore.get("rpo_seconds"), "restore.rpo_seconds") if restore else None
    rpo_note = "restore.rpo_seconds (roles/restore)" if rpo is not None else "no restore report with rpo_seconds"
    back = parse_time(back_at)
    summary = {
        "recovered": back is not None,
        "rto": {
            "seconds": rto,
            "target_seconds": targets["rto_seconds"],
            "met": _met(rto, targets["rto_seconds"]),
            "from": incident["detected_at"],
            "to": back_at,
            "note": rto_note,
        },
        "rpo": {
            "seconds": rpo,
            "target_seconds": targets["rpo_seconds"],
            "met": _met(rpo, targets["rpo_seconds"]),
            "note": rpo_note,
        },
        "outage_seconds": (back - occurred).total_seconds() if back and occurred else None,
        "failed_phases": list(dict.fromkeys(p["name"] for p in phases if p["status"] == "failed")),
    }
    starts = [parse_time(p["started_at"]) for p in phases if p["started_at"]]
    ends = [parse_time(p["ended_at"]) for p in phases if p["ended_at"]]
    timeline_start = min([detected, *starts])  # type: ignore[type-var]
    for phase in phases:
        start = parse_time(phase["started_at"])
        phase["offset_seconds"] = (start - timeline_start).total_seconds() if start else None
    findings = _records(run.get("drift_findings"), "drift_findings", ("host", "path", "kind", "detail", "severity"))
    for finding in findings or []:  # enp_baseline_compare's own names (Finding: key, reason) are accepted too
        if finding["path"] is None and finding.get("key") is not None:
            finding["path"] = str(finding["key"])
        if finding["detail"] is None and finding.get("reason") is not None:
            finding["detail"] = str(finding["reason"])
    if findings:  # most serious first, then by host, as the reader acts on them
        findings.sort(key=lambda f: (_SEVERITY_RANK.get(str(f.get("severity")), len(_SEVERITY_RANK)), str(f["host"])))
    services = _records(run.get("services"), "services", ("zone", "service", "host"), ("back_at",))
    evidence = _records(
        run.get("evidence"),
        "evidence",
        ("host", "item", "sha256", "collected_by", "where"),
        ("collected_at",),
    )
    not_applicable = _records(run.get("not_applicable"), "not_applicable", ("what", "why"))
    ulbs = {
        "online": _number(run.get("ulbs_online"), "ulbs_online"),
        "total": _number(run.get("ulbs_total"), "ulbs_total") or ULBS_TOTAL,
    }
    hardening = _hardening(run.get("hardening"))
    clean = _clean_point(decision, restore)
    if isinstance(generated_at, str):
        generated_at = parse_time(generated_at, "generated_at")
    generated = generated_at or parse_time(run.get("generated_at"), "generated_at")
    return {
        "format": FORMAT,
        "generated_at": _iso(generated),
        "summary": summary,
        "targets": targets,
        "incident": incident,
        "timeline": {
            "start": _iso(timeline_start),
            "end": _iso(max(ends)) if ends else None,
            "phases": phases,
        },
        "clean_point": clean,
        "drift_findings": findings,
        "hardening": hardening,
        "services": services,
        "ulbs": ulbs,
        "evidence": evidence,
        "not_applicable": not_applicable,
        "cert_in": _cert_in(incident, phases, services, findings, hardening, clean, ulbs, summary, generated),
        "decision": decision,
        "restore": restore,
    }


# --------------------------------------------------------------------------------------------------------------
# Formatting


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_text(value: object) -> str:
    """Text safe to show anywhere: control and bidi-override characters (terminal escapes, Trojan Source) become
    U+FFFD; tabs become spaces. Not an HTML or Markdown escape: see :func:`h` and :func:`md`."""
    return _CONTROL.sub("\ufffd", unicodedata.normalize("NFC", str(value)).replace("\t", " "))


def h(value: object) -> str:
    """HTML-escaped text (also for attribute values: quotes are escaped)."""
    return html.escape(clean_text(value), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
"""Escaped in Markdown: with [ ] escaped no link or image can form, with < > no raw HTML or autolink."""


def md(value: object, *, line_start: bool = False) -> str:
    """Markdown-escaped text on one line, safe in a table cell: no raw HTML, link, emphasis or cell break.
    ``line_start``: the text starts a line or list item, so a leading # + - = must not make a heading or list."""
    one_line = clean_text(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line)
    return "\\" + escaped if line_start and escaped[:1] in ("#", "+", "-", "=") else escaped


def format_duration(seconds: float | None) -> str:
    """``45 s``, ``2.4 s``, ``14 min 18 s``, ``1 h 02 min 05 s``; None is "not recorded"."""
    if seconds is None:
        return NOT_RECORDED
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        text = (
            f"{seconds:.1f}".rstrip("0").rstrip(".") if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f}"
        )
        return f"{sign}{text} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    tail = f" {secs:02d} s" if secs else ""
    if hours:
        return f"{sign}{hours} h {minutes:02d} min{tail}"
    return f"{sign}{minutes} min{tail}"


def format_time(moment: datetime | None, *, date: bool = True) -> str:
    """``2026-12-06 07:53:40 UTC (13:23:40 IST)``: both zones, as the CERT-In form asks for IST."""
    if moment is None:
        return NOT_RECORDED
    utc = moment.astimezone(UTC)
    ist = moment.astimezone(IST)
    day = "%Y-%m-%d " if date else ""
    ist_day = "%Y-%m-%d " if date and ist.date() != utc.date() else ""
    return f"{utc.strftime(day + '%H:%M:%S')} UTC ({ist.strftime(ist_day + '%H:%M:%S')} IST)"


def _t(value: object, *, date: bool = True) -> str:
    """A time from the report for display; text that is not a time (from a verbatim file) is shown as it is."""
    try:
        return format_time(parse_time(value), date=date)
    except RunError:
        return clean_text(value)


def ist_first(moment: datetime) -> str:
    """``2026-12-06 19:23:40 IST (13:53:40 UTC)``: for the CERT-In deadline, which the form wants in IST."""
    utc = moment.astimezone(UTC)
    ist = moment.astimezone(IST)
    utc_day = "%Y-%m-%d " if ist.date() != utc.date() else ""
    return f"{ist.strftime('%Y-%m-%d %H:%M:%S')} IST ({utc.strftime(utc_day + '%H:%M:%S')} UTC)"


NOT_BACK = "not back"


def _verdict(met: bool | None, missing: str | None = NOT_RECORDED) -> str:
    """MET / NOT MET; no figure is NOT MET too, saying why unless the figure itself does (RTO "not back")."""
    return {True: "MET", False: "NOT MET", None: f"NOT MET ({missing})" if missing else "NOT MET"}[met]


def _rto_text(rto: Mapping[str, Any]) -> str:
    """The RTO achieved; "not back" when the estate was not reopened (there is no RTO to measure)."""
    return NOT_BACK if rto["seconds"] is None else format_duration(rto["seconds"])


def _score(value: float | None) -> str:
    return NOT_RECORDED if value is None else f"{value:g} %"


def _contact_text(value: object) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _phase_label(phase: Mapping[str, Any]) -> str:
    if phase["duration_seconds"] is None:
        return phase["status"]
    return f"{format_duration(phase['duration_seconds'])} · {phase['status']}"


# --------------------------------------------------------------------------------------------------------------
# The timeline plot (inline SVG)

SVG_WIDTH = 960
SVG_LABEL_W = 110
SVG_RIGHT = 20
SVG_ROW = 34
SVG_TOP = 50
STATUS_COLOURS = {"done": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e", "dry-run": "#1565c0"}
_TICKS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400)


def timeline_svg(report: Mapping[str, Any]) -> str:
    """One bar per phase, to scale (px per second is the same for every bar), on an axis of time since detection;
    dashed lines for detection, the RTO target and the moment services were back."""
    timeline = report["timeline"]
    phases = timeline["phases"]
    start = parse_time(timeline["start"])
    detected = parse_time(report["incident"]["detected_at"])
    assert start is not None and detected is not None  # noqa: S101 - set by normalise
    rto = report["summary"]["rto"]
    target_at = detected + timedelta(seconds=rto["target_seconds"])
    ends = [parse_time(p["ended_at"]) for p in phases if p["ended_at"]]
    end = max([target_at, *ends])  # type: ignore[type-var]
    span = max((end - start).total_seconds(), 1.0)
    plot_w = SVG_WIDTH - SVG_LABEL_W - SVG_RIGHT
    scale = plot_w / span
    height = SVG_TOP + SVG_ROW * max(len(phases), 1) + 30

    def x_at(moment: datetime) -> float:
        return SVG_LABEL_W + (moment - start).total_seconds() * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" aria-labelledby="tl-title" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" width="{SVG_WIDTH}" height="{height}" '
        f'data-seconds-per-px="{1 / scale:.6f}">',
        '<title id="tl-title">Timeline of the recovery: one bar per phase, to scale</title>',
        "<defs>"
        '<pattern id="dry" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="8" height="8" fill="#bbdefb"/><rect width="4" height="8" fill="#1565c0"/></pattern>'
        "</defs>",
    ]
    step = next((t for t in _TICKS if span / t <= 10), _TICKS[-1])
    bottom = height - 26
    lead = (detected - start).total_seconds()  # ticks count from detection (T+0), also backwards
    for k in range(math.ceil(-lead / step), math.floor((span - lead) / step) + 1):
        x = x_at(detected + timedelta(seconds=k * step))
        offset = k * step
        label = "T" + (
            f"{offset / 3600:+g} h" if step >= 3600 else (f"{offset / 60:+g} min" if step >= 60 else f"{offset:+g} s")
        )
        parts.append(f'<line x1="{x:.2f}" y1="{SVG_TOP - 8}" x2="{x:.2f}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{x:.2f}" y="{height - 10}" class="tick" text-anchor="middle">{h(label)}</text>')

    def marker(moment: datetime, label: str, css: str, row: int) -> None:
        """A vertical line with its label in one of two rows above the bars, on the side that has room."""
        x = x_at(moment)
        anchor, dx = ("end", -4) if x > SVG_WIDTH - 7 * len(label) - 10 else ("start", 4)
        y = 14 + 16 * row
        parts.append(f'<line x1="{x:.2f}" y1="{y - 10}" x2="{x:.2f}" y2="{bottom}" class="{css}"/>')
        parts.append(f'<text x="{x + dx:.2f}" y="{y}" class="{css}-label" text-anchor="{anchor}">{h(label)}</text>')

    marker(detected, "detected (T+0)", "mark-detected", 0)
    marker(target_at, f"RTO target {format_duration(rto['target_seconds'])}", "mark-target", 0)
    if rto["to"]:
        back = parse_time(rto["to"])
        assert back is not None  # noqa: S101
        marker(back, f"back online: RTO {format_duration(rto['seconds'])}", "mark-back", 1)

    for i, phase in enumerate(phases):
        y = SVG_TOP + i * SVG_ROW
        parts.append(
            f'<text x="{SVG_LABEL_W - 8}" y="{y + 21}" class="phase-name" text-anchor="end">{h(phase["name"])}</text>'
        )
        p_start = parse_time(phase["started_at"])
        if p_start is None or phase["duration_seconds"] is None:
            parts.append(
                f'<text x="{SVG_LABEL_W + 4}" y="{y + 21}" class="bar-label" data-phase="{h(phase["name"])}">'
                f"{h(phase['status'])} (no times)</text>"
            )
            continue
        x = x_at(p_start)
        width = phase["duration_seconds"] * scale
        fill = "url(#dry)" if phase["status"] == "dry-run" else STATUS_COLOURS[phase["status"]]
        parts.append(
            f'<rect class="bar" x="{x:.3f}" y="{y + 6}" width="{width:.3f}" height="{SVG_ROW - 12}" rx="2" '
            f'fill="{fill}" data-phase="{h(phase["name"])}" data-status="{h(phase["status"])}" '
            f'data-seconds="{phase["duration_seconds"]:.3f}"><title>{h(phase["name"])}: '
            f"{h(_phase_label(phase))}</title></rect>"
        )
        label = _phase_label(phase)
        text_w = 7 * len(label)
        if x + width + 6 + text_w <= SVG_WIDTH:  # right of the bar
            parts.append(f'<text x="{x + width + 6:.2f}" y="{y + 21}" class="bar-label">{h(label)}</text>')
        elif x - 6 - text_w >= SVG_LABEL_W:  # left of it
            parts.append(f'<text x="{x - 6:.2f}" y="{y + 21}" class="bar-label" text-anchor="end">{h(label)}</text>')
        else:  # a bar across the plot: inside it
            parts.append(f'<text x="{x + 6:.2f}" y="{y + 21}" class="bar-label-in">{h(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# HTML

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif;color:#1b1b1b;
 background:#f4f5f7;margin:0}
main{max-width:1040px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 10px;border-bottom:2px solid #d0d4da;
 padding-bottom:4px}h3{font-size:16px;margin:18px 0 6px}
.sub{color:#555;margin:0 0 16px}
.headline{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:14px 0}
.tile{background:#fff;border-radius:8px;padding:12px 14px;border-left:8px solid #9e9e9e;
 box-shadow:0 1px 2px rgba(0,0,0,.12)}
.tile .k{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#555}
.tile .v{font-size:28px;font-weight:700;line-height:1.2}
.tile .t{font-size:13px;color:#333}
.tile.met{border-color:#2e7d32}.tile.notmet{border-color:#c62828}.tile.info{border-color:#1565c0}
.tile.warn{border-color:#ef6c00}
.badge{display:inline-block;font-weight:700;padding:1px 8px;border-radius:10px;font-size:13px;color:#fff}
.badge.met{background:#2e7d32}.badge.notmet{background:#c62828}.badge.unk{background:#ef6c00}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:8px 0}
.banner.ok{background:#e8f5e9;color:#1b5e20}.banner.bad{background:#ffebee;color:#b71c1c}
.banner.lab{background:#fff8e1;color:#6d4c00}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px;margin:6px 0}
th,td{border:1px solid #d0d4da;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eceff3}
td.num,th.num{text-align:right;white-space:nowrap}
code,.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.none{color:#666;font-style:italic}
.svgwrap{background:#fff;border-radius:8px;padding:8px;overflow-x:auto}
svg.timeline{max-width:100%;height:auto;font:13px system-ui,"DejaVu Sans",sans-serif}
svg .grid{stroke:#e3e6ea;stroke-width:1}svg .tick{fill:#555;font-size:11px}
svg .phase-name{font-weight:700;fill:#1b1b1b}svg .bar-label{fill:#1b1b1b}svg .bar-label-in{fill:#fff;font-weight:700}
svg .mark-detected{stroke:#ef6c00;stroke-width:2;stroke-dasharray:4 3}svg .mark-detected-label{fill:#ef6c00}
svg .mark-target{stroke:#c62828;stroke-width:2;stroke-dasharray:6 4}svg .mark-target-label{fill:#c62828}
svg .mark-back{stroke:#2e7d32;stroke-width:2}svg .mark-back-label{fill:#2e7d32;font-weight:700}
.sev-critical{color:#b71c1c;font-weight:700}.sev-high{color:#c62828}.sev-medium{color:#ef6c00}
.delta-up{color:#2e7d32;font-weight:700}.delta-down{color:#c62828;font-weight:700}
ol.explain li{margin:3px 0}
.certin th{width:32%}
.due{font-size:17px;font-weight:700}
footer{margin-top:40px;color:#666;font-size:13px}
@media print{body{background:#fff}.tile,.svgwrap{box-shadow:none;border:1px solid #ccc}}
@media (max-width:760px){.headline{grid-template-columns:1fr 1fr}}
"""


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], num: Iterable[int] = ()) -> str:
    """A table; cells are already-escaped HTML."""
    numeric = set(num)
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{h(c)}</th>" for i, c in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _none(text: str = NOT_RECORDED) -> str:
    return f'<p class="none">{h(text)}</p>'


def _tile(css: str, key: str, value: str, lines: Sequence[str]) -> str:
    return (
        f'<div class="tile {css}"><div class="k">{h(key)}</div><div class="v">{h(value)}</div>'
        + "".join(f'<div class="t">{line}</div>' for line in lines)
        + "</div>"
    )


def _badge(met: bool | None, missing: str | None = NOT_RECORDED) -> str:
    css = {True: "met", False: "notmet", None: "unk"}[met]
    return f'<span class="badge {css}">{h(_verdict(met, missing))}</span>'


def _render_html(report: Mapping[str, Any]) -> str:
    inc = report["incident"]
    summary = report["summary"]
    rto, rpo = summary["rto"], summary["rpo"]
    cert = report["cert_in"]
    ulbs = report["ulbs"]
    out: list[str] = []
    add = out.append
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    # Defence in depth: even if a value slipped through unescaped, nothing could run or load.
    add(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'\">"
    )
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(f"<title>Recovery report {h(inc['id'])}</title><style>{_CSS}</style></head><body><main>")
    lab = (inc.get("environment") or "").lower() == "lab"
    add(f"<h1>{'Drill' if lab else 'Recovery'} report: incident {h(inc['id'])}</h1>")
    add(
        f'<p class="sub">detected {h(_t(inc["detected_at"]))} · declared by {h(inc.get("declared_by") or NOT_RECORDED)}'
        f" · report generated {h(_t(report['generated_at']))}</p>"
    )
    if lab:
        add('<div class="banner lab">LAB DRILL: simulated attack on the lab estate; no real citizen data.</div>')
    if summary["recovered"] and not summary["failed_phases"]:
        add(f'<div class="banner ok">Estate back online at {h(_t(rto["to"]))}.</div>')
    elif summary["recovered"]:
        add(
            f'<div class="banner bad">Back online at {h(_t(rto["to"]))}, but phase(s) failed on the way: '
            f"{h(', '.join(summary['failed_phases']))}.</div>"
        )
    else:
        failed = ", ".join(summary["failed_phases"]) or "none"
        add(f'<div class="banner bad">NOT back online: {h(rto["note"])}. Failed phase(s): {h(failed)}.</div>')

    css = {True: "met", False: "notmet", None: "notmet"}
    add('<section class="headline" id="headline" aria-label="Headline">')
    add(
        _tile(
            css[rto["met"]],
            "RTO achieved",
            _rto_text(rto),
            [f"target {h(format_duration(rto['target_seconds']))} {_badge(rto['met'], None)}", h(rto["note"])],
        )
    )
    add(
        _tile(
            css[rpo["met"]],
            "RPO achieved",
            format_duration(rpo["seconds"]),
            [f"target {h(format_duration(rpo['target_seconds']))} {_badge(rpo['met'])}", "data lost before the attack"],
        )
    )
    online = NOT_RECORDED if ulbs["online"] is None else f"{ulbs['online']:g} / {ulbs['total']:g}"
    n_services = len(report["services"] or [])
    add(
        _tile(
            "info",
            "ULBs back online",
            online,
            [h(f"{n_services} service(s) back" if report["services"] is not None else "services not recorded")],
        )
    )
    due_css = "met" if cert["on_time"] else ("notmet" if cert["on_time"] is False or cert["overdue"] else "warn")
    if cert["reported_at"]:
        reported = f"sent {h(_t(cert['reported_at']))}" + ("" if cert["on_time"] else " (LATE)")
    else:
        reported = "<b>OVERDUE</b>, not recorded as sent" if cert["overdue"] else "not recorded as sent"
    due = parse_time(cert["due_at"])
    assert due is not None  # noqa: S101
    add(
        _tile(
            due_css,
            "CERT-In report due",
            due.astimezone(IST).strftime("%H:%M IST"),
            [h(ist_first(due)), reported, '<a href="#cert-in">pre-filled below</a>'],
        )
    )
    add("</section>")

    # Timeline
    phases = report["timeline"]["phases"]
    add('<h2 id="timeline">Timeline</h2>')
    if phases:
        occurred = parse_time(inc.get("occurred_at"))
        detected = parse_time(inc["detected_at"])
        assert detected is not None  # noqa: S101
        if occurred:
            add(
                f"<p>Attack started {h(format_time(occurred))}, detected "
                f"{h(format_duration((detected - occurred).total_seconds()))} later. T+0 is detection.</p>"
            )
        add(f'<div class="svgwrap">{timeline_svg(report)}</div>')
        add(
            _html_table(
                ["phase", "status", "started", "ended", "duration", "hosts", "what was done"],
                (
                    [
                        f"<b>{h(p['name'])}</b>",
                        h(p["status"]),
                        h(_t(p["started_at"], date=False)),
                        h(_t(p["ended_at"], date=False)),
                        h(format_duration(p["duration_seconds"])),
                        h(", ".join(p["hosts"]) or DASH),
                        h(p["summary"] or DASH),
                    ]
                    for p in phases
                ),
                num=[4],
            )
        )
        steps = [(p["name"], s) for p in phases for s in p["steps"]]
        if steps:
            add("<h3>Steps</h3>")
            add(
                _html_table(
                    ["phase", "step", "host", "status", "duration"],
                    (
                        [
                            h(n),
                            h(s["name"]),
                            h(s["host"] or DASH),
                            h(s["status"] or DASH),
                            h(format_duration(s["duration_seconds"])),
                        ]
                        for n, s in steps
                    ),
                    num=[4],
                )
            )
    else:
        add(_none("no phase has run yet"))

    # Clean point
    add('<h2 id="clean-point">Restore point: why this one</h2>')
    clean = report["clean_point"]
    if clean is None:
        add(_none())
    else:
        if clean["ok"] is False:
            add(f'<div class="banner bad">No clean restore point: {h(clean["error"])}</div>')
        if clean["explanation"]:
            add('<ol class="explain">' + "".join(f"<li>{h(line)}</li>" for line in clean["explanation"]) + "</ol>")
        else:
            add(_none("no explanation recorded"))
        target = clean["database_target"] or {}
        rows = [
            [
                "earliest malicious change",
                h(_t(clean["earliest_malicious_change"]))
                + (f" {DASH} {h(clean['earliest_malicious_source'])}" if clean["earliest_malicious_source"] else ""),
            ],
            [
                "database restored to",
                h(
                    f"just before transaction {target.get('xid')}"
                    if target.get("type") == "xid"
                    else (
                        f"just before {target.get('time')}"
                        if target.get("time")
                        else target.get("type") or NOT_RECORDED
                    )
                )
                + (
                    f" (committed {h(_t(target.get('time')))})"
                    if target.get("type") == "xid" and target.get("time")
                    else ""
                ),
            ],
            [
                "base backup",
                h(clean["base_backup"] or NOT_RECORDED)
                + (f" (ended {h(_t(clean['base_backup_stop']))})" if clean["base_backup_stop"] else ""),
            ],
            ["last transaction kept", h(clean["last_recovered_transaction"] or NOT_RECORDED)],
            [
                "legitimate transactions to re-enter",
                h(NOT_RECORDED if clean["lost_transactions"] is None else clean["lost_transactions"]),
            ],
        ]
        if clean["override"]:
            rows.append(["OPERATOR OVERRIDE", h(_contact_text(clean["override"]))])
        dbr = clean["database_restore"]
        if dbr:
            rows.append(
                [
                    "database restore",
                    h(
                        f"{dbr['host'] or '?'}: copy {format_duration(dbr['seconds_copy'])}, "
                        f"WAL replay {format_duration(dbr['seconds_replay'])}, pg_amcheck "
                        + ("clean" if dbr["amcheck_ok"] is True else "NOT clean")
                    ),
                ]
            )
        add(_html_table(["key evidence", ""], rows))
        if clean["malicious_transactions"]:
            add("<h3>Malicious database transactions</h3>")
            add(
                _html_table(
                    ["xid", "committed", "why"],
                    ([h(t["xid"]), h(_t(t["commit_time"])), h(t["reason"])] for t in clean["malicious_transactions"]),
                )
            )
        if clean["documents"]:
            add("<h3>Documents</h3>")
            add(
                _html_table(
                    ["host", "snapshot restored", "taken", "newer snapshots rejected", "documents restored", "refused"],
                    (
                        [
                            h(d["host"]),
                            h(d["snapshot"] or "NONE"),
                            h(_t(d["snapshot_time"])),
                            h(d["rejected"]),
                            h(NOT_RECORDED if d["restored"] is None else d["restored"]),
                            h(NOT_RECORDED if d["refused"] is None else d["refused"]),
                        ]
                        for d in clean["documents"]
                    ),
                    num=[3, 4, 5],
                )
            )
        if clean["skipped_base_backups"]:
            add(
                "<h3>Base backups not used</h3><ul>"
                + "".join(f"<li>{h(s)}</li>" for s in clean["skipped_base_backups"])
                + "</ul>"
            )

    # Drift
    add('<h2 id="drift">Drift findings (baseline verify, before rebuild)</h2>')
    findings = report["drift_findings"]
    if findings is None:
        add(_none())
    elif not findings:
        add(_none("none: every host matched its signed baseline"))
    else:
        add(
            _html_table(
                ["host", "severity", "kind", "path", "detail"],
                (
                    [
                        h(f["host"] or DASH),
                        f'<span class="sev-{h(f.get("severity") or "")}">{h(f.get("severity") or DASH)}</span>',
                        h(f["kind"] or DASH),
                        f"<code>{h(f['path'] or DASH)}</code>",
                        h(f["detail"] or DASH),
                    ]
                    for f in findings
                ),
            )
        )

    # Hardening
    add('<h2 id="hardening">Hardening score before and after</h2>')
    hard = report["hardening"]
    if hard is None:
        add(_none())
    elif not hard:
        add(_none("none"))
    else:

        def delta(row: Mapping[str, Any]) -> str:
            if row["change"] is None:
                return DASH
            css_d = "delta-up" if row["change"] > 0 else ("delta-down" if row["change"] < 0 else "")
            change = f"{row['change']:+g}"
            return f'<span class="{css_d}">{h(change)}</span>'

        add(
            _html_table(
                ["host", "before", "after", "change (points)"],
                ([h(r["host"]), h(_score(r["before"])), h(_score(r["after"])), delta(r)] for r in hard),
                num=[1, 2, 3],
            )
        )
        add('<p class="sub">Score: percent of applicable controls passing (docs/hardening-controls.md).</p>')

    # Services
    add('<h2 id="services">Services and ULBs back online</h2>')
    add(f"<p><b>ULBs served again:</b> {h(online)}</p>")
    services = report["services"]
    if services is None:
        add(_none())
    elif not services:
        add(_none("none"))
    else:
        add(
            _html_table(
                ["zone", "service", "host", "back at"],
                (
                    [h(s["zone"] or DASH), h(s["service"] or DASH), h(s["host"] or DASH), h(_t(s["back_at"]))]
                    for s in services
                ),
            )
        )

    # Evidence
    add('<h2 id="evidence">Evidence: chain of custody</h2>')
    evidence = report["evidence"]
    if evidence is None:
        add(_none())
    elif not evidence:
        add(_none("none collected"))
    else:
        add(
            _html_table(
                ["host", "item", "sha256", "collected", "by", "collected from"],
                (
                    [
                        h(e["host"] or DASH),
                        h(e["item"] or DASH),
                        f'<span class="hash">{h(e["sha256"] or NOT_RECORDED)}</span>',
                        h(_t(e["collected_at"])),
                        h(e["collected_by"] or NOT_RECORDED),
                        f"<code>{h(e['where'] or NOT_RECORDED)}</code>",
                    ]
                    for e in evidence
                ),
            )
        )

    # Not applicable
    add('<h2 id="not-applicable">Not applicable in the lab</h2>')
    na = report["not_applicable"]
    if na is None:
        add(_none())
    elif not na:
        add(_none("none"))
    else:
        add(_html_table(["what", "why"], ([h(n["what"] or DASH), h(n["why"] or DASH)] for n in na)))

    # CERT-In
    add('<h2 id="cert-in">CERT-In incident report (pre-filled)</h2>')
    add(f'<p class="due">Due within {CERT_IN_HOURS} hours of noticing: by {h(ist_first(due))}</p>')
    status = (
        f"Sent {h(_t(cert['reported_at']))}: " + ("on time." if cert["on_time"] else "LATE.")
        if cert["reported_at"]
        else "Not recorded as sent. Check every field, then send it to incident@cert-in.org.in."
    )
    add(f"<p>{status} CERT-In Directions 2022 D1; an initial report may be updated later.</p>")
    add(
        '<table class="certin"><tbody>'
        + "".join(
            f"<tr><th>{h(f['number'])}. {h(f['field'])}</th><td>" + "<br>".join(h(v) for v in f["value"]) + "</td></tr>"
            for f in cert["fields"]
        )
        + "</tbody></table>"
    )
    add(
        f"<footer>{h(FORMAT)} · incident {h(inc['id'])} · the same content is in report.md and report.json "
        "(with decision.json and restore-report.json verbatim).</footer>"
    )
    add("</main></body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Markdown


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md(c) for c in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _md_bar(seconds: float | None, longest: float) -> str:
    if seconds is None or longest <= 0:
        return ""
    return "█" * max(1 if seconds > 0 else 0, round(24 * seconds / longest))


def _render_markdown(report: Mapping[str, Any]) -> str:
    inc = report["incident"]
    summary = report["summary"]
    rto, rpo = summary["rto"], summary["rpo"]
    cert = report["cert_in"]
    ulbs = report["ulbs"]
    lab = (inc.get("environment") or "").lower() == "lab"
    out = [f"# {'Drill' if lab else 'Recovery'} report: incident {md(inc['id'])}", ""]
    out.append(
        f"Detected {md(_t(inc['detected_at']))}; declared by {md(inc.get('declared_by') or NOT_RECORDED)}; "
        f"report generated {md(_t(report['generated_at']))}."
    )
    out.append("")
    if lab:
        out += ["**LAB DRILL**: simulated attack on the lab estate; no real citizen data.", ""]
    if summary["recovered"]:
        out += [f"**Estate back online at {md(_t(rto['to']))}.**", ""]
    else:
        out += [f"**NOT back online**: {md(rto['note'])}.", ""]
    if summary["failed_phases"]:
        out += [f"Failed phase(s): {md(', '.join(summary['failed_phases']))}.", ""]
    due = parse_time(cert["due_at"])
    assert due is not None  # noqa: S101
    online = NOT_RECORDED if ulbs["online"] is None else f"{ulbs['online']:g} / {ulbs['total']:g}"
    out += ["## Summary", ""]
    out += _md_table(
        ["", "achieved", "target", "verdict"],
        [
            [
                "RTO (detection to reopen)",
                _rto_text(rto),
                format_duration(rto["target_seconds"]),
                _verdict(rto["met"], None),
            ],
            [
                "RPO (data lost)",
                format_duration(rpo["seconds"]),
                format_duration(rpo["target_seconds"]),
                _verdict(rpo["met"]),
            ],
            ["ULBs back online", online, f"{ulbs['total']:g}", ""],
            [
                "CERT-In report due",
                format_time(due),
                "6 h after detection",
                ("sent " + _t(cert["reported_at"]) + (" (on time)" if cert["on_time"] else " (LATE)"))
                if cert["reported_at"]
                else ("OVERDUE, not recorded as sent" if cert["overdue"] else "not recorded as sent"),
            ],
        ],
    )
    out += ["## Timeline", ""]
    phases = report["timeline"]["phases"]
    if phases:
        occurred = parse_time(inc.get("occurred_at"))
        detected = parse_time(inc["detected_at"])
        assert detected is not None  # noqa: S101
        if occurred:
            out += [
                f"Attack started {md(format_time(occurred))}, detected "
                f"{md(format_duration((detected - occurred).total_seconds()))} later. T+ is time since detection.",
                "",
            ]
        longest = max((p["duration_seconds"] or 0 for p in phases), default=0)
        start = parse_time(report["timeline"]["start"])
        assert start is not None  # noqa: S101
        lead = (detected - start).total_seconds()

        def since(value: str | None) -> str:
            moment = parse_time(value)
            return DASH if moment is None else "T+" + format_duration((moment - start).total_seconds() - lead)

        out += _md_table(
            ["phase", "status", "started", "ended", "duration", "", "hosts", "what was done"],
            [
                [
                    p["name"],
                    p["status"],
                    f"{_t(p['started_at'], date=False)} {since(p['started_at'])}",
                    f"{_t(p['ended_at'], date=False)} {since(p['ended_at'])}",
                    format_duration(p["duration_seconds"]),
                    _md_bar(p["duration_seconds"], longest),
                    ", ".join(p["hosts"]) or DASH,
                    p["summary"] or DASH,
                ]
                for p in phases
            ],
        )
        steps = [(p["name"], s) for p in phases for s in p["steps"]]
        if steps:
            out += ["### Steps", ""]
            out += _md_table(
                ["phase", "step", "host", "status", "duration"],
                [
                    [n, s["name"], s["host"] or DASH, s["status"] or DASH, format_duration(s["duration_seconds"])]
                    for n, s in steps
                ],
            )
    else:
        out += ["_no phase has run yet_", ""]

    out += ["## Restore point: why this one", ""]
    clean = report["clean_point"]
    if clean is None:
        out += [f"_{NOT_RECORDED}_", ""]
    else:
        if clean["ok"] is False:
            out += [f"**No clean restore point**: {md(clean['error'])}", ""]
        out += [f"{i}. {md(line, line_start=True)}" for i, line in enumerate(clean["explanation"], start=1)] or [
            "_no explanation recorded_"
        ]
        out.append("")
        target = clean["database_target"] or {}
        out += _md_table(
            ["key evidence", ""],
            [
                [
                    "earliest malicious change",
                    f"{_t(clean['earliest_malicious_change'])} {DASH} {clean['earliest_malicious_source'] or ''}",
                ],
                ["database target", json.dumps(target, sort_keys=True) if target else NOT_RECORDED],
                ["base backup", clean["base_backup"] or NOT_RECORDED],
                ["last transaction kept", clean["last_recovered_transaction"] or NOT_RECORDED],
                [
                    "legitimate transactions to re-enter",
                    NOT_RECORDED if clean["lost_transactions"] is None else clean["lost_transactions"],
                ],
            ]
            + ([["OPERATOR OVERRIDE", _contact_text(clean["override"])]] if clean["override"] else []),
        )
        if clean["malicious_transactions"]:
            out += ["### Malicious database transactions", ""]
            out += _md_table(
                ["xid", "committed", "why"],
                [[t["xid"], _t(t["commit_time"]), t["reason"]] for t in clean["malicious_transactions"]],
            )
        if clean["documents"]:
            out += ["### Documents", ""]
            out += _md_table(
                ["host", "snapshot restored", "taken", "newer rejected", "restored", "refused"],
                [
                    [
                        d["host"],
                        d["snapshot"] or "NONE",
                        _t(d["snapshot_time"]),
                        d["rejected"],
                        NOT_RECORDED if d["restored"] is None else d["restored"],
                        NOT_RECORDED if d["refused"] is None else d["refused"],
                    ]
                    for d in clean["documents"]
                ],
            )

    def section(title: str, rows: list[list[Any]] | None, headers: list[str], empty: str = "none") -> None:
        out.extend([f"## {title}", ""])
        if rows is None:
            out.extend([f"_{NOT_RECORDED}_", ""])
        elif not rows:
            out.extend([f"_{empty}_", ""])
        else:
            out.extend(_md_table(headers, rows))

    f_rows = (
        None
        if report["drift_findings"] is None
        else [
            [f["host"] or DASH, f.get("severity") or DASH, f["kind"] or DASH, f["path"] or DASH, f["detail"] or DASH]
            for f in report["drift_findings"]
        ]
    )
    section(
        "Drift findings (baseline verify, before rebuild)",
        f_rows,
        ["host", "severity", "kind", "path", "detail"],
        "none: every host matched its signed baseline",
    )
    hard = report["hardening"]
    section(
        "Hardening score before and after",
        None
        if hard is None
        else [
            [r["host"], _score(r["before"]), _score(r["after"]), DASH if r["change"] is None else f"{r['change']:+g}"]
            for r in hard
        ],
        ["host", "before", "after", "change"],
    )
    if hard:
        out += ["Score: percent of applicable controls passing.", ""]
    out += ["## Services and ULBs back online", "", f"ULBs served again: {md(online)}", ""]
    services = report["services"]
    if services is None:
        out += [f"_{NOT_RECORDED}_", ""]
    elif not services:
        out += ["_none_", ""]
    else:
        out += _md_table(
            ["zone", "service", "host", "back at"],
            [[s["zone"] or DASH, s["service"] or DASH, s["host"] or DASH, _t(s["back_at"])] for s in services],
        )
    ev = report["evidence"]
    section(
        "Evidence: chain of custody",
        None
        if ev is None
        else [
            [
                e["host"] or DASH,
                e["item"] or DASH,
                e["sha256"] or NOT_RECORDED,
                _t(e["collected_at"]),
                e["collected_by"] or NOT_RECORDED,
                e["where"] or NOT_RECORDED,
            ]
            for e in ev
        ],
        ["host", "item", "sha256", "collected", "by", "collected from"],
        "none collected",
    )
    na = report["not_applicable"]
    section(
        "Not applicable in the lab",
        None if na is None else [[n["what"] or DASH, n["why"] or DASH] for n in na],
        ["what", "why"],
    )

    out += ["## CERT-In incident report (pre-filled)", ""]
    out += [
        f"**Due within {CERT_IN_HOURS} hours of noticing: by {md(ist_first(due))}** (CERT-In Directions 2022, D1).",
        "",
    ]
    if cert["reported_at"]:
        out += [f"Sent {md(_t(cert['reported_at']))}: {'on time' if cert['on_time'] else 'LATE'}.", ""]
    else:
        out += ["Not recorded as sent. Check every field, then send it to incident@cert-in.org.in.", ""]
    for f in cert["fields"]:
        out.append(f"{f['number']}. **{md(f['field'])}**")
        out += [f"   - {md(v, line_start=True)}" for v in f["value"]]
    out += ["", f"_{md(FORMAT)}; decision.json and restore-report.json are kept verbatim in report.json._", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def render(run: Mapping[str, Any], *, generated_at: datetime | str | None = None) -> Report:
    """The report in JSON (normalised dict), Markdown and HTML. RunError (a ValueError) names the bad field."""
    data = normalise(run, generated_at=generated_at)
    return Report(json=data, markdown=_render_markdown(data), html=_render_html(data))


REPORT_FILES: dict[str, str] = {"json": "report.json", "markdown": "report.md", "html": "report.html"}


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_reports(
    run: Mapping[str, Any], out_dir: str | os.PathLike[str], *, generated_at: datetime | None = None, mode: int = 0o640
) -> dict[str, Path]:
    """Render and write report.json, report.md and report.html into out_dir (created if needed), each atomically
    (temporary file, fsync, rename), so a reader never sees half a report. Returns {json, markdown, html: path}.
    ``mode`` 0640: the report names people, indicators and hashes of evidence."""
    report = render(run, generated_at=generated_at or datetime.now(UTC))
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "json": json.dumps(report.json, indent=2, sort_keys=False, ensure_ascii=False) + "\n",
        "markdown": report.markdown,
        "html": report.html,
    }
    paths = {}
    for kind, name in REPORT_FILES.items():
        path = directory / name
        _write_atomic(path, texts[kind], mode)
        paths[kind] = path
    return paths


def format_summary(report: Report | Mapping[str, Any], paths: Mapping[str, Path] | None = None) -> list[str]:
    """A few lines for the terminal at the end of `enp recover` / `enp drill`: RTO, RPO, met or not, report paths."""
    data = report.json if isinstance(report, Report) else report
    summary = data["summary"]
    rto, rpo = summary["rto"], summary["rpo"]
    due = parse_time(data["cert_in"]["due_at"])
    lines = [
        f"Incident {data['incident']['id']}: " + ("back online" if summary["recovered"] else "NOT back online"),
        f"RTO {_rto_text(rto)} (target {format_duration(rto['target_seconds'])}): " + _verdict(rto["met"], None),
        f"RPO {format_duration(rpo['seconds'])} (target {format_duration(rpo['target_seconds'])}): "
        + _verdict(rpo["met"]),
    ]
    if summary["failed_phases"]:
        label = "Failed on the way, then rerun" if summary["recovered"] else "Failed phase(s)"
        lines.append(f"{label}: {', '.join(summary['failed_phases'])}")
    if not data["cert_in"]["reported_at"]:
        overdue = " - OVERDUE" if data["cert_in"]["overdue"] else ""
        lines.append(f"CERT-In report due by {format_time(due)}{overdue}")
    for kind, path in (paths or {}).items():
        lines.append(f"Report ({kind}): {path}")
    return [clean_text(line).replace("\n", "\ufffd") for line in lines]
