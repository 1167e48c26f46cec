"""enp.incident: IDs and times, the journal (torn lines, append), phase states, what runs next, the run JSON for
enp.report, the lock. Pure functions are table-driven; the file helpers run on tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enp import incident as inc
from enp.incident import IncidentError, PhaseState

NOW = datetime(2026, 12, 6, 8, 15, 30, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------------
# The phase table


def test_phase_table_is_the_runbook_order() -> None:
    assert inc.PHASE_NAMES == ("contain", "evidence", "rebuild", "restore", "verify", "reopen")
    assert [p.name for p in inc.PHASES if p.destructive] == ["contain", "rebuild", "restore", "reopen"]
    assert all(p.warning for p in inc.PHASES if p.destructive)
    assert inc.PHASES_BY_NAME["rebuild"].playbook() == "playbooks/rebuild.yml"
    assert inc.PHASES_BY_NAME["rebuild"].playbook("t/resume_{phase}.yml") == "t/resume_rebuild.yml"
    assert inc.PHASES_BY_NAME["reopen"].confirm_var == "enp_reopen_confirm"


INCIDENT = {"id": "INC-20261206-0750", "occurred_at": "2026-12-06T07:50:00Z", "detected_at": "2026-12-06T08:10:00Z"}


@pytest.mark.parametrize(
    ("phase", "plan_only", "expected"),
    [
        ("evidence", False, {}),
        ("contain", False, {"enp_contain_confirm": "contain"}),
        (
            "restore",
            False,
            {
                "enp_restore_confirm": "restore",
                "enp_restore_dir": "/p/.enp/incidents/I/restore",
                "enp_incident_time": "2026-12-06T07:50:00Z",
            },
        ),
        (
            "restore",
            True,
            {
                "enp_restore_plan_only": True,
                "enp_restore_dir": "/p/.enp/incidents/I/restore",
                "enp_incident_time": "2026-12-06T07:50:00Z",
            },
        ),
    ],
)
def test_phase_extravars(phase: str, plan_only: bool, expected: dict[str, Any]) -> None:
    got = inc.phase_extravars(
        inc.PHASES_BY_NAME[phase], INCIDENT, Path("/p/.enp/incidents/I"), restore_plan_only=plan_only
    )
    assert got == {"enp_incident_id": "INC-20261206-0750", "enp_incident_dir": "/p/.enp/incidents/I", **expected}


def test_restore_without_attack_time_leaves_the_choice_to_the_evidence() -> None:
    got = inc.phase_extravars(inc.PHASES_BY_NAME["restore"], {**INCIDENT, "occurred_at": None}, "/d")
    assert "enp_incident_time" not in got


# ---------------------------------------------------------------------------------------------------------------
# Times and IDs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T07:50:00Z", "2026-12-06T07:50:00Z"),
        ("2026-12-06T07:50Z", "2026-12-06T07:50:00Z"),
        ("2026-12-06T13:20:00+05:30", "2026-12-06T07:50:00Z"),
        ("2026-12-06 07:50:00z", "2026-12-06T07:50:00Z"),
    ],
)
def test_parse_time(text: str, expected: str) -> None:
    assert inc.format_time(inc.parse_time(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-12-06T07:50:00", "has no time zone; add Z for UTC"),
        ("yesterday", "is not an ISO 8601 time"),
        ("", "is not an ISO 8601 time"),
    ],
)
def test_parse_time_refuses(text: str, message: str) -> None:
    with pytest.raises(IncidentError, match=message):
        inc.parse_time(text)


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ([], "INC-20261206-0815"),
        (["INC-20261206-0815"], "INC-20261206-0815-2"),
        (["INC-20261206-0815", "INC-20261206-0815-2"], "INC-20261206-0815-3"),
    ],
)
def test_default_id(taken: list[str], expected: str) -> None:
    assert inc.new_incident(now=NOW, taken=taken)["id"] == expected


def test_new_incident_record() -> None:
    record = inc.new_incident(
        now=NOW,
        incident_id="INC-ulb-42",
        detected_at="2026-12-06T13:40+05:30",
        occurred_at="2026-12-06T07:50:00Z",
        declared_by="asha",
    )
    assert record == {
        "format": "enp-incident/1",
        "id": "INC-ulb-42",
        "occurred_at": "2026-12-06T07:50:00Z",
        "detected_at": "2026-12-06T08:10:00Z",
        "declared_by": "asha",
        "created_at": "2026-12-06T08:15:30Z",
    }
    assert inc.new_incident(now=NOW)["occurred_at"] is None
    assert inc.new_incident(now=NOW)["detected_at"] == "2026-12-06T08:15:30Z"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"incident_id": "../etc"}, "not usable as a folder name"),
        ({"incident_id": "a b"}, "not usable as a folder name"),
        (
            {"incident_id": "INC-1", "taken": ["INC-1"]},
            "already exists; continue it with: enp recover --incident INC-1",
        ),
        ({"detected_at": "2026-12-07T00:00:00Z"}, "is in the future"),
        ({"occurred_at": "2026-12-06T08:20:00Z"}, "is after --detected-at"),
        ({"occurred_at": "2026-12-06T07:50"}, "has no time zone"),
    ],
)
def test_new_incident_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(IncidentError, match=message):
        inc.new_incident(now=NOW, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The journal


def ev(event: str, phase: str | None = None, at: str = "2026-12-06T08:20:00Z", **data: Any) -> dict[str, Any]:
    return {"event": event, "at": at, "pid": 100, **({"phase": phase} if phase else {}), **data}


def journal_text(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_parse_journal_skips_a_torn_last_line_quietly() -> None:
    text = journal_text([ev("phase_started", "contain")]) + '{"event": "phase_do'
    events, problems = inc.parse_journal(text)
    assert [e["event"] for e in events] == ["phase_started"]
    assert problems == []


def test_parse_journal_names_a_broken_line_in_the_middle() -> None:
    text = (
        journal_text([ev("phase_started", "contain")]) + "garbage\n[1]\n" + journal_text([ev("phase_done", "contain")])
    )
    events, problems = inc.parse_journal(text)
    assert [e["event"] for e in events] == ["phase_started", "phase_done"]
    assert problems == ["line 2 is not a journal record; skipped", "line 3 is not a journal record; skipped"]


def done(phase: str) -> list[dict[str, Any]]:
    return [ev("phase_started", phase), ev("phase_done", phase, status="successful", rc=0, hosts=["web1"])]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], ["pending"] * 6, id="nothing yet"),
        pytest.param(done("contain") + done("evidence"), ["done", "done"] + ["pending"] * 4, id="two done"),
        pytest.param(
            [*done("contain"), ev("phase_started", "evidence")],
            ["done", "interrupted"] + ["pending"] * 4,
            id="killed mid-phase",
        ),
        pytest.param(
            [*done("contain"), ev("phase_started", "evidence"), ev("phase_failed", "evidence", status="failed")],
            ["done", "failed"] + ["pending"] * 4,
            id="failed",
        ),
        pytest.param(
            [*done("contain"), ev("phase_started", "contain")],
            ["interrupted"] + ["pending"] * 5,
            id="a redo that was killed is not done",
        ),
        pytest.param(
            [ev("phase_dry_run", "contain", status="successful"), ev("phase_done", "evidence")],
            ["pending"] * 6,
            id="dry runs and ends without a start count for nothing",
        ),
    ],
)
def test_phase_states(events: list[dict[str, Any]], expected: list[str]) -> None:
    states = inc.phase_states(events)
    assert [states[p].status for p in inc.PHASE_NAMES] == expected


def test_phase_state_keeps_the_last_attempt() -> None:
    events = [
        ev("phase_started", "rebuild", at="2026-12-06T08:20:00Z"),
        ev("phase_running", "rebuild", ansible_pid=4242, artifact_dir="/r/1"),
        ev("phase_started", "rebuild", at="2026-12-06T08:30:00Z"),
        ev("phase_running", "rebuild", ansible_pid=4343, artifact_dir="/r/2"),
        ev("phase_done", "rebuild", at="2026-12-06T08:40:00Z", rc=0, hosts=["db1", "web1"], duration=600.0),
    ]
    state = inc.phase_states(events)["rebuild"]
    assert (state.status, state.attempts, state.started_at, state.ended_at) == (
        "done",
        2,
        "2026-12-06T08:30:00Z",
        "2026-12-06T08:40:00Z",
    )
    assert (state.ansible_pid, state.artifact_dir, state.hosts) == (4343, "/r/2", ["db1", "web1"])


# ---------------------------------------------------------------------------------------------------------------
# What runs next


def states_with(done_phases: set[str], interrupted: str | None = None) -> dict[str, PhaseState]:
    states = {p: PhaseState(p) for p in inc.PHASE_NAMES}
    for p in done_phases:
        states[p].status = "done"
    if interrupted:
        states[interrupted].status = "interrupted"
    return states


ALL = list(inc.PHASE_NAMES)


@pytest.mark.parametrize(
    ("done_phases", "interrupted", "options", "expected"),
    [
        pytest.param(set(), None, {}, ALL, id="fresh"),
        pytest.param({"contain", "evidence"}, "rebuild", {}, ALL[2:], id="resume at the interrupted phase"),
        pytest.param(set(ALL), None, {}, [], id="all done: nothing"),
        pytest.param({"contain", "rebuild"}, None, {}, ["evidence", *ALL[3:]], id="a gap is filled, done skipped"),
        pytest.param(set(ALL), None, {"from_phase": "verify"}, ["verify", "reopen"], id="--from"),
        pytest.param(set(ALL), None, {"redo": ["contain", "verify"]}, ["contain", "verify"], id="--redo twice"),
        pytest.param(set(ALL[:3]), None, {"redo": ["contain"]}, ["contain", *ALL[3:]], id="--redo plus remaining"),
    ],
)
def test_plan_phases(
    done_phases: set[str], interrupted: str | None, options: dict[str, Any], expected: list[str]
) -> None:
    assert inc.plan_phases(states_with(done_phases, interrupted), **options) == expected


def test_plan_phases_refuses_unknown_phases() -> None:
    with pytest.raises(IncidentError, match="unknown phase backup, wipe; phases are: contain, evidence"):
        inc.plan_phases(states_with(set()), from_phase="wipe", redo=["backup"])


def test_pending_before() -> None:
    assert inc.pending_before(states_with({"contain"}), "restore") == ["evidence", "rebuild"]
    assert inc.pending_before(states_with(set()), "contain") == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["recover", "--yes"], ["recover", "--yes", "--incident", "I"]),
        (["recover", "--from", "rebuild", "--yes"], ["recover", "--yes", "--incident", "I"]),
        (["recover", "--redo=verify", "--redo", "contain", "-v"], ["recover", "-v", "--incident", "I"]),
        (["-i", "inv", "contain", "--redo", "--yes"], ["-i", "inv", "contain", "--yes", "--incident", "I"]),
        (["recover", "--incident", "OLD", "--yes"], ["recover", "--yes", "--incident", "I"]),
    ],
)
def test_rerun_never_repeats_a_deliberate_redo(argv: list[str], expected: list[str]) -> None:
    assert inc.strip_rerun_options(argv, "I") == expected


# ---------------------------------------------------------------------------------------------------------------
# The run JSON for enp.report


RUN_EVENTS = [
    ev("incident_started", at="2026-12-06T08:15:30Z", id="INC-1"),
    *[{**e, "at": at} for e, at in zip(done("contain"), ["2026-12-06T08:16:00Z", "2026-12-06T08:17:00Z"], strict=True)],
    ev("phase_dry_run", "rebuild", at="2026-12-06T08:18:00Z", duration=30.0, status="successful", hosts=["web1"]),
    ev("phase_started", "rebuild", at="2026-12-06T08:19:00Z"),
    ev("phase_running", "rebuild", at="2026-12-06T08:19:02Z", ansible_pid=7, artifact_dir="/p/.enp/runs/a"),
    ev("phase_started", "rebuild", at="2026-12-06T08:25:00Z"),
    ev(
        "phase_failed",
        "rebuild",
        at="2026-12-06T08:29:00Z",
        status="failed",
        rc=2,
        hosts=["db1", "web1"],
        stats={"ok": {"db1": 3, "web1": 2}, "failures": {"web1": 1}},
        failures=[{"host": "web1", "task": "Install nginx", "msg": "no package"}],
        artifact_dir="/p/.enp/runs/b",
    ),
]


def test_phase_attempts_lists_every_attempt_in_order() -> None:
    attempts = inc.phase_attempts(RUN_EVENTS)
    assert [(a["name"], a["status"], a["started_at"], a["ended_at"]) for a in attempts] == [
        ("contain", "done", "2026-12-06T08:16:00Z", "2026-12-06T08:17:00Z"),
        ("rebuild", "dry-run", "2026-12-06T08:17:30Z", "2026-12-06T08:18:00Z"),
        ("rebuild", "failed", "2026-12-06T08:19:00Z", "2026-12-06T08:19:02Z"),
        ("rebuild", "failed", "2026-12-06T08:25:00Z", "2026-12-06T08:29:00Z"),
    ]
    assert attempts[2]["summary"].startswith("interrupted: enp stopped mid-phase")
    assert attempts[2]["summary"].endswith("run /p/.enp/runs/a")
    assert attempts[3]["summary"] == (
        "2 hosts: ok 5, changed 0, failed 1, unreachable 0; ansible-runner failed, rc 2; "
        "web1 failed in 'Install nginx': no package; run /p/.enp/runs/b"
    )
    assert attempts[3]["hosts"] == ["db1", "web1"]
    assert all(set(a) == {"name", "status", "started_at", "ended_at", "hosts", "summary"} for a in attempts)


def test_a_phase_still_open_at_the_end_is_reported_interrupted() -> None:
    (attempt,) = inc.phase_attempts([ev("phase_started", "verify", at="2026-12-06T09:00:00Z")])
    assert (attempt["status"], attempt["ended_at"]) == ("failed", "2026-12-06T09:00:00Z")


def test_assemble_run() -> None:
    incident = {
        "format": "enp-incident/1",
        "id": "INC-1",
        "occurred_at": None,
        "detected_at": "2026-12-06T08:10:00Z",
        "declared_by": "asha",
        "created_at": "2026-12-06T08:15:30Z",
        "environment": "lab",
    }
    outputs = {
        "restore": {"decision": {"point": "p1"}, "restore-report": {"rpo_seconds": 2}, "points": {"x": 1}},
        "evidence": {"evidence": [{"host": "web1", "item": "ps"}], "custody-notes": {"a": 1}},
        "verify": {"evidence": [{"host": "db1", "item": "log"}], "hardening": {"after": {"web1": 98}}},
        "contain": {"hardening": {"before": {"web1": 40}}},
    }
    run = inc.assemble_run(incident, RUN_EVENTS, outputs, generated_at="2026-12-06T10:00:00Z")
    assert run["format"] == "enp-recovery-run/1"
    assert run["incident"] == {
        "id": "INC-1",
        "detected_at": "2026-12-06T08:10:00Z",
        "declared_by": "asha",
        "declared_at": "2026-12-06T08:15:30Z",
        "environment": "lab",
    }
    assert run["decision"] == {"point": "p1"}
    assert run["restore"] == {"rpo_seconds": 2}
    assert run["evidence"] == [{"host": "web1", "item": "ps"}, {"host": "db1", "item": "log"}]  # phase order
    assert run["hardening"] == {"before": {"web1": 40}, "after": {"web1": 98}}
    assert set(run) == {"format", "generated_at", "incident", "phases", "decision", "restore", "evidence", "hardening"}
    assert len(run["phases"]) == 4


def test_assemble_run_is_accepted_by_the_report_writer() -> None:
    report = pytest.importorskip("enp.report")
    run = inc.assemble_run(
        {"id": "INC-1", "detected_at": "2026-12-06T08:10:00Z"}, RUN_EVENTS, {}, generated_at="2026-12-06T10:00:00Z"
    )
    assert report.render(run).json["incident"]["id"] == "INC-1"


def test_read_outputs(tmp_path: Path) -> None:
    (tmp_path / "verify").mkdir()
    (tmp_path / "verify" / "hardening.json").write_text('{"after": {"web1": 97}}')
    (tmp_path / "verify" / "broken.json").write_text("{")
    (tmp_path / "verify" / "notes.txt").write_text("not json, not read")
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "evidence.json").write_text("[" + ",".join(["1"] * 50) + "]")
    (tmp_path / "report").mkdir()  # not a phase
    (tmp_path / "report" / "report.json").write_text("{}")
    outputs, problems = inc.read_outputs(tmp_path, max_bytes=60)
    assert outputs == {"verify": {"hardening": {"after": {"web1": 97}}}}
    assert len(problems) == 2
    assert "broken.json left out of the report" in problems[1]
    assert "evidence.json is larger than 60 bytes" in problems[0]


# ---------------------------------------------------------------------------------------------------------------
# On disk


def test_store_create_and_load(tmp_path: Path) -> None:
    store = inc.IncidentStore.for_project(tmp_path)
    with pytest.raises(IncidentError, match="no current incident; declare one first: enp incident start"):
        store.resolve(None)
    record = inc.new_incident(now=NOW, declared_by="asha")
    directory = store.create(record)
    assert directory == tmp_path / ".enp" / "incidents" / "INC-20261206-0815"
    assert store.current() == store.resolve(None) == "INC-20261206-0815"
    with pytest.raises(IncidentError, match=r"incident NOPE not found .* \(known: INC-20261206-0815\)"):
        store.resolve("NOPE")
    inc.append_event(directory / inc.JOURNAL, {"event": "phase_started", "phase": "contain"})
    loaded, events, problems = store.load("INC-20261206-0815")
    assert loaded == record
    assert [e["event"] for e in events] == ["incident_started", "phase_started"]
    assert events[1]["pid"] == os.getpid() and events[1]["at"].endswith("Z")
    assert problems == []
    assert not list(directory.glob(".*.tmp"))


def test_lock_is_exclusive_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    assert inc.lock_holder(lock) is None
    with inc.acquire_lock(lock, "enp recover on INC-1"):
        holder = inc.lock_holder(lock)
        assert holder is not None and holder.startswith(f"pid {os.getpid()}: enp recover on INC-1 (since ")
        # flock locks belong to the open file, so a second open in this process is refused too
        with pytest.raises(inc.LockHeld) as held, inc.acquire_lock(lock, "second"):
            pass
        assert held.value.holder == holder
    assert inc.lock_holder(lock) is None
    # A process that dies holding the lock (kill -9) leaves it free.
    code = (
        "import os, sys; from pathlib import Path; from enp import incident as inc\n"
        "with inc.acquire_lock(Path(sys.argv[1]), 'doomed'):\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(lock)], check=False)
    assert proc.returncode == -9
    assert "doomed" in lock.read_text()  # its words are still there...
    assert inc.lock_holder(lock) is None  # ...but nobody holds it
    with inc.acquire_lock(lock, "after"):
        pass


def test_process_alive() -> None:
    assert inc.process_alive(os.getpid(), name="python")
    assert not inc.process_alive(os.getpid(), name="ansible-playbook")
    assert not inc.process_alive(None)
    assert not inc.process_alive(2**22 + 12345)


def test_render_status() -> None:
    states = states_with({"contain"}, interrupted="evidence")
    lines = inc.render_status({"id": "INC-1", "detected_at": "2026-12-06T08:10:00Z"}, states)
    assert lines[0] == "Incident INC-1: occurred unknown, detected 2026-12-06T08:10:00Z, declared by unknown."
    assert lines[2].split() == ["PHASE", "STATUS", "STARTED", "ENDED", "TRIES", "PLAYBOOK"]
    assert lines[3].split()[:2] == ["contain", "done"]
    assert lines[4].split()[:2] == ["evidence", "INTERRUPTED"]
    assert (
        lines[-1] == "Next: evidence. `enp recover` runs evidence, rebuild, restore, verify, reopen, then the report."
    )


def test_evidence_records_come_from_the_chain_of_custody_not_the_summary(tmp_path: Path) -> None:
    report = pytest.importorskip("enp.report")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "evidence.json").write_text('{"hosts": {"web1": {"items": 2}}, "chain": {"head": "ab"}}')
    record = {
        "host": "web1",
        "item": "web1/run1/processes.json",
        "sha256": "a" * 64,
        "bytes": 10,
        "collected_at": "2026-12-06T08:20:00Z",
        "collected_at_ist": "2026-12-06T13:50:00+05:30",
        "collected_by": "oncall@controller",
        "where": "/proc",
        "incident_id": "INC-1",
        "prev_hash": "0" * 64,
    }
    (evidence / "custody.jsonl").write_text(json.dumps(record) + "\n\n")
    outputs, problems = inc.read_outputs(tmp_path)
    assert problems == []
    run = inc.assemble_run(
        {"id": "INC-1", "detected_at": "2026-12-06T08:10:00Z"}, RUN_EVENTS, outputs, generated_at="2026-12-06T10:00:00Z"
    )
    assert run["evidence"] == [
        {k: record[k] for k in ("host", "item", "sha256", "collected_at", "collected_by", "where")}
    ]
    assert report.render(run).json["evidence"][0]["sha256"] == "a" * 64
