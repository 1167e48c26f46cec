"""enp.runner: results read from runner events, the run directory, stopping a run, and real runs on localhost.

The hand-built events copy the shape of events recorded from ansible-runner 2.4.3 / ansible-core 2.19
(playbook with set_stats, a loop, a failing and an unreachable host).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enp import runner
from enp.runner import GracefulCancel, HostFailure, ProjectNotFoundError, RunnerSetupError

# ---------------------------------------------------------------------------------------------------------------
# Events as ansible-runner records them

_counter = iter(range(1, 10_000))


def _event(kind: str, **event_data: Any) -> dict[str, Any]:
    counter = next(_counter)
    return {
        "uuid": f"00000000-0000-0000-0000-{counter:012d}",
        "counter": counter,
        "stdout": "",
        "start_line": 0,
        "end_line": 0,
        "runner_ident": "20261123T164019Z-lab-up",
        "event": kind,
        "pid": 14287,
        "created": "2026-11-23T16:40:19.435939+00:00",
        "event_data": {"playbook": "lab_up.yml", "playbook_uuid": "0ef97347", **event_data},
    }


def play_start(name: str) -> dict[str, Any]:
    return _event("playbook_on_play_start", play=name, name=name, pattern="all", play_pattern="all")


def task_start(task: str) -> dict[str, Any]:
    return _event("playbook_on_task_start", play="Lab up", task=task, name=task, task_path=f"/p/lab_up.yml:{len(task)}")


def host_event(kind: str, host: str, task: str, res: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "play": "Lab up",
        "task": task,
        "task_action": "ansible.builtin.command",
        "task_path": f"/p/roles/web/tasks/main.yml:{len(task)}",
        "host": host,
        "remote_addr": host,
        **extra,
    }
    if res is not None:
        data["res"] = res
    return _event(kind, **data)


def ok(host: str, task: str, res: dict[str, Any] | None = None) -> dict[str, Any]:
    return host_event("runner_on_ok", host, task, res or {"changed": False, "_ansible_no_log": False})


def failed(host: str, task: str, res: dict[str, Any], ignore_errors: bool | None = None) -> dict[str, Any]:
    return host_event("runner_on_failed", host, task, res, ignore_errors=ignore_errors)


def unreachable(host: str, task: str, msg: str) -> dict[str, Any]:
    res = {"unreachable": True, "msg": msg, "changed": False, "_ansible_no_log": False}
    return host_event("runner_on_unreachable", host, task, res)


def set_stats_ok(host: str, data: dict[str, Any], per_host: bool = False, aggregate: bool = True) -> dict[str, Any]:
    res = {"changed": False, "ansible_stats": {"data": data, "per_host": per_host, "aggregate": aggregate}}
    return ok(host, "Publish", res)


def recap(artifact_data: dict[str, Any] | None = None, **counts: dict[str, int]) -> dict[str, Any]:
    data: dict[str, Any] = {key: {} for key in runner._STAT_KEYS}
    data.update(counts)
    data["artifact_data"] = artifact_data or {}
    return _event("playbook_on_stats", **data)


LOOP_RESULT = {
    "results": [
        {"rc": 0, "msg": "", "failed": False, "item": "true", "_ansible_item_label": "true"},
        {
            "rc": 1,
            "msg": "non-zero return code",
            "stderr": "",
            "failed": True,
            "item": "false",
            "_ansible_item_label": "false",
        },
    ],
    "msg": "One or more items failed",
    "changed": False,
}

MODULE_FAILURE = {
    "msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
    "module_stdout": "",
    "module_stderr": (
        'Traceback (most recent call last):\n  File "<stdin>", line 12\nImportError: No module named apt_pkg\n'
    ),
    "rc": 1,
}

# ---------------------------------------------------------------------------------------------------------------
# summarize_events: failures


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [
                play_start("Lab up"),
                task_start("Install nginx"),
                ok("web2", "Install nginx"),
                failed("web1", "Install nginx", {"msg": "No package matching 'nginx' is available", "rc": 100}),
                recap(ok={"web2": 3}, failures={"web1": 1}, processed={"web1": 1, "web2": 1}),
            ],
            [("web1", "Install nginx", "No package matching 'nginx' is available; exit status 100", False)],
            id="one host fails",
        ),
        pytest.param(
            [failed("web1", "Probe", {"msg": "nope"}, ignore_errors=True), recap(ignored={"web1": 1})],
            [],
            id="ignore_errors is not a failure",
        ),
        pytest.param(
            [failed("web1", "Probe", {"msg": "nope"}, ignore_errors=True)],
            [],
            id="ignore_errors is not a failure, even without a recap",
        ),
        pytest.param(
            [failed("web1", "Try", {"msg": "first try"}), recap(rescued={"web1": 1}, ok={"web1": 2})],
            [],
            id="rescued failure is dropped",
        ),
        pytest.param(
            [
                failed("web1", "Try", {"msg": "first try"}),
                failed("web1", "After rescue", {"msg": "real problem"}),
                recap(rescued={"web1": 1}, failures={"web1": 1}),
            ],
            [("web1", "After rescue", "real problem", False)],
            id="last failure of a host wins",
        ),
        pytest.param(
            [
                unreachable("db2", "Gathering Facts", "Failed to connect to the host via ssh: Connection refused"),
                recap(dark={"db2": 1}),
            ],
            [("db2", "Gathering Facts", "Failed to connect to the host via ssh: Connection refused", True)],
            id="unreachable",
        ),
        pytest.param(
            [failed("app1", "Loop fail", LOOP_RESULT), recap(failures={"app1": 1})],
            [("app1", "Loop fail", "One or more items failed; item false: non-zero return code; exit status 1", False)],
            id="loop: the failed item explains",
        ),
        pytest.param(
            [failed("app2", "Install", MODULE_FAILURE), recap(failures={"app2": 1})],
            [
                (
                    "app2",
                    "Install",
                    "MODULE FAILURE\nSee stdout/stderr for the exact error; module_stderr: Traceback (most recent call "
                    'last): / File "<stdin>", line 12 / ImportError: No module named apt_pkg; exit status 1',
                    False,
                )
            ],
            id="module failure: stderr tail",
        ),
        pytest.param(
            [recap(failures={"app1": 1})],
            [("app1", "?", "no failure event was recorded; read stdout in the run directory", False)],
            id="counted in recap without an event",
        ),
        pytest.param(
            [failed("web1", "Slow", {"msg": "killed"})],
            [("web1", "Slow", "killed", False)],
            id="no recap (interrupted): events decide",
        ),
        pytest.param(
            [
                unreachable("web2", "Ping", "timeout"),
                failed("app1", "Migrate", {"msg": "x"}),
                recap(dark={"web2": 1}, failures={"app1": 1}),
            ],
            [("app1", "Migrate", "x", False), ("web2", "Ping", "timeout", True)],
            id="sorted by host",
        ),
        pytest.param(
            [failed("web1", "Install", {}), recap(failures={"web1": 1})],
            [("web1", "Install", "no message from Ansible", False)],
            id="empty result",
        ),
    ],
)
def test_failures_from_events(events: list[dict[str, Any]], expected: list[tuple[str, str, str, bool]]) -> None:
    _, failures, _ = runner.summarize_events(events)
    assert [(f.host, f.task, f.msg, f.unreachable) for f in failures] == expected


def test_failure_keeps_task_path() -> None:
    _, failures, _ = runner.summarize_events([failed("web1", "Install nginx", {"msg": "x"})])
    assert failures == [
        HostFailure("web1", "Install nginx", "x", unreachable=False, task_path="/p/roles/web/tasks/main.yml:13")
    ]


def test_long_message_is_bounded() -> None:
    _, failures, _ = runner.summarize_events([failed("web1", "T", {"msg": "x" * 10_000})])
    assert len(failures[0].msg) == runner._MSG_LIMIT
    assert failures[0].msg.endswith("...")


# ---------------------------------------------------------------------------------------------------------------
# summarize_events: stats and set_stats

STATUS = {"hosts": [{"name": "lb1", "zone": "dmz", "address": "198.18.1.10", "running": True, "ssh": True}]}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [set_stats_ok("localhost", {"enp_lab_status": STATUS}), recap({"enp_lab_status": STATUS})],
            {"enp_lab_status": STATUS},
            id="recap artifact_data",
        ),
        pytest.param(
            [set_stats_ok("localhost", {"a": 1}), recap({"a": 2})],
            {"a": 2},
            id="recap wins over task results",
        ),
        pytest.param(
            [set_stats_ok("localhost", {"a": 1}), recap({})],
            {},
            id="recap without global data means none",
        ),
        pytest.param(
            [
                set_stats_ok("h1", {"d": {"x": 1}, "l": [1], "s": "a"}),
                set_stats_ok("h2", {"d": {"y": 2}, "l": [2], "s": "b"}),
            ],
            {"d": {"x": 1, "y": 2}, "l": [1, 2], "s": "b"},
            id="no recap: aggregate merges dicts, concatenates lists",
        ),
        pytest.param(
            [set_stats_ok("h1", {"l": [1]}), set_stats_ok("h2", {"l": [2]}, aggregate=False)],
            {"l": [2]},
            id="no recap: aggregate false replaces",
        ),
        pytest.param([set_stats_ok("h1", {"mine": 1}, per_host=True)], {}, id="per_host data is not global"),
        pytest.param([ok("h1", "Plain task")], {}, id="nothing published"),
    ],
)
def test_set_stats_from_events(events: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    _, _, set_stats = runner.summarize_events(events)
    assert set_stats == expected


def test_stats_from_recap_and_empty_without_one() -> None:
    stats, _, _ = runner.summarize_events([recap(ok={"web1": 4}, changed={"web1": 1}, processed={"web1": 1})])
    assert stats["ok"] == {"web1": 4}
    assert stats["changed"] == {"web1": 1}
    assert set(stats) == set(runner._STAT_KEYS)
    assert runner.summarize_events([task_start("T"), ok("web1", "T")])[0] == {}


def test_run_result_host_lists_and_dict() -> None:
    result = runner.RunResult(
        status="failed",
        rc=2,
        stats={"dark": {"db2": 1, "db1": 0}, "failures": {"web1": 1}},
        artifact_dir=Path("/p/.enp/runs/x"),
        failures=[HostFailure("web1", "T", "m")],
    )
    assert result.unreachable_hosts == ["db2"]
    assert result.failed_hosts == ["web1"]
    data = result.to_dict()
    assert data["artifact_dir"] == "/p/.enp/runs/x"
    assert data["failures"] == [{"host": "web1", "task": "T", "msg": "m", "unreachable": False, "task_path": ""}]


# ---------------------------------------------------------------------------------------------------------------
# Project and run directories


def test_find_project_dir_from_env(tmp_path: Path) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    assert runner.find_project_dir(environ={"ENP_PROJECT_DIR": str(tmp_path)}) == tmp_path.resolve()


def test_find_project_dir_env_without_ansible_cfg(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFoundError, match=r"has no ansible\.cfg"):
        runner.find_project_dir(environ={"ENP_PROJECT_DIR": str(tmp_path)})


def test_find_project_dir_walks_up(tmp_path: Path) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    nested = tmp_path / "roles" / "web" / "tasks"
    nested.mkdir(parents=True)
    assert runner.find_project_dir(start=nested, environ={}) == tmp_path.resolve()


def test_find_project_dir_not_found(tmp_path: Path) -> None:
    if any((p / "ansible.cfg").exists() for p in tmp_path.parents):
        pytest.skip("an ansible.cfg above the temp dir")
    with pytest.raises(ProjectNotFoundError, match="ENP_PROJECT_DIR"):
        runner.find_project_dir(start=tmp_path, environ={})


def test_this_checkout_is_found() -> None:
    root = runner.find_project_dir(environ={})
    assert (root / "enp" / "runner.py").is_file()


def test_new_run_dir_names_are_unique_and_private(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 16, 40, 19, tzinfo=UTC)
    first = runner.new_run_dir(tmp_path, "lab up", now)
    second = runner.new_run_dir(tmp_path, "lab up", now)
    assert first == tmp_path / ".enp" / "runs" / "20261123T164019Z-lab-up"
    assert second.name == "20261123T164019Z-lab-up-2"
    assert first.stat().st_mode & 0o777 == 0o700


# ---------------------------------------------------------------------------------------------------------------
# Stopping a run


def _session_leader() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_cancel_not_requested_does_nothing() -> None:
    cancel = GracefulCancel(lambda: False)
    cancel.pid = 1
    assert cancel() is False
    assert cancel.requested_at is None


def test_cancel_without_pid_asks_runner_at_once() -> None:
    seen: list[str] = []
    cancel = GracefulCancel(lambda: True, on_request=seen.append)
    assert cancel() is True
    assert seen == ["canceling"]


def test_cancel_sends_sigint_then_waits_for_grace() -> None:
    proc = _session_leader()
    try:
        cancel = GracefulCancel(lambda: True, grace=60)
        cancel.observe({"event": "runner_on_start", "pid": proc.pid})
        assert cancel() is False  # SIGINT sent, ansible-playbook gets time to stop its workers
        assert proc.wait(timeout=5) == -signal.SIGINT
        assert cancel() is False  # still within the grace period
        cancel.grace = 0
        assert cancel() is True  # grace over: runner may kill
    finally:
        proc.kill()
        proc.wait()


def test_cancel_never_signals_a_pid_that_is_not_a_session_leader() -> None:
    proc = subprocess.Popen(["sleep", "60"])  # same process group as the tests
    try:
        cancel = GracefulCancel(lambda: True)
        cancel.observe({"pid": proc.pid})
        assert cancel() is True
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# Real runs through ansible-runner against localhost (no root, no lab)

PLAYBOOK = """\
- name: Probe play
  hosts: all
  gather_facts: false
  tasks:
    - name: Publish status
      ansible.builtin.set_stats:
        data:
          enp_lab_status:
            hosts:
              - {name: web1, zone: dmz, address: 198.18.1.11, running: true, ssh: true, pid: 7, memory_bytes: 1048576}
          mode:
            check: "{{ ansible_check_mode }}"
            word: "{{ confirm | default('none') }}"
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: boom on {{ inventory_hostname }}
      when: fail_now | default(true) | bool
"""

SLOW_PLAYBOOK = """\
- name: Slow play
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep a long time
      ansible.builtin.command: sleep 37.25
      changed_when: false
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "probe.yml").write_text(PLAYBOOK)
    (tmp_path / "playbooks" / "slow.yml").write_text(SLOW_PLAYBOOK)
    inventory = tmp_path / "inventories" / "local"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        textwrap.dedent(f"""\
            all:
              hosts:
                localhost: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}
            """)
    )
    return tmp_path


def test_real_run_reports_failure_and_set_stats(project: Path) -> None:
    events: list[dict[str, Any]] = []
    statuses: list[str] = []
    result = runner.run_playbook(
        "playbooks/probe.yml",
        command="lab up",
        project_dir=project,
        inventory="inventories/local",
        event_handler=lambda e: events.append(dict(e)),
        status_handler=statuses.append,
    )
    assert (result.status, result.rc) == ("failed", 2)
    assert [(f.host, f.task, f.msg, f.unreachable) for f in result.failures] == [
        ("localhost", "Fail on purpose", "boom on localhost", False)
    ]
    fail_line = PLAYBOOK.splitlines().index("    - name: Fail on purpose") + 1
    assert result.failures[0].task_path.endswith(f"playbooks/probe.yml:{fail_line}")
    assert result.stats["failures"] == {"localhost": 1}
    assert result.set_stats["enp_lab_status"]["hosts"][0]["name"] == "web1"
    assert result.set_stats["mode"] == {"check": False, "word": "none"}
    # the run dir is the private data dir and the artifact dir at once
    assert result.artifact_dir.parent == project / ".enp" / "runs"
    assert result.artifact_dir.name.endswith("-lab-up")
    assert (result.artifact_dir / "stdout").read_text().count("boom on localhost") >= 1
    assert len(list((result.artifact_dir / "job_events").glob("*.json"))) == len(events)
    assert events[-1]["event"] == "playbook_on_stats"
    assert statuses[0] == "starting"
    assert statuses[-1] == "failed"
    assert result.duration > 0


def test_real_run_check_mode_and_extravars(project: Path) -> None:
    result = runner.run_playbook(
        "playbooks/probe.yml",
        command="lab down",
        project_dir=project,
        inventory=project / "inventories" / "local" / "hosts.yml",
        extravars={"fail_now": False, "confirm": "down"},
        check=True,
    )
    assert (result.status, result.rc, result.failures) == ("successful", 0, [])
    assert result.set_stats["mode"] == {"check": True, "word": "down"}
    assert (result.artifact_dir / "env" / "cmdline").read_text() == "--check --diff"


def test_real_run_can_be_stopped_without_orphans(project: Path) -> None:
    started: list[str] = []

    def record(event: runner.Event) -> None:
        if event.get("event") == "runner_on_start":
            started.append(event["event_data"]["host"])

    result = runner.run_playbook(
        "playbooks/slow.yml",
        command="lab up",
        project_dir=project,
        inventory="inventories/local",
        event_handler=record,
        cancel_callback=lambda: bool(started),
    )
    assert result.status == "canceled"
    assert result.rc == 99  # ansible-playbook's own "User interrupted execution", not runner's SIGKILL (254)
    assert result.duration < 20
    leftovers = [
        p for p in Path("/proc").glob("[0-9]*") if b"37.25" in (p / "cmdline").read_bytes() if (p / "cmdline").exists()
    ]
    assert leftovers == []


def test_runs_are_rotated(project: Path) -> None:
    for _ in range(3):
        runner.run_playbook(
            "playbooks/probe.yml",
            command="lab status",
            project_dir=project,
            inventory="inventories/local",
            extravars={"fail_now": False},
            keep_runs=2,
        )
    assert len(list((project / ".enp" / "runs").iterdir())) == 2


@pytest.mark.parametrize(
    ("playbook", "inventory", "match"),
    [
        ("playbooks/missing.yml", "inventories/local", "playbook .*missing.yml does not exist"),
        ("playbooks/probe.yml", "inventories/nowhere", "inventory .*nowhere does not exist"),
    ],
)
def test_run_refuses_missing_files(project: Path, playbook: str, inventory: str, match: str) -> None:
    with pytest.raises(RunnerSetupError, match=match):
        runner.run_playbook(playbook, command="lab up", project_dir=project, inventory=inventory)
    assert not (project / ".enp").exists()


def test_output_tail_strips_colour(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text("\x1b[0;31mfatal: [web1]: FAILED!\x1b[0m\r\n\r\nPLAY RECAP\r\n")
    assert runner.output_tail(tmp_path) == ["fatal: [web1]: FAILED!", "PLAY RECAP"]
    assert runner.output_tail(tmp_path / "missing") == []


def test_tool_path_puts_this_interpreter_first() -> None:
    assert runner._tool_path().split(os.pathsep)[0] == str(Path(sys.executable).parent)
