"""enp.cli and enp.progress: arguments, exit codes, confirmation, reports, --json, progress lines.

Runs are faked (runner.run_playbook replaced) except in the last test, which takes a real playbook through the
whole command on localhost.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

import enp
from enp import cli, runner
from enp import incident as enp_incident
from enp.cli import EXIT_CODES, LAB_DOWN_CONFIRM_VAR, ExitCode
from enp.progress import Progress, format_elapsed
from enp.runner import HostFailure, RunnerSetupError, RunResult

# ---------------------------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lab", "up"], {"action": "up", "inventory": "inventories/lab", "json": False, "verbose": 0}),
        (["--json", "lab", "status"], {"action": "status", "json": True}),
        (["lab", "status", "--json"], {"action": "status", "json": True}),
        (["lab", "--json", "status"], {"action": "status", "json": True}),
        (["-i", "inventories/production-example", "lab", "up"], {"inventory": "inventories/production-example"}),
        (["lab", "down", "-i", "x.yml"], {"inventory": "x.yml", "yes": False, "check": False}),
        (["lab", "down", "--yes", "--check"], {"action": "down", "yes": True, "check": True}),
        (["-vv", "lab", "up"], {"verbose": 2}),
        (["lab", "up", "-v"], {"verbose": 1}),
    ],
)
def test_parse(argv: list[str], expected: dict[str, Any]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.group == "lab"
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["lab"],
        ["lab", "sideways"],
        ["frobnicate"],
        ["lab", "up", "--yes"],  # --yes only exists where something is destroyed
        ["lab", "status", "--check"],
        ["-i"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == ExitCode.USAGE == 2
    assert "usage: enp" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"enp {enp.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", enp.__version__)


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, text in EXIT_CODES.items():
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(text)}$", out, re.MULTILINE), code
    assert set(EXIT_CODES) == set(ExitCode)


# ---------------------------------------------------------------------------------------------------------------
# Exit codes


def result(
    status: str = "successful",
    rc: int = 0,
    failures: list[HostFailure] | None = None,
    stats: dict[str, dict[str, int]] | None = None,
    set_stats: dict[str, Any] | None = None,
    artifact_dir: Path = Path("/srv/enp/.enp/runs/20261123T164019Z-lab-up"),
) -> RunResult:
    return RunResult(
        status=status,
        rc=rc,
        stats=stats or {},
        artifact_dir=artifact_dir,
        failures=failures or [],
        set_stats=set_stats or {},
        duration=83.2,
    )


FAIL_WEB1 = HostFailure("web1", "Install nginx", "No package matching 'nginx' is available", task_path="r.yml:3")
DOWN_DB2 = HostFailure("db2", "Gathering Facts", "Failed to connect to the host via ssh", unreachable=True)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        pytest.param(result(), ExitCode.OK, id="successful"),
        pytest.param(result("failed", 2, [FAIL_WEB1], {"failures": {"web1": 1}}), ExitCode.FAILED, id="task failed"),
        pytest.param(result("failed", 4, [DOWN_DB2], {"dark": {"db2": 1}}), ExitCode.UNREACHABLE, id="unreachable"),
        pytest.param(
            result("failed", 2, [DOWN_DB2, FAIL_WEB1], {"dark": {"db2": 1}, "failures": {"web1": 1}}),
            ExitCode.FAILED,
            id="failed beats unreachable",
        ),
        pytest.param(result("failed", 4, stats={"dark": {"db2": 1}}), ExitCode.UNREACHABLE, id="dark in recap only"),
        pytest.param(result("failed", 4), ExitCode.FAILED, id="rc 4 without recap is a parse error, not unreachable"),
        pytest.param(result("canceled", 254, [FAIL_WEB1]), ExitCode.INTERRUPTED, id="canceled"),
        pytest.param(result("timeout", 254), ExitCode.FAILED, id="timeout"),
        pytest.param(result("error", 127), ExitCode.FAILED, id="could not start"),
        pytest.param(result("successful", 0, stats={"ok": {"web1": 3}}), ExitCode.OK, id="ok with stats"),
    ],
)
def test_exit_code_for(run: RunResult, expected: ExitCode) -> None:
    assert cli.exit_code_for(run) == expected


# ---------------------------------------------------------------------------------------------------------------
# Running commands with a fake runner


class FakeStdin(io.StringIO):
    def __init__(self, text: str = "", tty: bool = False) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class FakeRunner:
    def __init__(self, run: RunResult | Exception) -> None:
        self.run = run
        self.calls: list[dict[str, Any]] = []

    def __call__(self, playbook: str, **kwargs: Any) -> RunResult:
        self.calls.append({"playbook": playbook, **kwargs})
        if isinstance(self.run, Exception):
            raise self.run
        return self.run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "inventories" / "lab").mkdir(parents=True)
    (tmp_path / "inventories" / "lab" / "hosts.yml").write_text("all: {}\n")
    monkeypatch.setenv("ENP_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sys, "stdin", FakeStdin())
    return tmp_path


def fake(monkeypatch: pytest.MonkeyPatch, run: RunResult | Exception) -> FakeRunner:
    faked = FakeRunner(run)
    monkeypatch.setattr(runner, "run_playbook", faked)
    return faked


def test_lab_up_runs_its_playbook(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faked = fake(monkeypatch, result())
    assert cli.main(["lab", "up"]) == 0
    (call,) = faked.calls
    assert call["playbook"] == "playbooks/lab_up.yml"
    assert call["project_dir"] == project.resolve()
    assert call["inventory"] == project / "inventories" / "lab"
    assert (call["command"], call["check"], call["extravars"], call["verbosity"]) == ("lab up", False, {}, 0)


def test_not_root_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    faked = fake(monkeypatch, result())
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["lab", "up"]) == ExitCode.REFUSED
    assert faked.calls == []
    assert "run as root, e.g. sudo enp lab up" in capsys.readouterr().err


def test_down_without_yes_and_without_terminal_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    faked = fake(monkeypatch, result())
    monkeypatch.setattr(sys, "stdin", FakeStdin("down\n", tty=False))
    assert cli.main(["lab", "down"]) == ExitCode.REFUSED
    assert faked.calls == []
    err = capsys.readouterr().err
    assert "stdin is not a terminal" in err
    assert "enp lab down --yes" in err


@pytest.mark.parametrize(
    ("typed", "expected", "runs"),
    [
        ("down\n", ExitCode.OK, 1),
        ("  down  \n", ExitCode.OK, 1),
        ("yes\n", ExitCode.REFUSED, 0),
        ("Down\n", ExitCode.REFUSED, 0),
        ("", ExitCode.REFUSED, 0),
    ],
)
def test_down_typed_confirmation(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, typed: str, expected: int, runs: int
) -> None:
    faked = fake(monkeypatch, result())
    monkeypatch.setattr(sys, "stdin", FakeStdin(typed, tty=True))
    assert cli.main(["lab", "down"]) == expected
    assert len(faked.calls) == runs
    assert "Type 'down' to continue" in capsys.readouterr().err
    if runs:
        assert faked.calls[0]["extravars"] == {LAB_DOWN_CONFIRM_VAR: "down"}


@pytest.mark.parametrize(
    ("argv", "check"),
    [(["lab", "down", "--yes"], False), (["lab", "down", "--check"], True)],
)
def test_down_yes_or_check_needs_no_prompt(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv: list[str], check: bool
) -> None:
    faked = fake(monkeypatch, result())
    assert cli.main(argv) == 0
    assert faked.calls[0]["check"] is check
    assert faked.calls[0]["extravars"] == {LAB_DOWN_CONFIRM_VAR: "down"}
    out, err = capsys.readouterr()
    assert "Type 'down'" not in err
    assert ("dry run" in out) is check


def test_verbose_passes_extra_v_to_ansible(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faked = fake(monkeypatch, result())
    assert cli.main(["-vvv", "lab", "up"]) == 0
    assert faked.calls[0]["verbosity"] == 2


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        (lambda p, m: None, ["-i", "inventories/nope", "lab", "up"], "inventory inventories/nope not found"),
        (lambda p, m: m.setenv("ENP_PROJECT_DIR", str(p / "playbooks")), ["lab", "up"], "has no ansible.cfg"),
        (lambda p, m: fake(m, RunnerSetupError("playbook x does not exist")), ["lab", "up"], "cannot start enp lab up"),
    ],
)
def test_setup_problems_exit_2(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    setup: Any,
    argv: list[str],
    message: str,
) -> None:
    setup(project, monkeypatch)
    assert cli.main(argv) == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_missing_playbook_with_the_real_runner(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["lab", "up"]) == ExitCode.USAGE
    assert "playbooks/lab_up.yml does not exist" in capsys.readouterr().err


def test_failure_report_says_what_where_and_next(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = result("failed", 2, [DOWN_DB2, FAIL_WEB1], {"dark": {"db2": 1}, "failures": {"web1": 1}, "processed": {}})
    fake(monkeypatch, run)
    monkeypatch.setenv("SUDO_USER", "asha")
    assert cli.main(["lab", "up"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "enp lab up FAILED after 1m23s: 1 host failed, 1 unreachable." in err
    assert "web1: failed in task 'Install nginx' (r.yml:3)" in err
    assert "No package matching 'nginx' is available" in err
    assert "db2: could not be reached during task 'Gathering Facts'" in err
    assert "What to do next:" in err
    assert f"less -R {run.artifact_dir}/stdout" in err
    assert "Unreachable (db2): check the hosts run and answer SSH: sudo enp lab status" in err
    assert "rerun; finished steps are skipped: sudo enp lab up" in err


def test_failure_before_any_host_shows_ansible_output(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "stdout").write_text("ERROR! the role 'web' was not found\r\n")
    fake(monkeypatch, result("failed", 1, artifact_dir=run_dir))
    assert cli.main(["lab", "up"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "status 'failed', rc 1, before any host failed" in err
    assert "ERROR! the role 'web' was not found" in err


def test_interrupted_says_rerun(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    fake(monkeypatch, result("canceled", 254))
    assert cli.main(["lab", "up", "-i", "inventories/lab"]) == ExitCode.INTERRUPTED == 130
    err = capsys.readouterr().err
    assert "interrupted after 1m23s" in err
    assert "rerun the same command, finished steps are skipped: enp lab up -i inventories/lab" in err


LAB_STATUS = {
    "hosts": [
        {
            "name": "lb1",
            "zone": "dmz",
            "address": "198.18.1.10",
            "running": True,
            "ssh": True,
            "pid": 4242,
            "memory_bytes": 222298112,
        },
        {
            "name": "db2",
            "zone": None,
            "address": "198.18.3.12",
            "running": False,
            "ssh": False,
            "pid": None,
            "memory_bytes": None,
        },
    ],
    "networks": [{"bridge": "enp-dmz", "address": "198.18.1.1/24", "present": True}],
    "services": [{"name": "mirror", "running": True, "pid": 99}],
}


def test_status_prints_summary_and_tables(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake(monkeypatch, result(set_stats={"enp_lab_status": LAB_STATUS}))
    assert cli.main(["lab", "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Lab: 1 of 2 hosts running, 1 answer SSH; 1 of 1 networks present; 1 of 1 services running."
    assert out[2].split() == ["HOST", "ZONE", "ADDRESS", "RUNNING", "SSH", "MEMORY", "MiB"]
    assert out[3].split() == ["lb1", "dmz", "198.18.1.10", "yes", "yes", "212"]
    assert out[4].split() == ["db2", "-", "198.18.3.12", "NO", "NO", "-"]
    assert ["enp-dmz", "198.18.1.1/24", "yes"] in [line.split() for line in out]
    assert ["mirror", "yes", "99"] in [line.split() for line in out]


def test_status_without_data_says_where_to_look(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake(monkeypatch, result())
    assert cli.main(["lab", "status"]) == 0
    assert "published no enp_lab_status" in capsys.readouterr().out


JSON_KEYS = {
    "command",
    "status",
    "rc",
    "exit_code",
    "duration",
    "artifact_dir",
    "failures",
    "stats",
    "set_stats",
    "error",
}


@pytest.mark.parametrize(
    ("run", "argv", "code", "status"),
    [
        (result(set_stats={"enp_lab_status": LAB_STATUS}), ["--json", "lab", "status"], 0, "successful"),
        (result("failed", 2, [FAIL_WEB1], {"failures": {"web1": 1}}), ["lab", "up", "--json"], 1, "failed"),
        (result("canceled", 254), ["--json", "lab", "down", "--yes"], 130, "canceled"),
    ],
)
def test_json_output_shape(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    run: RunResult,
    argv: list[str],
    code: int,
    status: str,
) -> None:
    fake(monkeypatch, run)
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    doc = json.loads(out)  # exactly one document, nothing else on stdout
    assert set(doc) == JSON_KEYS
    assert (doc["status"], doc["rc"], doc["exit_code"], doc["duration"]) == (status, run.rc, code, 83.2)
    assert doc["artifact_dir"] == str(run.artifact_dir)
    assert doc["set_stats"] == run.set_stats
    assert doc["failures"] == [
        {"host": f.host, "task": f.task, "msg": f.msg, "unreachable": f.unreachable, "task_path": f.task_path}
        for f in run.failures
    ]
    assert (doc["error"] is None) is (code == 0)
    assert "HOST" not in out
    if code:
        assert "What to do next:" in err


def test_json_refusal_is_still_one_document(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake(monkeypatch, result())
    assert cli.main(["--json", "lab", "down"]) == ExitCode.REFUSED
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == JSON_KEYS
    assert (doc["status"], doc["exit_code"], doc["rc"], doc["artifact_dir"]) == ("refused", 3, None, None)
    assert "--yes" in doc["error"]


# ---------------------------------------------------------------------------------------------------------------
# Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(kind: str, host: str = "", task: str = "", **data: Any) -> dict[str, Any]:
    event_data = {"play": "Lab up", "task": task, "name": task or "Lab up", **data}
    if host:
        event_data["host"] = host
    return {"event": kind, "pid": 1, "stdout": f"\x1b[0;32m{kind} {host}\x1b[0m", "event_data": event_data}


RUN = [
    ev("playbook_on_play_start"),
    ev("playbook_on_task_start", task="Boot hosts"),
    ev("runner_on_start", "web1", "Boot hosts"),
    ev("runner_on_start", "web2", "Boot hosts"),
    ev("runner_on_ok", "web1", "Boot hosts"),
    ev("runner_on_failed", "web2", "Boot hosts", res={"msg": "nspawn exited\nwith status 1"}),
    ev("playbook_on_task_start", task="Check SSH"),
    ev("runner_on_start", "web1", "Check SSH"),
    ev("runner_on_unreachable", "web1", "Check SSH", res={"msg": "Connection refused"}),
    ev("playbook_on_stats"),
]


def feed(progress: Progress, clock: Clock, events: list[dict[str, Any]]) -> None:
    for event in events:
        clock.now += 2
        progress.on_event(event)


def test_progress_plain_lines_for_logs() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab up", stream, tty=False, clock=clock)
    feed(progress, clock, RUN)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "[    2s] PLAY Lab up",
        "[   12s] FAILED web2 in task 'Boot hosts': nspawn exited with status 1",
        "[   14s] TASK Boot hosts: host 2/2 done, 1 failed (10s)",
        "[   18s] UNREACHABLE web1 in task 'Check SSH': Connection refused",
        "[   20s] TASK Check SSH: host 1/1 done, 1 failed (6s)",
    ]
    assert "\r" not in stream.getvalue()
    assert progress.failed_hosts == {"web2"}
    assert progress.unreachable_hosts == {"web1"}


def test_progress_one_updating_line_on_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab up", stream, tty=True, clock=clock)
    feed(progress, clock, RUN[:5])
    screen = stream.getvalue()
    assert "\n" not in screen.split("PLAY Lab up\n", 1)[1]  # after the play line, only redraws
    last = screen.rsplit("\r\x1b[2K", 1)[1]
    assert last == "[   10s] enp lab up > Lab up > Boot hosts | host 1/2 done"
    feed(progress, clock, RUN[5:6])
    assert "FAILED web2 in task 'Boot hosts'" in stream.getvalue()
    assert stream.getvalue().endswith("host 2/2 done, 1 failed | 1 host failed so far")
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[2K")


def test_progress_tasks_skipped_everywhere_stay_quiet_in_logs() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab status", stream, tty=False, clock=clock)
    feed(
        progress,
        clock,
        [
            ev("playbook_on_task_start", task="Teardown only"),
            ev("runner_on_skipped", "localhost", "Teardown only"),
            ev("playbook_on_task_start", task="Half skipped"),
            ev("runner_on_skipped", "web1", "Half skipped"),
            ev("runner_on_ok", "web2", "Half skipped"),
        ],
    )
    progress.close()
    assert stream.getvalue() == "[   10s] TASK Half skipped: host 2/2 done (4s)\n"


def test_progress_ignored_errors_are_not_failures() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab up", stream, tty=False, clock=clock)
    feed(
        progress,
        clock,
        [
            ev("playbook_on_task_start", task="Probe"),
            ev("runner_on_failed", "web1", "Probe", ignore_errors=True, res={"msg": "x"}),
        ],
    )
    progress.close()
    assert "FAILED" not in stream.getvalue()
    assert "host 1/1 done (2s)" in stream.getvalue()


def test_progress_heartbeat_in_logs() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab up", stream, tty=False, clock=clock, heartbeat=30)
    feed(progress, clock, RUN[1:4])
    progress.tick()
    assert stream.getvalue() == ""
    clock.now += 40
    progress.tick()
    assert stream.getvalue() == "[   46s] TASK Boot hosts: still running, host 0/2 done\n"


def test_progress_echo_shows_ansible_output_without_colour_in_logs() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("enp lab up", stream, tty=False, echo=True, clock=clock)
    feed(progress, clock, RUN[4:5])
    assert stream.getvalue() == "runner_on_ok web1\n"


def test_progress_status_changes() -> None:
    stream = io.StringIO()
    progress = Progress("enp lab up", stream, tty=False, clock=Clock())
    progress.on_status("canceling")
    assert "interrupted: asking ansible-playbook to stop" in stream.getvalue()


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (83.2, "1m23s"), (3599, "59m59s"), (3720, "1h02m")]
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


# ---------------------------------------------------------------------------------------------------------------
# The whole command, for real, on localhost


def test_lab_status_end_to_end(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "inventories" / "lab" / "hosts.yml").write_text(
        f"all:\n  hosts:\n    localhost: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
    )
    (project / "playbooks" / "lab_status.yml").write_text(
        textwrap.dedent("""\
            - name: Lab status
              hosts: all
              gather_facts: false
              tasks:
                - name: Publish enp_lab_status
                  ansible.builtin.set_stats:
                    data:
                      enp_lab_status:
                        hosts:
                          - {name: lb1, zone: dmz, address: 198.18.1.10, running: true, ssh: true, pid: 4242,
                             memory_bytes: 222298112}
                        networks: []
                        services: []
            """)
    )
    assert cli.main(["--json", "lab", "status"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["status"] == "successful"
    assert doc["set_stats"]["enp_lab_status"]["hosts"][0]["memory_bytes"] == 222298112
    assert Path(doc["artifact_dir"]).parent == project / ".enp" / "runs"
    assert "TASK Publish enp_lab_status: host 1/1 done" in err


@pytest.mark.parametrize(
    ("argv0", "hint"),
    [
        ("/usr/local/bin/enp", ""),
        ("/srv/enp/.venv/bin/enp", " (sudo may not find enp in a virtualenv: sudo /srv/enp/.venv/bin/enp lab up)"),
        ("/usr/bin/pytest", ""),
    ],
)
def test_not_root_names_the_venv_path_for_sudo(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv0: str, hint: str
) -> None:
    fake(monkeypatch, result())
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "argv", [argv0, "lab", "up"])
    assert cli.main(["lab", "up"]) == ExitCode.REFUSED
    assert capsys.readouterr().err.rstrip().endswith(f"run as root, e.g. sudo enp lab up{hint}")


# ---------------------------------------------------------------------------------------------------------------
# Incidents: enp incident start|status, the phases, enp recover, enp report (runs faked; the real kill -9 resume
# test is tests/integration/test_recover_resume.py)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["recover", "--yes"], {"group": "recover", "yes": True, "dry_run": False, "redo": [], "from_phase": None}),
        (
            ["recover", "--from", "rebuild", "--redo", "contain", "--confirm", "reopen", "--incident", "I"],
            {"from_phase": "rebuild", "redo": ["contain"], "confirm_phases": ["reopen"], "incident": "I"},
        ),
        (["restore", "--plan"], {"group": "restore", "plan": True, "to": "latest-clean", "yes": False}),
        (["contain", "--confirm", "contain", "--dry-run"], {"confirm_word": "contain", "dry_run": True}),
        (["evidence", "--redo", "--json"], {"redo": True, "json": True}),
        (["incident", "start", "--occurred-at", "2026-12-06T07:50Z"], {"action": "start", "id": None}),
        (["report", "--out", "x"], {"out": Path("x")}),
    ],
)
def test_parse_incident_commands(argv: list[str], expected: dict[str, Any]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["evidence", "--yes"],  # nothing destroyed, nothing to confirm
        ["verify", "--confirm", "verify"],
        ["recover", "--from", "wipe"],
        ["recover", "--confirm", "evidence"],
        ["restore", "--to", "yesterday"],
        ["incident"],
    ],
)
def test_incident_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == ExitCode.USAGE
    assert "usage: enp" in capsys.readouterr().err


class FakeReport:
    """Stands in for enp.report (its own tests are tests/unit/test_report.py): records the run it is given."""

    written: ClassVar[list[dict[str, Any]]] = []

    @staticmethod
    def write_reports(run: dict[str, Any], out_dir: Path) -> dict[str, Path]:
        FakeReport.written.append(run)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text('{"incident": {"id": "INC-T"}}')
        return {"json": out_dir / "report.json"}

    @staticmethod
    def format_summary(report: dict[str, Any], paths: dict[str, Path]) -> list[str]:
        return [f"Incident {report['incident']['id']}: summary", *map(str, paths.values())]


class PhaseRunner:
    """Fake runner.run_playbook: per playbook stem a result (default: success), every call recorded."""

    def __init__(self, results: dict[str, RunResult] | None = None) -> None:
        self.results = results or {}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, playbook: str, **kwargs: Any) -> RunResult:
        self.calls.append({"playbook": playbook, **kwargs})
        stem = Path(playbook).stem
        return self.results.get(stem) or result(stats={"processed": {"web1": 1}, "ok": {"web1": 2}})

    @property
    def phases(self) -> list[str]:
        return [Path(c["playbook"]).stem for c in self.calls]


@pytest.fixture
def incident_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in enp_incident.PHASE_NAMES:
        (project / "playbooks" / f"{name}.yml").write_text("[]\n")
    monkeypatch.delenv(enp_incident.PLAYBOOKS_ENV, raising=False)
    FakeReport.written = []
    monkeypatch.setitem(sys.modules, "enp.report", FakeReport)
    assert cli.main(["incident", "start", "--id", "INC-T", "--occurred-at", "2026-12-06T07:50:00Z"]) == 0
    return project


def phase_runner(monkeypatch: pytest.MonkeyPatch, results: dict[str, RunResult] | None = None) -> PhaseRunner:
    faked = PhaseRunner(results)
    monkeypatch.setattr(runner, "run_playbook", faked)
    return faked


def journal(project: Path) -> list[dict[str, Any]]:
    text = (project / ".enp" / "incidents" / "INC-T" / "journal.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_incident_start_and_status(incident_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = json.loads((incident_project / ".enp" / "incidents" / "INC-T" / "incident.json").read_text())
    assert record["id"] == "INC-T" and record["occurred_at"] == "2026-12-06T07:50:00Z"
    assert record["environment"] == "lab"  # the default inventory is the lab's
    argv = ["-i", "inventories/lab/hosts.yml", "incident", "start", "--id", "INC-U", "--declared-by", "asha"]
    assert cli.main(argv) == 0
    assert "environment" not in json.loads((incident_project / ".enp/incidents/INC-U/incident.json").read_text())
    out = capsys.readouterr().out
    assert "Incident INC-U declared by asha: occurred unknown" in out
    assert "It is now the current incident (was INC-T)." in out
    assert "CERT-In within 6 hours" in out
    assert cli.main(["incident", "status", "--incident", "INC-T"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Incident INC-T: occurred 2026-12-06T07:50:00Z")
    assert "Next: contain." in out
    assert cli.main(["incident", "start", "--id", "INC-T"]) == ExitCode.USAGE
    assert "already exists; continue it with: enp recover --incident INC-T" in capsys.readouterr().err
    assert cli.main(["incident", "start", "--occurred-at", "2026-12-06 07:50"]) == ExitCode.USAGE
    assert "has no time zone" in capsys.readouterr().err


def test_phase_without_incident_says_to_start_one(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["evidence"]) == ExitCode.USAGE
    assert "no current incident; declare one first: enp incident start" in capsys.readouterr().err


def test_recover_runs_every_phase_in_order_with_its_variables(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    written = FakeReport.written
    assert cli.main(["recover", "--yes"]) == 0
    assert faked.phases == list(enp_incident.PHASE_NAMES)
    directory = incident_project / ".enp" / "incidents" / "INC-T"
    for call in faked.calls:
        phase = Path(call["playbook"]).stem
        assert call["playbook"] == f"playbooks/{phase}.yml"
        assert call["extravars"]["enp_incident_id"] == "INC-T"
        assert call["extravars"]["enp_incident_dir"] == str(directory)
        assert (f"enp_{phase}_confirm" in call["extravars"]) == enp_incident.PHASES_BY_NAME[phase].destructive
        assert call["check"] is False
        assert call["command"] == f"INC-T {phase}"
    restore = faked.calls[3]["extravars"]
    assert restore["enp_restore_confirm"] == "restore"
    assert restore["enp_incident_time"] == "2026-12-06T07:50:00Z"
    assert [(e["event"], e.get("phase")) for e in journal(incident_project)][-3:] == [
        ("phase_started", "reopen"),
        ("phase_done", "reopen"),
        ("report_written", None),
    ]
    (run,) = written
    assert [p["name"] for p in run["phases"]] == list(enp_incident.PHASE_NAMES)
    assert json.loads((directory / "run.json").read_text()) == run
    out = capsys.readouterr().out
    assert "Incident INC-T: summary" in out and "enp recover: every phase done for INC-T." in out

    # Rerun: nothing is run again, each phase says it is skipped; --redo runs exactly that one.
    faked.calls.clear()
    assert cli.main(["recover", "--yes"]) == 0
    assert faked.phases == []
    assert capsys.readouterr().out.count("already done") == 6
    assert cli.main(["recover", "--yes", "--redo", "verify"]) == 0
    assert faked.phases == ["verify"]
    assert journal(incident_project)[-3]["redo"] is True


def test_recover_without_terminal_or_yes_refuses_before_anything_runs(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    assert cli.main(["recover", "--confirm", "contain"]) == ExitCode.REFUSED
    assert faked.calls == []
    err = capsys.readouterr().err
    assert "rebuild, restore, reopen are destructive and nobody can confirm (stdin is not a terminal)" in err
    assert "Add --yes (or --confirm rebuild --confirm restore --confirm reopen)" in err
    assert err.rstrip().endswith("enp recover --confirm contain --incident INC-T --yes")
    assert [e["event"] for e in journal(incident_project)] == ["incident_started"]
    # --confirm for every destructive phase is as good as --yes
    argv = ["recover", *[a for p in ("contain", "rebuild", "restore", "reopen") for a in ("--confirm", p)]]
    assert cli.main(argv) == 0
    assert len(faked.calls) == 6


@pytest.mark.parametrize(
    ("typed", "code", "ran"),
    [("contain\n", ExitCode.OK, ["contain"]), ("yes\n", ExitCode.REFUSED, []), ("", ExitCode.REFUSED, [])],
)
def test_destructive_phase_asks_for_its_name(
    incident_project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: str,
    code: ExitCode,
    ran: list[str],
) -> None:
    faked = phase_runner(monkeypatch)
    monkeypatch.setattr(sys, "stdin", FakeStdin(typed, tty=True))
    assert cli.main(["contain"]) == code
    assert faked.phases == ran
    err = capsys.readouterr().err
    assert "enp contain isolates every zone" in err and "Type 'contain' to continue" in err


def test_confirm_must_name_the_phase(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    assert cli.main(["rebuild", "--confirm", "restore"]) == ExitCode.REFUSED
    assert "--confirm 'restore' does not confirm enp rebuild; give --confirm rebuild" in capsys.readouterr().err
    assert cli.main(["rebuild", "--confirm", "rebuild"]) == 0
    assert faked.phases == ["rebuild"]
    assert "Note: contain, evidence not done yet for INC-T; running rebuild anyway." in capsys.readouterr().out


def test_dry_run_uses_check_mode_and_records_nothing_as_done(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faked = phase_runner(monkeypatch)
    assert cli.main(["recover", "--dry-run"]) == 0  # no confirmation needed: nothing changes
    assert faked.phases == list(enp_incident.PHASE_NAMES)
    assert all(c["check"] for c in faked.calls)
    events = [e["event"] for e in journal(incident_project)]
    assert events == ["incident_started"] + ["phase_dry_run"] * 6
    assert "run.json" not in os.listdir(incident_project / ".enp" / "incidents" / "INC-T")


def test_restore_plan_changes_nothing_and_needs_no_confirmation(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faked = phase_runner(monkeypatch)
    assert cli.main(["restore", "--to", "latest-clean", "--plan"]) == 0
    (call,) = faked.calls
    assert call["extravars"]["enp_restore_plan_only"] is True
    assert "enp_restore_confirm" not in call["extravars"]
    assert call["check"] is False
    assert journal(incident_project)[-1]["event"] == "phase_dry_run"


def test_failed_phase_stops_recover_and_names_the_command_to_resume(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = result("failed", 2, [FAIL_WEB1], {"failures": {"web1": 1}, "processed": {"web1": 1}})
    faked = phase_runner(monkeypatch, {"rebuild": failed})
    assert cli.main(["recover", "--yes", "--from", "contain"]) == ExitCode.FAILED
    assert faked.phases == ["contain", "evidence", "rebuild"]
    err = capsys.readouterr().err
    assert "enp rebuild (INC-T) FAILED after 1m23s: 1 host failed (of 1)." in err
    assert "web1: failed in task 'Install nginx'" in err
    # the rerun drops --from: a rerun must not repeat the phases that are done
    assert err.rstrip().endswith("finished steps are skipped: enp recover --yes --incident INC-T")
    assert journal(incident_project)[-1]["event"] == "phase_failed"
    faked.results.clear()
    faked.calls.clear()
    assert cli.main(["recover", "--yes"]) == 0
    assert faked.phases == ["rebuild", "restore", "verify", "reopen"]
    assert "rebuild failed last time" in capsys.readouterr().out


def test_interrupted_phase_exits_130(incident_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phase_runner(monkeypatch, {"evidence": result("canceled", 254)})
    assert cli.main(["evidence"]) == ExitCode.INTERRUPTED
    assert journal(incident_project)[-1]["status"] == "canceled"


def test_single_phase_done_is_not_run_again_unless_redo(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    assert cli.main(["evidence"]) == 0
    assert cli.main(["evidence"]) == 0
    assert faked.phases == ["evidence"]
    assert "evidence is already done for INC-T" in capsys.readouterr().out
    assert cli.main(["evidence", "--redo"]) == 0
    assert faked.phases == ["evidence", "evidence"]


def test_a_second_enp_on_the_same_incident_is_refused(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    lock = incident_project / ".enp" / "incidents" / "INC-T" / "lock"
    with enp_incident.acquire_lock(lock, "enp recover on INC-T"):
        assert cli.main(["recover", "--yes"]) == ExitCode.REFUSED
    assert faked.calls == []
    err = capsys.readouterr().err
    assert f"is being worked on by another enp: pid {os.getpid()}: enp recover on INC-T" in err


def test_a_still_running_ansible_playbook_of_an_interrupted_phase_is_waited_for(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faked = phase_runner(monkeypatch)
    orphan = subprocess.Popen(["bash", "-c", "exec -a ansible-playbook sleep 30"])
    try:
        path = incident_project / ".enp" / "incidents" / "INC-T" / "journal.jsonl"
        enp_incident.append_event(path, {"event": "phase_started", "phase": "contain"})
        enp_incident.append_event(path, {"event": "phase_running", "phase": "contain", "ansible_pid": orphan.pid})
        assert cli.main(["recover", "--yes"]) == ExitCode.REFUSED
        assert faked.calls == []
        assert f"its ansible-playbook (PID {orphan.pid}) still runs" in capsys.readouterr().err
    finally:
        orphan.kill()
        orphan.wait()
    assert cli.main(["recover", "--yes"]) == 0
    assert faked.phases == list(enp_incident.PHASE_NAMES)


def test_report_without_the_report_writer_fails_clearly(
    incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "enp.report", None)  # import enp.report raises ImportError
    assert cli.main(["report"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "enp report FAILED: the report writer enp/report.py cannot be loaded" in err
    assert err.rstrip().endswith("then rerun: enp report --incident INC-T")
    run = json.loads((incident_project / ".enp" / "incidents" / "INC-T" / "run.json").read_text())
    assert run["incident"]["id"] == "INC-T" and run["phases"] == []
    assert journal(incident_project)[-1]["event"] == "report_failed"


def test_recover_json(incident_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    phase_runner(monkeypatch)
    capsys.readouterr()
    assert cli.main(["--json", "evidence"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["command"], doc["incident"], doc["exit_code"]) == ("evidence", "INC-T", 0)
    assert doc["phases"][0]["phase"] == "evidence" and doc["phases"][0]["hosts"] == ["web1"]


def test_enp_drill_runs_the_drill_script_with_its_options(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["drill", "--size", "large", "--stage", "build", "--down"])
    argv = cli.drill_argv(args, tmp_path)
    assert argv[1] == str(tmp_path / "scripts" / "drill.py")
    assert argv[2:6] == ["--size", "large", "--stage", "build"]
    assert argv[-1] == "--down"
    assert cli.drill_argv(cli.build_parser().parse_args(["drill"]), tmp_path)[-1] != "--down"
