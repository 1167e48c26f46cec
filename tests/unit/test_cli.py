"""enp.cli and enp.progress: arguments, exit codes, confirmation, reports, --json, progress lines.

Runs are faked (runner.run_playbook replaced) except in the last test, which takes a real playbook through the
whole command on localhost.
"""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import enp
from enp import cli, runner
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
