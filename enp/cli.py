"""The enp command: runs the project's playbooks through ansible-runner and presents what happened.

Everything a run does lives in the playbooks; this module only picks the playbook, guards destructive ones,
shows progress and turns the result into a report, a table or one JSON document, and an exit code.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from enp import __version__, runner
from enp import baseline as enp_baseline
from enp import incident as enp_incident
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
    ExitCode.REFUSED: "refused: confirmation not given, a lab command not run as root, or the incident is busy "
    "(another enp holds its lock)",
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
    _add_incident_parsers(groups, common, formatter)
    drill = groups.add_parser(
        "drill",
        parents=[common],
        help="rehearse an attack and the whole recovery in the lab, unattended; prints RTO and RPO (needs root)",
        description="enp drill: scripts/drill.py - build the lab estate, attack it (lab hosts only), enp recover, "
        "enp report; RTO and RPO against their targets.",
        formatter_class=formatter,
    )
    drill.add_argument("--size", choices=["small", "large"], default="small", help="data set (default: small)")
    drill.add_argument(
        "--stage", choices=["all", "build", "attack-and-recover"], default="all", help="part of the drill to run"
    )
    drill.add_argument("--down", action="store_true", help="remove the lab at the end")
    return parser


def drill_argv(args: argparse.Namespace, project_dir: Path) -> list[str]:
    """The scripts/drill.py command line for `enp drill` (the drill is a script so make drill needs no CLI)."""
    argv = [sys.executable, str(project_dir / "scripts" / "drill.py"), "--size", args.size, "--stage", args.stage]
    argv += ["--inventory", str(args.inventory)] if getattr(args, "inventory", None) else []
    return argv + (["--down"] if args.down else [])


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


# --------------------------------------------------------------------------------------------------------------
# Incidents: enp incident start|status, the six phases, enp recover, enp report (state: enp/incident.py)

INCIDENT_RUN_COMMANDS = (*enp_incident.PHASE_NAMES, "recover", "report")

RECOVER_EPILOG = (
    "Resumable: every phase is journaled in .enp/incidents/<ID>/journal.jsonl. Rerun the same command after a\n"
    "failure, Ctrl-C or kill -9: completed phases are skipped, an interrupted one is rerun from its start (phase\n"
    "playbooks are idempotent). Only one enp at a time works on an incident (a lock names the PID holding it).\n\n"
    + _epilog()
)


def _add_incident_parsers(
    groups: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> None:
    select = argparse.ArgumentParser(add_help=False)
    select.add_argument(
        "--incident",
        metavar="ID",
        help="the incident to work on (default: the current one, set by enp incident start)",
    )
    incident = groups.add_parser(
        "incident",
        parents=[common],
        help="declare an incident (ID, when it happened) and see how far its recovery got",
        description="Incidents: the state of one emergency rebuild, in .enp/incidents/<ID>/ of the project.",
        epilog=RECOVER_EPILOG,
        formatter_class=formatter,
    )
    actions = incident.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start",
        parents=[common],
        help="record a new incident and make it the current one",
        description="enp incident start: record the incident (ID, times, who declared it) and make it current.\n"
        "Times are ISO 8601 with a zone: 2026-12-06T07:50:00Z or 2026-12-06T13:20+05:30.",
        formatter_class=formatter,
    )
    start.add_argument("--id", metavar="ID", help="incident ID (default: INC-YYYYMMDD-HHMM of the detection, UTC)")
    start.add_argument("--detected-at", metavar="ISO", help="when the attack was noticed (default: now)")
    start.add_argument(
        "--occurred-at",
        metavar="ISO",
        help="when the attack began, if known; restore goes back to the latest clean point before it "
        "(default: unknown, restore finds the first malicious transaction itself)",
    )
    start.add_argument("--declared-by", metavar="NAME", help="who declared it (default: the login name)")
    start.add_argument(
        "--environment",
        choices=["lab", "production"],
        help="lab (a drill) or production, shown in the report (default: lab with the lab inventory, else unset)",
    )
    actions.add_parser(
        "status",
        parents=[common, select],
        help="show the incident and each phase: done, failed, interrupted or pending",
        description="enp incident status: the incident and each phase's state, from its journal.",
        formatter_class=formatter,
    )

    def run_options(sub: argparse.ArgumentParser, destructive: bool) -> None:
        sub.add_argument(
            "--dry-run",
            action="store_true",
            help="check mode (--check --diff): show what would change, change nothing, record nothing as done",
        )
        if destructive:
            sub.add_argument("--yes", action="store_true", help="do not ask to type the phase name; for automation")

    for phase in enp_incident.PHASES:
        sub = groups.add_parser(
            phase.name,
            parents=[common, select],
            help=f"phase: {phase.help}" + (" (asks)" if phase.destructive else ""),
            description=f"enp {phase.name}: {phase.help}.\n\nRuns {phase.playbook()} for the current incident; "
            "a phase that is done is not run again unless --redo."
            + (
                f"\nDestructive: asks you to type {phase.name!r} (or --yes / --confirm {phase.name})."
                if phase.destructive
                else ""
            ),
            epilog=RECOVER_EPILOG,
            formatter_class=formatter,
        )
        run_options(sub, phase.destructive)
        if phase.destructive:
            sub.add_argument(
                "--confirm",
                metavar="WORD",
                dest="confirm_word",
                help=f"give the typed confirmation in automation: --confirm {phase.name}",
            )
        sub.add_argument("--redo", action="store_true", help="run the phase again although it is done")
        if phase.name == "restore":
            sub.add_argument(
                "--to",
                choices=["latest-clean"],
                default="latest-clean",
                help="restore point: latest-clean, the newest point the evidence shows clean (the only mode for now)",
            )
            sub.add_argument(
                "--plan",
                action="store_true",
                help="choose and explain the restore point (decision.json), change nothing; not recorded as done",
            )
    destructive = [p.name for p in enp_incident.PHASES if p.destructive]
    recover = groups.add_parser(
        "recover",
        parents=[common, select],
        help="run every remaining phase in order (" + " > ".join(enp_incident.PHASE_NAMES) + "), then the report",
        description="enp recover: run every phase not yet done, in order, then write the report.\n\n"
        + "\n".join(
            f"  {p.name:<9} {p.playbook():<24} {p.help}" + (" [asks]" if p.destructive else "")
            for p in enp_incident.PHASES
        ),
        epilog=RECOVER_EPILOG,
        formatter_class=formatter,
    )
    run_options(recover, True)
    recover.add_argument(
        "--confirm",
        metavar="PHASE",
        dest="confirm_phases",
        action="append",
        choices=destructive,
        default=[],
        help=f"confirm this destructive phase without a prompt (repeatable; one of {', '.join(destructive)})",
    )
    recover.add_argument(
        "--from",
        dest="from_phase",
        metavar="PHASE",
        choices=enp_incident.PHASE_NAMES,
        help="run this phase and every later one again, even those done",
    )
    recover.add_argument(
        "--redo",
        metavar="PHASE",
        action="append",
        choices=enp_incident.PHASE_NAMES,
        default=[],
        help="run this phase again although it is done (repeatable)",
    )
    report = groups.add_parser(
        "report",
        parents=[common, select],
        help="write the incident report (HTML, Markdown, JSON) from the journal and the phases' outputs",
        description="enp report: assemble run.json from the incident's journal and phase outputs, then write the "
        "report\n(enp/report.py) into .enp/incidents/<ID>/report/ unless --out.",
        formatter_class=formatter,
    )
    report.add_argument("--out", metavar="DIR", type=Path, help="where to write the report files")


def _incident_store(project_dir: Path | None = None) -> tuple[Path, enp_incident.IncidentStore]:
    try:
        project_dir = project_dir or runner.find_project_dir()
    except ProjectNotFoundError as exc:
        raise _Refusal(ExitCode.USAGE, f"error: {exc}") from None
    return project_dir, enp_incident.IncidentStore.for_project(project_dir)


def _resolve_incident(store: enp_incident.IncidentStore, incident_id: str | None) -> str:
    try:
        return store.resolve(incident_id)
    except enp_incident.IncidentError as exc:
        raise _Refusal(ExitCode.USAGE, f"error: {exc}") from None


def _playbook_template() -> str:
    return os.environ.get(enp_incident.PLAYBOOKS_ENV) or enp_incident.DEFAULT_PLAYBOOKS


def _declared_by() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def run_incident_command(args: argparse.Namespace, argv: Sequence[str]) -> ExitCode:
    stdout, stderr = sys.stdout, sys.stderr
    try:
        _project_dir, store = _incident_store()
        if args.action == "start":
            now = enp_incident.utc_now()
            try:
                record = enp_incident.new_incident(
                    now=now,
                    incident_id=args.id,
                    detected_at=args.detected_at,
                    occurred_at=args.occurred_at,
                    declared_by=args.declared_by or _declared_by(),
                    taken=store.ids(),
                )
            except enp_incident.IncidentError as exc:
                raise _Refusal(ExitCode.USAGE, f"refused: {exc}") from None
            environment = args.environment or ("lab" if args.inventory == DEFAULT_INVENTORY else None)
            if environment:
                record["environment"] = environment
            previous = store.current()
            directory = store.create(record)
            if args.json:
                _print_lines([json.dumps({"incident": record, "incident_dir": str(directory)}, indent=2)], stdout)
                return ExitCode.OK
            deadline = enp_incident.parse_time(record["detected_at"]).timestamp() + 6 * 3600
            lines = [
                f"Incident {record['id']} declared by {record['declared_by'] or 'unknown'}: occurred "
                f"{record['occurred_at'] or 'unknown'}, detected {record['detected_at']}.",
                f"State and journal: {directory}",
                f"It is now the current incident{f' (was {previous})' if previous else ''}.",
                "Report it to CERT-In within 6 hours of noticing: by "
                f"{enp_incident.format_time(datetime.fromtimestamp(deadline, UTC))}.",
                "",
                "Next: enp recover  (all phases, asks before each destructive one), or one at a time: "
                + ", ".join(f"enp {name}" for name in enp_incident.PHASE_NAMES)
                + ", enp report.",
            ]
            if not record["occurred_at"]:
                lines.insert(
                    3,
                    "The attack time is unknown: restore will go back to just before the first malicious "
                    "transaction it finds.",
                )
            _print_lines(lines, stdout)
            return ExitCode.OK
        incident_id = _resolve_incident(store, args.incident)
        record, events, problems = store.load(incident_id)
        states = enp_incident.phase_states(events)
        holder = enp_incident.lock_holder(store.dir(incident_id) / enp_incident.LOCK_FILE)
        if holder:  # a phase started and not ended is running now, not interrupted
            for state in states.values():
                if state.status == "interrupted":
                    state.status = "running"
        if args.json:
            template = _playbook_template()
            phases = [
                enp_incident.phase_record(p.name, states[p.name], p.playbook(template)) for p in enp_incident.PHASES
            ]
            document = {
                "incident": record,
                "incident_dir": str(store.dir(incident_id)),
                "phases": phases,
                "lock_holder": holder,
                "journal_problems": problems,
            }
            _print_lines([json.dumps(document, indent=2)], stdout)
            return ExitCode.OK
        lines = enp_incident.render_status(record, states, _playbook_template())
        if holder:
            lines.append(f"In progress now: {holder}.")
        lines += [f"journal: {p}" for p in problems]
        _print_lines(lines, stdout)
        return ExitCode.OK
    except _Refusal as refusal:
        _print_lines([f"enp: {refusal.message}"], stderr)
        return refusal.code


@dataclass
class _IncidentRun:
    """What every phase of one enp invocation shares."""

    project_dir: Path
    inventory: Path
    store: enp_incident.IncidentStore
    incident: dict[str, Any]
    args: argparse.Namespace
    rerun: str
    stdout: TextIO
    stderr: TextIO

    @property
    def directory(self) -> Path:
        return self.store.dir(self.incident["id"])

    @property
    def journal(self) -> Path:
        return self.directory / enp_incident.JOURNAL

    def say(self, line: str) -> None:
        # With --json, stdout holds only the JSON document: narration goes to stderr.
        _print_lines([line], self.stderr if self.args.json else self.stdout)


def _phase_confirmation(run: _IncidentRun, phase: enp_incident.Phase, confirmed: set[str], stdin: TextIO) -> None:
    """Refuse unless the operator confirmed this destructive phase (flag, or the phase name typed at a prompt)."""
    if phase.name in confirmed:
        return
    how = f"{run.rerun} --yes (or --confirm {phase.name})"
    if not stdin.isatty():
        raise _Refusal(
            ExitCode.REFUSED,
            f"refused: {phase.warning} Nobody can confirm (stdin is not a terminal); nothing was changed. "
            f"To confirm without a prompt add --yes or --confirm {phase.name}: {how}",
        )
    run.stderr.write(f"{phase.warning}\nType {phase.name!r} to continue, anything else cancels: ")
    run.stderr.flush()
    try:
        answer = stdin.readline().strip()
    except KeyboardInterrupt:
        raise _Refusal(
            ExitCode.INTERRUPTED, f"interrupted at the {phase.name} confirmation; nothing was changed"
        ) from None
    if answer != phase.name:
        raise _Refusal(
            ExitCode.REFUSED, f"refused: you typed {answer!r}, not {phase.name!r}; {phase.name} was not run."
        )


def _confirmed_phases(args: argparse.Namespace) -> set[str]:
    destructive = {p.name for p in enp_incident.PHASES if p.destructive}
    if getattr(args, "yes", False):
        return destructive
    if args.group == "recover":
        return set(args.confirm_phases)
    word = getattr(args, "confirm_word", None)
    if word is None:
        return set()
    if word != args.group:
        raise _Refusal(
            ExitCode.REFUSED,
            f"refused: --confirm {word!r} does not confirm enp {args.group}; give --confirm {args.group}",
        )
    return {args.group}


def _run_phase(
    run: _IncidentRun, phase: enp_incident.Phase, position: str, *, dry: bool, plan_only: bool, redo: bool
) -> tuple[ExitCode, RunResult, dict[str, Any]]:
    """Run one phase playbook and journal it; (exit code, result, a JSON-ready record)."""
    args = run.args
    playbook = phase.playbook(_playbook_template())
    if not (run.project_dir / playbook).is_file():
        raise _Refusal(
            ExitCode.USAGE,
            f"error: {phase.name}'s playbook {run.project_dir / playbook} does not exist (not built yet?); "
            f"nothing was run for {phase.name}",
        )
    (run.directory / phase.name).mkdir(mode=0o700, exist_ok=True)
    extravars = enp_incident.phase_extravars(phase, run.incident, run.directory, restore_plan_only=plan_only)
    journaled = not (dry or plan_only)
    mode = ""
    if plan_only:
        mode = " (plan only, changes nothing)"
    if dry:
        mode = " (dry run: check mode, nothing recorded as done)"
    run.say(f"== {position} {phase.name}: {playbook}{mode}")
    if journaled:
        enp_incident.append_event(
            run.journal, {"event": "phase_started", "phase": phase.name, "playbook": playbook, "redo": redo}
        )
    progress = Progress(f"enp {phase.name} {position}", run.stderr, echo=args.verbose > 0)
    noted: list[int] = []

    def on_event(event: Mapping[str, Any]) -> None:
        pid = event.get("pid")
        if journaled and not noted and isinstance(pid, int) and pid > 0:
            noted.append(pid)
            ident = str(event.get("runner_ident") or "")
            artifact_dir = run.project_dir / runner.RUNS_SUBDIR / ident if ident else None
            enp_incident.append_event(
                run.journal,
                {"event": "phase_running", "phase": phase.name, "ansible_pid": pid, "artifact_dir": artifact_dir},
            )
        progress.on_event(event)

    try:
        with progress:
            result = runner.run_playbook(
                playbook,
                command=f"{run.incident['id']} {phase.name}",
                project_dir=run.project_dir,
                inventory=run.inventory,
                extravars=extravars,
                check=dry,
                verbosity=max(args.verbose - 1, 0),
                event_handler=on_event,
                status_handler=progress.on_status,
            )
    except RunnerSetupError as exc:
        if journaled:
            enp_incident.append_event(
                run.journal, {"event": "phase_failed", "phase": phase.name, "status": "error", "error": str(exc)}
            )
        raise _Refusal(ExitCode.USAGE, f"error: cannot start enp {phase.name}: {exc}") from None
    code = exit_code_for(result)
    record = {
        "phase": phase.name,
        "status": result.status,
        "rc": result.rc,
        "exit_code": int(code),
        "artifact_dir": str(result.artifact_dir),
        "hosts": sorted(result.stats.get("processed", {})),
        "stats": result.stats,
        "duration": result.duration,
        "failures": [{"host": f.host, "task": f.task, "msg": f.msg[:500]} for f in result.failures],
    }
    _keep_run_record(result.artifact_dir, run.directory / "runs")
    if journaled:
        kind = "phase_done" if code == ExitCode.OK else "phase_failed"
        enp_incident.append_event(run.journal, {"event": kind, **record})
    else:
        enp_incident.append_event(run.journal, {"event": "phase_dry_run", "plan_only": plan_only, **record})
    if code == ExitCode.OK:
        run.say(f"   {phase.name} done in {format_elapsed(result.duration)}{mode}; run in {result.artifact_dir}")
    return code, result, record


def _keep_run_record(artifact_dir: Path, into: Path) -> None:
    """Copy ansible-playbook's output, status and rc of a phase run into the incident folder: .enp/runs/ keeps only
    the newest runs, the incident's record must outlive that rotation."""
    target = into / artifact_dir.name
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("stdout", "status", "rc", "command"):
            if (artifact_dir / name).is_file():
                shutil.copy2(artifact_dir / name, target / name)
    except OSError as exc:
        _print_lines([f"enp: could not copy the run record {artifact_dir} into {target}: {exc}"], sys.stderr)


def _write_report(run: _IncidentRun, out_dir: Path | None) -> tuple[ExitCode, dict[str, Any]]:
    """Assemble run.json from the journal and the phases' outputs, then have enp.report write the report."""
    record, events, _problems = run.store.load(run.incident["id"])
    outputs, problems = enp_incident.read_outputs(run.directory)
    for problem in problems:
        _print_lines([f"enp report: {problem}"], run.stderr)
    data = enp_incident.assemble_run(
        record, events, outputs, generated_at=enp_incident.format_time(enp_incident.utc_now())
    )
    run_json = run.directory / enp_incident.RUN_FILE
    enp_incident.write_atomic(run_json, json.dumps(data, indent=2, default=str) + "\n")
    out_dir = out_dir or run.directory / enp_incident.REPORT_SUBDIR
    rerun = f"enp report --incident {run.incident['id']}"
    try:
        report = importlib.import_module("enp.report")
        write_reports, format_summary = report.write_reports, report.format_summary
    except ImportError as exc:
        error = f"the report writer enp/report.py cannot be loaded ({exc})"
    except AttributeError as exc:
        error = f"enp/report.py lacks write_reports or format_summary ({exc})"
    else:
        try:
            paths = {str(kind): Path(path) for kind, path in write_reports(data, out_dir).items()}
            rendered = json.loads(paths["json"].read_text(encoding="utf-8")) if "json" in paths else None
            summary = [str(line) for line in format_summary(rendered, paths)] if rendered else []
        except Exception as exc:  # any failure of the report writer is reported; the data is kept in run.json
            error = f"enp/report.py failed: {type(exc).__name__}: {exc}"
        else:
            shown = {kind: str(path) for kind, path in paths.items()}
            enp_incident.append_event(run.journal, {"event": "report_written", "run_json": run_json, "paths": shown})
            for line in summary or [f"Report ({kind}): {path}" for kind, path in shown.items()]:
                run.say(line)
            return ExitCode.OK, {"run_json": str(run_json), "paths": shown, "summary": summary}
    enp_incident.append_event(run.journal, {"event": "report_failed", "run_json": run_json, "error": error})
    _print_lines(
        [
            f"enp report FAILED: {error}.",
            f"The data for it is complete and kept: {run_json}",
            f"What to do next: fix enp/report.py or the phase output it names, then rerun: {rerun}",
        ],
        run.stderr,
    )
    return ExitCode.FAILED, {"run_json": str(run_json), "error": error}


def run_phases_command(args: argparse.Namespace, argv: Sequence[str]) -> ExitCode:
    """enp <phase>, enp recover and enp report: under the incident's lock, journaled, resumable."""
    stdout, stderr = sys.stdout, sys.stderr
    document: dict[str, Any] = {"command": args.group, "phases": [], "skipped": []}
    code = ExitCode.OK
    try:
        project_dir, store = _incident_store()
        incident_id = _resolve_incident(store, args.incident)
        rerun = shlex.join(["enp", *enp_incident.strip_rerun_options(argv, incident_id)])
        document["incident"] = incident_id
        # enp report runs no playbook: it needs no inventory.
        inventory = _resolve_inventory(args.inventory, project_dir) if args.group != "report" else project_dir
        confirmed = _confirmed_phases(args)
        lock = store.dir(incident_id) / enp_incident.LOCK_FILE
        try:
            with enp_incident.acquire_lock(lock, f"enp {args.group} on {incident_id}"):
                record, events, problems = store.load(incident_id)
                run = _IncidentRun(project_dir, inventory, store, record, args, rerun, stdout, stderr)
                for problem in problems:
                    _print_lines([f"enp: journal {run.journal}: {problem}"], stderr)
                if args.group == "report":
                    code, document["report"] = _write_report(run, args.out)
                else:
                    code = _run_phases(run, enp_incident.phase_states(events), confirmed, document)
        except enp_incident.LockHeld as held:
            raise _Refusal(
                ExitCode.REFUSED,
                f"refused: incident {incident_id} is being worked on by another enp: {held.holder} (lock "
                f"{held.path}). Wait for it to finish, or stop it (kill -INT <its pid>), then rerun: {rerun}",
            ) from None
    except _Refusal as refusal:
        _print_lines([f"enp: {refusal.message}"], stderr)
        code = refusal.code
        document["error"] = refusal.message
    if args.json:
        document["exit_code"] = int(code)
        _print_lines([json.dumps(document, indent=2, default=str)], stdout)
    return code


def _run_phases(
    run: _IncidentRun,
    states: Mapping[str, enp_incident.PhaseState],
    confirmed: set[str],
    document: dict[str, Any],
) -> ExitCode:
    args = run.args
    dry = bool(args.dry_run)
    plan_only = bool(getattr(args, "plan", False))
    recover = args.group == "recover"
    for state in states.values():
        if state.status == "interrupted" and enp_incident.process_alive(state.ansible_pid):
            raise _Refusal(
                ExitCode.REFUSED,
                f"refused: {state.name} was interrupted but its ansible-playbook (PID {state.ansible_pid}) still "
                f"runs. Let it end, or stop it: kill -INT {state.ansible_pid}; then rerun: {run.rerun}",
            )
    if recover:
        try:
            plan = enp_incident.plan_phases(states, from_phase=args.from_phase, redo=args.redo)
        except enp_incident.IncidentError as exc:
            raise _Refusal(ExitCode.USAGE, f"error: {exc}") from None
    else:
        name = args.group
        state = states[name]
        if state.done and not (args.redo or dry or plan_only):
            run.say(
                f"{name} is already done for {run.incident['id']} (ended {state.ended_at}, run {state.artifact_dir}); "
                f"nothing to do. To run it again: enp {name} --redo"
            )
            document["skipped"].append(name)
            return ExitCode.OK
        plan = [name]
        earlier = enp_incident.pending_before(states, name)
        if earlier:
            run.say(f"Note: {', '.join(earlier)} not done yet for {run.incident['id']}; running {name} anyway.")
    if recover:
        for name in enp_incident.PHASE_NAMES:
            if name not in plan:
                done = states[name]
                run.say(f"{name}: already done (ended {done.ended_at}, run {done.artifact_dir}); skipped.")
                document["skipped"].append(name)
    needs = [n for n in plan if enp_incident.PHASES_BY_NAME[n].destructive and n not in confirmed]
    if needs and not (dry or plan_only) and not sys.stdin.isatty():
        flags = " ".join(f"--confirm {n}" for n in needs)
        raise _Refusal(
            ExitCode.REFUSED,
            f"refused: {', '.join(needs)} {'is' if len(needs) == 1 else 'are'} destructive and nobody can confirm "
            f"(stdin is not a terminal); nothing was run. Add --yes (or {flags}): {run.rerun} --yes",
        )
    for number, name in enumerate(plan, start=1):
        phase = enp_incident.PHASES_BY_NAME[name]
        state = states[name]
        if state.status == "interrupted" and not dry and not plan_only:
            run.say(
                f"{name} was interrupted (started {state.started_at}, never finished): running it again from its "
                "start (phase playbooks are idempotent: what it already changed is found in place, not changed again)."
            )
        elif state.status == "failed" and not dry and not plan_only:
            run.say(f"{name} failed last time ({state.ended_at}, run {state.artifact_dir}): running it again.")
        if phase.destructive and not (dry or plan_only):
            _phase_confirmation(run, phase, confirmed, sys.stdin)
        position = (
            f"[{number}/{len(plan)}]"
            if recover
            else f"[{enp_incident.PHASE_NAMES.index(name) + 1}/{len(enp_incident.PHASE_NAMES)}]"
        )
        code, result, record = _run_phase(run, phase, position, dry=dry, plan_only=plan_only, redo=state.done)
        document["phases"].append(record)
        if code != ExitCode.OK:
            report = failure_report(f"{name} ({run.incident['id']})", result, code, run.rerun)
            _print_lines(report, run.stderr)
            return code
    if recover and not dry:
        code, document["report"] = _write_report(run, None)
        if code == ExitCode.OK:
            run.say(f"enp recover: every phase done for {run.incident['id']}.")
        return code
    return ExitCode.OK


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
    if args.group == "incident":
        return int(run_incident_command(args, argv))
    if args.group in INCIDENT_RUN_COMMANDS:
        return int(run_phases_command(args, argv))
    if args.group == "drill":
        project_dir = runner.find_project_dir()
        return subprocess.call(drill_argv(args, project_dir), cwd=project_dir)  # noqa: S603 (our own script)
    return int(run_lab_command(args, argv))
