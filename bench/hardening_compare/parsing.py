"""Pure parsers: Lynis report files, oscap results, ansible-playbook logs, systemctl output. No I/O."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LynisReport:
    """What the comparison needs from /var/log/lynis-report.dat."""

    hardening_index: int | None = None
    lynis_version: str = ""
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (test id, text), one per warning[] line
    suggestions: list[tuple[str, str]] = field(default_factory=list)  # (test id, text), one per suggestion[] line
    tests_executed: int = 0
    tests_skipped: int = 0
    started: str = ""
    finished: str = ""

    @property
    def complete(self) -> bool:
        """Lynis writes report_datetime_end and hardening_index last: without them the audit did not finish."""
        return self.hardening_index is not None and bool(self.finished)

    def ids(self, kind: str) -> dict[str, int]:
        """Test id -> number of lines, for warnings or suggestions (Lynis repeats an id per finding)."""
        return dict(Counter(test for test, _ in getattr(self, kind)))


def _array_entry(value: str) -> tuple[str, str]:
    """`TEST-ID|text|details|solution|` -> (TEST-ID, text)."""
    parts = value.split("|")
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


def _pipe_count(value: str) -> int:
    return len([item for item in value.split("|") if item.strip()])


def parse_lynis_report(text: str) -> LynisReport:
    """Parse a Lynis report file (key=value lines; `name[]=` lines are arrays; `#` lines are comments).

    The counts are lines, as Lynis counts them on screen ("Warnings (N)", "Suggestions (N)"): a test that
    finds three weak SSH options writes three suggestion[] lines with the same id.
    """
    report = LynisReport()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key == "hardening_index":
            report.hardening_index = int(value) if value.strip().isdigit() else None
        elif key == "lynis_version":
            report.lynis_version = value.strip()
        elif key == "warning[]":
            report.warnings.append(_array_entry(value))
        elif key == "suggestion[]":
            report.suggestions.append(_array_entry(value))
        elif key == "tests_executed":
            report.tests_executed = _pipe_count(value)
        elif key == "tests_skipped":
            report.tests_skipped = _pipe_count(value)
        elif key == "report_datetime_start":
            report.started = value.strip()
        elif key == "report_datetime_end":
            report.finished = value.strip()
    return report


def parse_oscap_results(output: str) -> dict[str, int]:
    """Result value -> count from `oscap xccdf eval` screen output (`Result<TAB>pass` after each rule)."""
    counts: Counter[str] = Counter()
    for line in output.splitlines():
        match = re.match(r"^Result\s+(\S+)\s*$", line.strip())
        if match:
            counts[match.group(1)] += 1
    return dict(counts)


@dataclass
class PlaybookFailure:
    task: str
    host: str
    message: str
    unreachable: bool = False

    def short(self, limit: int = 110) -> str:
        what = "unreachable" if self.unreachable else "failed"
        text = f"{what} at task '{self.task}'" + (f": {self.message}" if self.message else "")
        return text if len(text) <= limit else text[: limit - 3] + "..."


_TASK = re.compile(r"^(?P<kind>TASK|RUNNING HANDLER) \[(?P<name>.+)\] \*+\s*$")
_RESULT = re.compile(
    r"^(?P<kind>fatal|failed): \[(?P<host>[^\]]+)\](?: \(item=.*\))?(?::)? (?P<what>FAILED|UNREACHABLE)!"
)
_RESULT_ITEM = re.compile(r"^(?P<kind>failed): \[(?P<host>[^\]]+)\] \(item=.*\) =>\s*$")
_ERROR = re.compile(r"^(?:\[ERROR\]:|ERROR!)\s*(?P<msg>.+)$")


def _task_label(name: str) -> str:
    """`role : task name` -> `task name`; other names as they are."""
    return name.split(" : ", 1)[1] if " : " in name else name


def _message_after(lines: list[str], start: int) -> str:
    """The `msg:` of the indented YAML result that follows a failure line (callback_result_format=yaml)."""
    block = lines[start + 1 : start + 60]
    for index, line in enumerate(block):
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith("msg:"):
            value = stripped[4:].strip()
            if value in ("|-", "|", ">-", ">"):  # a block scalar: its first line says enough
                return block[index + 1].strip() if index + 1 < len(block) else ""
            return value.strip("'\"")
    return ""


def first_failure(output: str, host: str | None = None) -> PlaybookFailure | None:
    """The first failure ansible-playbook reported that was not ignored (`...ignoring`), optionally for one
    host; else the last `ERROR!`/`[ERROR]:` line (a syntax error or a missing role fails before any task)."""
    lines = output.splitlines()
    task = ""
    saw_result = False
    for index, line in enumerate(lines):
        header = _TASK.match(line)
        if header:
            task = _task_label(header.group("name"))
            task = f"handler {task}" if header.group("kind") == "RUNNING HANDLER" else task
            continue
        result = _RESULT.match(line) or _RESULT_ITEM.match(line)
        if not result:
            continue
        saw_result = True
        if host and result.group("host") != host:
            continue
        # An ignored failure is followed, after its indented result, by a line `...ignoring`.
        following = next((ln for ln in lines[index + 1 :] if ln and not ln.startswith(" ")), "")
        if following.startswith("...ignoring"):
            continue
        unreachable = "UNREACHABLE" in line
        return PlaybookFailure(task, result.group("host"), _message_after(lines, index), unreachable)
    errors = [m.group("msg") for m in map(_ERROR.match, lines) if m]
    if errors and not saw_result:
        return PlaybookFailure(task or "(before any task)", host or "", errors[-1])
    return None


_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """host -> {ok, changed, unreachable, failed, skipped, rescued, ignored} from PLAY RECAP (the last one)."""
    _, _, recap = output.rpartition("PLAY RECAP")
    recap = recap.split("TASKS RECAP")[0]
    hosts: dict[str, dict[str, int]] = {}
    for line in recap.splitlines():
        match = _RECAP.match(line.strip())
        if match:
            counts = dict(pair.split("=") for pair in match.group("counts").split())
            hosts[match.group("host")] = {key: int(value) for key, value in counts.items()}
    return hosts


def failed_units(output: str) -> list[str]:
    """Unit names from `systemctl --failed --no-legend --plain` (a leading bullet is tolerated)."""
    units = []
    for line in output.splitlines():
        fields = line.replace("\u25cf", " ").split()
        if fields and "." in fields[0]:
            units.append(fields[0])
    return units


def markers_in(output: str, prefix: str) -> dict[str, str]:
    """`prefix.key=value` lines printed by the probe scripts -> {key: value}."""
    found = {}
    for line in output.splitlines():
        if line.startswith(prefix + "."):
            key, _, value = line[len(prefix) + 1 :].partition("=")
            found[key] = value.strip()
    return found
