"""The enp command: runs the project's playbooks through ansible-runner and presents what happened.

Everything a run does lives in the playbooks; this module only picks the playbook, guards destructive ones,
shows progress and turns the result into a report, a table or one JSON document, and an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from enp import __version__, runner
from enp import baseline as enp_baseline
from enp.progress import Progress, format_elapsed
from enp.runner import HostFailure, ProjectNotFoundError, RunnerSetupError, RunResult


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    UNREACHABLE = 4
    INTERRUPTED = 130


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "done, nothing failed",
    ExitCode.FAILED: "a playbook failed; each failing host, task and message is listed with what to do next",
    ExitCode.USAGE: "usage error: unknown command or option, or no project, playbook or inventory found",
    ExitCode.REFUSED: "refused: confirmation not given, or a lab command not run as root",
    ExitCode.UNREACHABLE: "hosts unreachable (and no task failed): check they run and answer SSH, then rerun",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C): ansible-playbook was stopped; rerun the same command to resume",
}
"""Exit codes of enp, as printed in `enp --help`."""

DEFAULT_INVENTORY = "inventories/lab"

LAB_DOWN_CONFIRM_VAR = "enp_lab_down_confirm"
"""Extra-var that carries the typed confirmation to playbooks/lab_down.yml, so the playbook itself never prompts
(a prompt would hang under ansible-runner). Automation without enp passes ``-e enp_lab_down_confirm=down``."""


@dataclass(frozen=True)
class Command:
    """One enp command and the playbook behind it."""

    name: str
    playbook: str
    help: str
    confirm_word: str | None = None
    warning: str = ""


LAB_COMMANDS: dict[str, Command] = {
    "up": Command("lab up", "playbooks/lab_up.yml", "build the lab (golden image, bridges, hosts) and start it"),
    "down": Command(
        "lab down",
        "playbooks/lab_down.yml",
        "stop the lab and remove its hosts and networks (asks you to type 'down')",
        confirm_word="down",
        warning="enp lab down stops every lab host and removes the lab's hosts and networks.",
    ),
    "status": Command("lab status", "playbooks/lab_status.yml", "show which lab hosts, networks and services run"),
}


BASELINE_COMMANDS: dict[str, Command] = {
    "capture": Command(
        "baseline capture",
        "playbooks/baseline_capture.yml",
        "record each host's known-good manifest and sign it into the store (run on known-good hosts only)",
    ),
    "verify": Command(
        "baseline verify",
        "playbooks/baseline_verify.yml",
        "compare each host with its signed manifest and list what differs (exit 0 clean, 1 findings, 2 refused)",
    ),
    "sign": Command(
        "baseline sign",
        "",
        "(re-)sign manifests in the store with the controller's key, e.g. after a reviewed change",
    ),
}

BASELINE_EXIT_CODES = (
    "baseline exit codes: 0 every host clean · 1 findings (or a playbook failed) · 2 usage, or a baseline refused\n"
    "(unsigned, tampered, wrong host: restore the store from the mirror or recapture) · 4 hosts unreachable"
)


class _Refusal(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------------------------
# Arguments


def _epilog() -> str:
    lines = ["exit codes:"] + [f"  {int(code):>3}  {text}" for code, text in EXIT_CODES.items()]
    lines += [
        "",
        "Each run is kept in .enp/runs/<time>-<command>/ of the project: ansible-playbook's output (stdout),",
        f"every event (job_events/), status and rc. The newest {runner.KEEP_RUNS} runs are kept.",
    ]
    return "\n".join(lines)


def _add_common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options; on subcommands too (so `enp lab status --json` works), without overriding."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "-i",
        "--inventory",
        metavar="PATH",
        default=default(DEFAULT_INVENTORY),
        help=f"inventory file or directory, relative to the project directory, else to the current one "
        f"(default: {DEFAULT_INVENTORY})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document on stdout (status, rc, duration, artifact_dir, failures, set_stats); "
        "progress stays on stderr",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="show Ansible's own output instead of the progress line; repeat for ansible-playbook -vv...",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, top=False)
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="enp",
        description="Rebuild and inspect the e-Nagar Palika estate.\n\nEach command runs one playbook of this "
        "repository through ansible-runner and reports,\nper host, what failed and what to do next.",
        epilog=_epilog(),
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"enp {__version__}")
    _add_common_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    lab = groups.add_parser(
        "lab",
        parents=[common],
        help="the local practice estate (systemd-nspawn hosts on lab bridges); needs root",
        description="The lab: a miniature of the estate on this machine. All lab commands need root.",
        epilog=_epilog(),
        formatter_class=formatter,
    )
    actions = lab.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, command in LAB_COMMANDS.items():
        sub = actions.add_parser(
            action,
            parents=[common],
            help=command.help,
            description=f"enp lab {action}: {command.help}.\n\nRuns {command.playbook}; needs root.",
            epilog=_epilog(),
            formatter_class=formatter,
        )
        if command.confirm_word:
            sub.add_argument(
                "--yes", action="store_true", help=f"do not ask to type {command.confirm_word!r}; for automation"
            )
            sub.add_argument(
                "--check", action="store_true", help="dry run: show what would change (--check --diff), change nothing"
            )
    _add_baseline_parser(groups, common, formatter)
    return parser


def _add_baseline_parser(
    groups: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> None:
    paths = argparse.ArgumentParser(add_help=False)
    paths.add_argument(
        "--store",
        metavar="DIR",
        type=Path,
        help="baseline store on the controller: <host>.json + <host>.json.sig (lab default: .lab/baseline/store)",
    )
    paths.add_argument(
        "--signing-key",
        metavar="PATH",
        type=Path,
        help="private signing key, controller only (lab default: .lab/baseline/signing_key, created if missing; "
        "production: required, never created; also ENP_BASELINE_SIGNING_KEY)",
    )
    paths.add_argument(
        "--allowed-signers",
        metavar="PATH",
        type=Path,
        help="OpenSSH allowed_signers with the key's public half (default: allowed_signers next to the key)",
    )
    baseline = groups.add_parser(
        "baseline",
        parents=[common],
        help="known-good manifests: capture and sign them, verify hosts against them",
        description="Known-good baselines (docs/baselines.md): capture signed manifests, then verify hosts against "
        "them.",
        epilog=BASELINE_EXIT_CODES,
        formatter_class=formatter,
    )
    actions = baseline.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, command in BASELINE_COMMANDS.items():
        runs = f"\n\nRuns {command.playbook}." if command.playbook else "\n\nRuns on the controller only."
        sub = actions.add_parser(
            action,
            parents=[common, paths],
            help=command.help,
            description=f"enp baseline {action}: {command.help}.{runs}",
            epilog=BASELINE_EXIT_CODES,
            formatter_class=formatter,
        )
        if action in ("capture", "verify"):
            sub.add_argument(
                "--hosts",
                metavar="PATTERN",
                help="only these inventory hosts or groups (an Ansible pattern, e.g. web1 or 'dmz:!lb1'; "
                "default: the whole estate)",
            )
        if action == "capture":
            sub.add_argument(
                "--replace",
                action="store_true",
                help="replace a stored baseline that differs from this capture (after a reviewed change or a rebuild "
                "that verified clean); without it a differing stored baseline is kept",
            )
        if action == "verify":
            sub.add_argument(
                "--summary",
                action="store_true",
                help="print only one line per host (counts per severity and kind), for the incident report",
            )
        if action == "sign":
            sub.add_argument("hosts", nargs="*", metavar="HOST", help="hosts to sign (default: every manifest)")
            sub.add_argument(
                "--force",
                action="store_true",
                help="re-sign even a manifest whose current signature fails (only after checking where it came from)",
            )


# --------------------------------------------------------------------------------------------------------------
# Results


def exit_code_for(result: RunResult) -> ExitCode:
    """The enp exit code for a finished run: a failed task beats unreachable hosts."""
    if result.status == "canceled":
        return ExitCode.INTERRUPTED
    if result.status == "successful" and result.rc == 0:
        return ExitCode.OK
    if any(not failure.unreachable for failure in result.failures):
        return ExitCode.FAILED
    if result.unreachable_hosts or result.failures:
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED


def json_document(
    command: str,
    code: ExitCode,
    result: RunResult | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The --json output: the same keys whether the run happened, failed, or was refused before it started."""
    if result is None:
        return {
            "command": command,
            "status": "refused" if code == ExitCode.REFUSED else "error",
            "rc": None,
            "exit_code": int(code),
            "duration": 0.0,
            "artifact_dir": None,
            "failures": [],
            "stats": {},
            "set_stats": {},
            "error": error,
        }
    data = result.to_dict()
    return {
        "command": command,
        "status": result.status,
        "rc": result.rc,
        "exit_code": int(code),
        "duration": result.duration,
        "artifact_dir": data["artifact_dir"],
        "failures": data["failures"],
        "stats": result.stats,
        "set_stats": result.set_stats,
        "error": error,
    }


def _yes_no(value: object) -> str:
    if value is None:
        return "-"
    return "yes" if value else "NO"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [fmt(headers).rstrip()] + [fmt(row).rstrip() for row in rows]


def render_lab_status(status: Mapping[str, Any]) -> list[str]:
    """Summary line, then the host table, then networks and services, from the enp_lab_status record."""
    hosts = list(status.get("hosts") or [])
    networks = list(status.get("networks") or [])
    services = list(status.get("services") or [])
    running = sum(1 for h in hosts if h.get("running"))
    ssh = sum(1 for h in hosts if h.get("ssh"))
    summary = f"Lab: {running} of {len(hosts)} hosts running, {ssh} answer SSH"
    if networks:
        summary += f"; {sum(1 for n in networks if n.get('present'))} of {len(networks)} networks present"
    if services:
        summary += f"; {sum(1 for s in services if s.get('running'))} of {len(services)} services running"
    lines = [summary + ".", ""]
    rows = []
    for h in hosts:
        memory = h.get("memory_bytes")
        rows.append(
            [
                str(h.get("name", "?")),
                str(h.get("zone") or "-"),
                str(h.get("address") or "-"),
                _yes_no(h.get("running")),
                _yes_no(h.get("ssh")),
                "-" if memory is None else str(round(int(memory) / 1048576)),
            ]
        )
    lines += _table(["HOST", "ZONE", "ADDRESS", "RUNNING", "SSH", "MEMORY MiB"], rows, right=frozenset({5}))
    if networks:
        rows = [[str(n.get("bridge", "?")), str(n.get("address") or "-"), _yes_no(n.get("present"))] for n in networks]
        lines += ["", *_table(["NETWORK", "ADDRESS", "PRESENT"], rows)]
    if services:
        rows = [
            [str(s.get("name", "?")), _yes_no(s.get("running")), "-" if s.get("pid") is None else str(s["pid"])]
            for s in services
        ]
        lines += ["", *_table(["SERVICE", "RUNNING", "PID"], rows)]
    return lines


def _describe_failure(failure: HostFailure) -> list[str]:
    what = "could not be reached during" if failure.unreachable else "failed in"
    where = f" ({failure.task_path})" if failure.task_path else ""
    lines = [f"  {failure.host}: {what} task {failure.task!r}{where}"]
    msg_lines = [line for line in failure.msg.splitlines() if line.strip()][:4]
    lines += [f"      {line.strip()[:300]}" for line in msg_lines]
    return lines


def failure_report(command: str, result: RunResult, code: ExitCode, rerun: str) -> list[str]:
    """What failed, on which host, and what to do next."""
    took = format_elapsed(result.duration)
    stdout_path = result.artifact_dir / "stdout"
    if code == ExitCode.INTERRUPTED:
        return [
            f"enp {command} interrupted after {took}; ansible-playbook was stopped.",
            "",
            "What to do next:",
            f"  - The run can be resumed: rerun the same command, finished steps are skipped: {rerun}",
            f"  - Output so far: {stdout_path}",
        ]
    hosts = len(result.stats.get("processed", {}))
    failed = [f for f in result.failures if not f.unreachable]
    unreachable = [f for f in result.failures if f.unreachable]
    counts = []
    if failed:
        counts.append(f"{len(failed)} host{'s' if len(failed) != 1 else ''} failed")
    if unreachable:
        counts.append(f"{len(unreachable)} unreachable")
    of = f" (of {hosts})" if hosts else ""
    lines = [f"enp {command} FAILED after {took}: {', '.join(counts) or 'ansible-playbook stopped'}{of}.", ""]
    for failure in result.failures:
        lines += _describe_failure(failure)
    if not result.failures:
        lines.append(f"  ansible-playbook ended with status {result.status!r}, rc {result.rc}, before any host failed.")
        tail = runner.output_tail(result.artifact_dir)
        if tail:
            lines += ["  Its last output:", *[f"      {line}" for line in tail]]
    lines += ["", "What to do next:", f"  - Read the full output: less -R {stdout_path}"]
    if unreachable:
        names = ", ".join(f.host for f in unreachable)
        lines.append(f"  - Unreachable ({names}): check the hosts run and answer SSH: {_sudo()}enp lab status")
    lines.append(f"  - Fix the cause, then rerun; finished steps are skipped: {rerun}")
    return lines


# --------------------------------------------------------------------------------------------------------------
# Running a command


def _sudo() -> str:
    return "sudo " if os.environ.get("SUDO_USER") else ""


_SUDO_SECURE_PATH = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}


def _sudo_path_hint(command: Command) -> str:
    """sudo's secure_path does not include a virtualenv: name the full path when enp lives in one."""
    program = Path(sys.argv[0])
    if program.name != "enp" or str(program.absolute().parent) in _SUDO_SECURE_PATH:
        return ""
    return f" (sudo may not find enp in a virtualenv: sudo {program.absolute()} {command.name})"


def _resolve_inventory(value: str, project_dir: Path) -> Path:
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        found = candidate
    elif (project_dir / candidate).exists():
        found = project_dir / candidate
    else:
        found = candidate.resolve()
    if not found.exists():
        raise _Refusal(
            ExitCode.USAGE,
            f"inventory {value} not found (looked in {project_dir} and {Path.cwd()}); "
            f"pass an existing one with -i, e.g. -i {DEFAULT_INVENTORY}",
        )
    return found


def _confirm(command: Command, stdin: TextIO, stderr: TextIO) -> None:
    """Ask for the typed confirmation word; raise _Refusal unless it is typed exactly."""
    word = command.confirm_word or ""
    how = f"To confirm without a prompt: {_sudo()}enp {command.name} --yes"
    if not stdin.isatty():
        raise _Refusal(
            ExitCode.REFUSED, f"refused: {command.warning} Nobody can confirm (stdin is not a terminal). {how}"
        )
    stderr.write(f"{command.warning}\nType {word!r} to continue, anything else cancels: ")
    stderr.flush()
    try:
        answer = stdin.readline().strip()
    except KeyboardInterrupt:
        raise _Refusal(ExitCode.INTERRUPTED, "interrupted at the confirmation prompt; nothing was changed") from None
    if answer != word:
        raise _Refusal(ExitCode.REFUSED, f"refused: you typed {answer!r}, not {word!r}; nothing was changed.")


def _print_lines(lines: Sequence[str], stream: TextIO) -> None:
    stream.write("\n".join(lines) + "\n")
    stream.flush()


def run_lab_command(args: argparse.Namespace, argv: Sequence[str]) -> ExitCode:
    command = LAB_COMMANDS[args.action]
    stdout, stderr = sys.stdout, sys.stderr
    rerun = _sudo() + shlex.join(["enp", *argv])
    try:
        if os.geteuid() != 0:
            raise _Refusal(
                ExitCode.REFUSED,
                f"refused: enp {command.name} manages bridges and containers and needs root; "
                f"run as root, e.g. sudo enp {command.name}{_sudo_path_hint(command)}",
            )
        try:
            project_dir = runner.find_project_dir()
        except ProjectNotFoundError as exc:
            raise _Refusal(ExitCode.USAGE, f"error: {exc}") from None
        check = bool(getattr(args, "check", False))
        extravars: dict[str, Any] = {}
        if command.confirm_word:
            if not (check or args.yes):
                _confirm(command, sys.stdin, stderr)
            extravars[LAB_DOWN_CONFIRM_VAR] = command.confirm_word
        inventory = _resolve_inventory(args.inventory, project_dir)
        progress = Progress(f"enp {command.name}", stderr, echo=args.verbose > 0)
        try:
            with progress:
                result = runner.run_playbook(
                    command.playbook,
                    command=command.name,
                    project_dir=project_dir,
                    inventory=inventory,
                    extravars=extravars,
                    check=check,
                    verbosity=max(args.verbose - 1, 0),
                    event_handler=progress.on_event,
                    status_handler=progress.on_status,
                )
        except RunnerSetupError as exc:
            raise _Refusal(ExitCode.USAGE, f"error: cannot start enp {command.name}: {exc}") from None
    except _Refusal as refusal:
        _print_lines([f"enp: {refusal.message}"], stderr)
        if args.json:
            _print_lines(
                [json.dumps(json_document(command.name, refusal.code, error=refusal.message), indent=2)], stdout
            )
        return refusal.code

    code = exit_code_for(result)
    report = failure_report(command.name, result, code, rerun) if code != ExitCode.OK else []
    if args.json:
        error = report[0] if report else None
        _print_lines([json.dumps(json_document(command.name, code, result, error), indent=2, default=str)], stdout)
        if report:
            _print_lines(report, stderr)
        return code
    lines: list[str] = []
    if args.action == "status":
        status = result.set_stats.get("enp_lab_status")
        if isinstance(status, Mapping):
            lines += render_lab_status(status)
        elif code == ExitCode.OK:
            lines.append(f"The status playbook published no enp_lab_status; see {result.artifact_dir / 'stdout'}")
    if code == ExitCode.OK:
        dry = " (dry run, nothing changed)" if check else ""
        if lines:
            lines.append("")
        lines.append(f"enp {command.name} done in {format_elapsed(result.duration)}{dry}.")
        lines.append(f"Run recorded in {result.artifact_dir}")
        _print_lines(lines, stdout)
    else:
        if lines:
            _print_lines(lines, stdout)
        _print_lines(report, stderr)
    return code


# --------------------------------------------------------------------------------------------------------------
# Baselines


def _baseline_paths(args: argparse.Namespace, project_dir: Path, inventory: Path) -> enp_baseline.BaselinePaths:
    try:
        return enp_baseline.resolve_paths(
            project_dir,
            inventory,
            store=args.store,
            signing_key=args.signing_key,
            allowed_signers=args.allowed_signers,
            need_key=args.action != "verify",
        )
    except enp_baseline.BaselineRefusal as exc:
        raise _Refusal(ExitCode.USAGE, f"refused: {exc}") from None


def _refused_baseline(failure: HostFailure) -> bool:
    """The compare module failed because the stored baseline cannot be trusted (not because a task broke)."""
    return "refused to verify" in failure.msg


def render_verify(
    reports: Mapping[str, Mapping[str, Any] | None],
    summary_only: bool = False,
    refused: Mapping[str, str] | None = None,
) -> list[str]:
    """Per host: the summary line, then (unless summary_only) its findings grouped by severity; refusals first."""
    mu = enp_baseline.core()
    refused = refused or {}
    clean = sum(1 for r in reports.values() if r and r.get("clean"))
    lines = [f"Baseline verify: {clean} of {len(reports)} hosts clean."]
    if refused:
        lines[0] = lines[0][:-1] + f"; {len(refused)} baseline(s) REFUSED (not compared)."
    for host, message in sorted(refused.items()):
        lines.append(f"{host}: REFUSED: {message.removeprefix(f'refused to verify {host} against its baseline: ')}")
    for host, report in reports.items():
        if host in refused:
            continue
        if report is None:
            lines.append(f"{host}: no findings report (the host failed or was not reached; see below)")
            continue
        if summary_only:
            lines.append(str(report.get("summary_line") or mu.summary_line(host, report["summary"])))
            continue
        lines += ["", *mu.render_text(host, mu.findings_from_report(report))]
    return lines


def _baseline_summary(reports: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    mu = enp_baseline.core()
    findings = [f for r in reports.values() if r for f in mu.findings_from_report(r)]
    summary = mu.summarise(findings)
    summary["hosts"] = len(reports)
    summary["hosts_clean"] = sum(1 for r in reports.values() if r and r.get("clean"))
    summary["hosts_without_report"] = sorted(h for h, r in reports.items() if r is None)
    return summary


def _sign_store(args: argparse.Namespace, paths: enp_baseline.BaselinePaths) -> tuple[ExitCode, list[str], dict]:
    hosts = list(args.hosts) or enp_baseline.stored_hosts(paths)
    if not hosts:
        raise _Refusal(ExitCode.USAGE, f"no manifests in {paths.store}; run enp baseline capture first")
    lines = [f"  {line}" for line in enp_baseline.ensure_signing_key(paths)]
    results: dict[str, str] = {}
    code = ExitCode.OK
    for host in hosts:
        try:
            results[host] = enp_baseline.sign_manifest(paths, host, force=args.force)
            lines.append(f"  {host}: signed ({results[host]})")
        except enp_baseline.BaselineRefusal as exc:
            results[host] = f"refused: {exc}"
            lines.append(f"  {host}: REFUSED: {exc}")
            code = ExitCode.USAGE
    signed = sum(1 for r in results.values() if not r.startswith("refused"))
    lines.insert(0, f"enp baseline sign: {signed} of {len(hosts)} manifests signed in {paths.store}.")
    return code, lines, {"signed": results}


def run_baseline_command(args: argparse.Namespace, argv: Sequence[str]) -> ExitCode:
    command = BASELINE_COMMANDS[args.action]
    stdout, stderr = sys.stdout, sys.stderr
    rerun = shlex.join(["enp", *argv])
    document: dict[str, Any] = {}
    try:
        try:
            project_dir = runner.find_project_dir()
        except ProjectNotFoundError as exc:
            raise _Refusal(ExitCode.USAGE, f"error: {exc}") from None
        inventory = _resolve_inventory(args.inventory, project_dir)
        paths = _baseline_paths(args, project_dir, inventory)
        if args.action == "sign":
            try:
                code, lines, extra = _sign_store(args, paths)
            except enp_baseline.BaselineRefusal as exc:
                raise _Refusal(ExitCode.USAGE, f"refused: {exc}") from None
            if args.json:
                document = json_document(command.name, code)
                document.update(status="successful" if code == ExitCode.OK else "refused", **extra)
                _print_lines([json.dumps(document, indent=2)], stdout)
            else:
                _print_lines(lines, stdout if code == ExitCode.OK else stderr)
            return code
        prepared: list[str] = []
        report_dir = None
        if args.action == "capture":
            try:
                prepared = enp_baseline.ensure_signing_key(paths)
            except enp_baseline.BaselineRefusal as exc:
                raise _Refusal(ExitCode.USAGE, f"refused: {exc}") from None
        else:
            report_dir = enp_baseline.new_report_dir(paths)
        for line in prepared:
            _print_lines([f"enp: {line}"], stderr)
        progress = Progress(f"enp {command.name}", stderr, echo=args.verbose > 0)
        try:
            with progress:
                result = runner.run_playbook(
                    command.playbook,
                    command=command.name,
                    project_dir=project_dir,
                    inventory=inventory,
                    extravars=_baseline_extravars(args, paths, report_dir),
                    verbosity=max(args.verbose - 1, 0),
                    event_handler=progress.on_event,
                    status_handler=progress.on_status,
                )
        except RunnerSetupError as exc:
            raise _Refusal(ExitCode.USAGE, f"error: cannot start enp {command.name}: {exc}") from None
    except _Refusal as refusal:
        _print_lines([f"enp: {refusal.message}"], stderr)
        if args.json:
            _print_lines(
                [json.dumps(json_document(command.name, refusal.code, error=refusal.message), indent=2)], stdout
            )
        return refusal.code

    code = exit_code_for(result)
    hosts = sorted(set(result.stats.get("processed", {})) - set(result.unreachable_hosts))
    lines: list[str] = []
    if args.action == "capture":
        rows = []
        for host in hosts:
            ok, detail = enp_baseline.check_stored(paths, host)
            stats = _stored_stats(paths, host) if ok else {}
            rows.append(
                [
                    host,
                    "good" if ok else "BAD",
                    str(stats.get("files", "-")),
                    str(stats.get("files_per_second", "-")),
                    str(stats.get("seconds", "-")),
                ]
            )
            if not ok:
                lines.append(f"  {host}: {detail}")
                code = ExitCode.FAILED if code == ExitCode.OK else code
        table = _table(["HOST", "SIGNATURE", "FILES", "FILES/S", "SECONDS"], rows, right=frozenset({2, 3, 4}))
        lines = [f"Baselines in {paths.store}:", "", *table, *(["", *lines] if lines else [])]
        document = {"store": str(paths.store), "hosts": {r[0]: r[1] for r in rows}}
    else:
        assert report_dir is not None  # noqa: S101 - set above for verify
        reports = enp_baseline.load_reports(report_dir, hosts)
        refused = {f.host: f.msg for f in result.failures if _refused_baseline(f)}
        summary = _baseline_summary(reports)
        summary["hosts_refused"] = sorted(refused)
        lines = render_verify(reports, summary_only=args.summary, refused=refused)
        document = {"report_dir": str(report_dir), "summary": summary, "reports": reports, "refused": refused}
        if refused:
            code = ExitCode.USAGE
        elif code == ExitCode.OK and not summary["clean"]:
            code = ExitCode.FAILED
    failed_run = exit_code_for(result) != ExitCode.OK
    if args.action == "verify" and failed_run and result.failures:
        # With baseline_fail_on_findings the compare task fails on a host with findings: that is the finding
        # (exit 1, listed above), not a broken run; only other failures get the "what failed" report.
        reports = document["reports"]
        other = [
            f
            for f in result.failures
            if f.unreachable or (not _refused_baseline(f) and (not reports.get(f.host) or reports[f.host]["clean"]))
        ]
        failed_run = bool(other) or result.status == "canceled"
    report = failure_report(command.name, result, exit_code_for(result), rerun) if failed_run else []
    if args.json:
        data = json_document(command.name, code, result, report[0] if report else None)
        data.update(document)
        _print_lines([json.dumps(data, indent=2, default=str)], stdout)
        if report:
            _print_lines(report, stderr)
        return code
    lines += ["", f"enp {command.name} finished in {format_elapsed(result.duration)}; run in {result.artifact_dir}"]
    _print_lines(lines, stdout)
    if report:
        _print_lines(report, stderr)
    return code


def _baseline_extravars(
    args: argparse.Namespace, paths: enp_baseline.BaselinePaths, report_dir: Path | None
) -> dict[str, Any]:
    extravars: dict[str, Any] = dict(paths.extravars(report_dir))
    if getattr(args, "hosts", None):
        extravars["enp_baseline_hosts"] = args.hosts
    if args.action == "capture":
        extravars["enp_baseline_replace"] = bool(args.replace)
    else:
        # Findings are reported (exit 1) from the reports, not as failed tasks: a failed task means a broken step.
        extravars["enp_baseline_fail_on_findings"] = False
    return extravars


def _stored_stats(paths: enp_baseline.BaselinePaths, host: str) -> dict[str, Any]:
    try:
        data = json.loads(enp_baseline.manifest_path(paths, host).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    stats = data.get("stats")
    return stats if isinstance(stats, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return int(ExitCode.USAGE)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0, bad usage exits 2
        return int(exc.code) if isinstance(exc.code, int) else int(ExitCode.USAGE)
    if args.group == "baseline":
        return int(run_baseline_command(args, argv))
    return int(run_lab_command(args, argv))
