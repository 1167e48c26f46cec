# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hardening controls as data: validate a role's catalogue and check each control on a live host.

A catalogue entry (docs/hardening-controls.md) says what a control is (id, title, CIS and CERT-In
mapping) and how its *live* state is verified (`check`). Evaluation is split in two: a Probe reads
the host (files, /proc/sys, `sshd -T`, systemctl, dpkg) and the pure functions here decide pass or
fail from what it read, so the decisions are unit-tested without a host.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Callable
from typing import Any, Protocol

STATUSES = ("pass", "fail", "not_applicable", "disabled")
CHECK_KINDS = {
    "sysctl": (),  # either key + expect, or values: {key: expect, ...}
    "file_mode": ("path", "mode"),
    "file_absent": ("path",),
    "file_regex": ("path", "regex"),
    "sshd_option": ("name",),
    "service": ("name",),
    "package": ("name", "installed"),
    "command": ("argv",),
}
ID_PATTERN = re.compile(r"^[A-Z]{2,5}-\d{3}$")
# Evidence is a short, human-readable sentence; long command output is cut so reports stay readable.
EVIDENCE_LIMIT = 300


class ControlError(ValueError):
    """A catalogue or toggle list that cannot be used as given."""


def validate_catalogue(controls: list[dict]) -> list[str]:
    """Every problem in a catalogue, as sentences naming the control (empty list = usable)."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, control in enumerate(controls):
        cid = str(control.get("id", ""))
        where = cid or f"entry {index + 1}"
        if not ID_PATTERN.match(cid):
            problems.append(f"{where}: id must look like AREA-NNN (e.g. OS-001)")
        elif cid in seen:
            problems.append(f"{cid}: id used twice")
        seen.add(cid)
        for key in ("title", "cis", "gov", "tags", "container", "check"):
            if key not in control:
                problems.append(f"{where}: missing '{key}'")
        container = control.get("container")
        if container not in (None, "applies", "not_applicable"):
            problems.append(f"{where}: container must be 'applies' or 'not_applicable', not {container!r}")
        if container == "not_applicable" and not control.get("reason"):
            problems.append(f"{where}: container: not_applicable needs a 'reason' for the report")
        check = control.get("check")
        if isinstance(check, dict):
            kind = check.get("kind")
            if kind not in CHECK_KINDS:
                problems.append(f"{where}: check kind {kind!r} unknown (known: {', '.join(sorted(CHECK_KINDS))})")
            else:
                problems += [f"{where}: check '{kind}' needs '{k}'" for k in CHECK_KINDS[kind] if k not in check]
                if kind == "sysctl" and not (isinstance(check.get("values"), dict) or {"key", "expect"} <= set(check)):
                    problems.append(f"{where}: check 'sysctl' needs 'key' and 'expect', or 'values'")
        elif "check" in control:
            problems.append(f"{where}: check must be a mapping with a 'kind'")
    return problems


def unknown_ids(requested: list[str], controls: list[dict]) -> list[str]:
    """IDs in a toggle list that the catalogue does not know (a misspelt toggle must not be silent)."""
    known = {c.get("id") for c in controls}
    return sorted({str(i) for i in requested} - known)


class Probe(Protocol):
    def sysctl(self, key: str) -> str | None: ...
    def lstat(self, path: str) -> os.stat_result | None: ...
    def owner_names(self, st: os.stat_result) -> tuple[str, str]: ...
    def read_text(self, path: str) -> str | None: ...
    def sshd_options(self) -> dict[str, list[str]] | str: ...
    def systemctl(self, verb: str, unit: str) -> str: ...
    def package_installed(self, name: str) -> bool: ...
    def run(self, argv: list[str]) -> tuple[int, str]: ...


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= EVIDENCE_LIMIT else text[: EVIDENCE_LIMIT - 1] + "…"


def _check_sysctl(check: dict, probe: Probe) -> tuple[bool, str]:
    wanted = check.get("values") or {check.get("key"): check.get("expect")}
    ok, seen = True, []
    for key, expect in wanted.items():
        value = probe.sysctl(str(key))
        want = " ".join(str(expect).split())
        if value is None:
            ok = False
            seen.append(f"{key} missing")
            continue
        got = " ".join(value.split())
        ok = ok and got == want
        seen.append(f"{key} = {got}" + ("" if got == want else f" (want {want})"))
    return ok, "; ".join(seen)


def _check_file_mode(check: dict, probe: Probe) -> tuple[bool, str]:
    path = check["path"]
    st = probe.lstat(path)
    if st is None:
        return False, f"{path} is missing"
    allowed = int(str(check["mode"]), 8)
    mode = stat.S_IMODE(st.st_mode)
    owner, group = probe.owner_names(st)
    problems = []
    if mode & ~allowed:
        problems.append(f"mode {mode:04o} exceeds {allowed:04o}")
    if check.get("owner") and owner != check["owner"]:
        problems.append(f"owner {owner} (want {check['owner']})")
    if check.get("group") and group != check["group"]:
        problems.append(f"group {group} (want {check['group']})")
    summary = f"{path} {mode:04o} {owner}:{group}"
    return not problems, summary + ("; " + ", ".join(problems) if problems else "")


def _check_file_absent(check: dict, probe: Probe) -> tuple[bool, str]:
    present = probe.lstat(check["path"]) is not None
    return not present, f"{check['path']} {'exists' if present else 'is absent'}"


def _check_file_regex(check: dict, probe: Probe) -> tuple[bool, str]:
    path, want_present = check["path"], bool(check.get("present", True))
    text = probe.read_text(path)
    if text is None:
        return (not want_present), f"{path} is missing"
    pattern = re.compile(check["regex"], re.MULTILINE)
    match = pattern.search(text)
    if match:
        line = text[text.rfind("\n", 0, match.start()) + 1 :].split("\n", 1)[0]
        return want_present, f"{path}: '{_short(line)}'"
    return (not want_present), f"{path}: no line matches /{check['regex']}/"


def _check_sshd_option(check: dict, probe: Probe) -> tuple[bool, str]:
    options = probe.sshd_options()
    if isinstance(options, str):
        return False, f"sshd -T failed: {_short(options)}"
    name = str(check["name"]).lower()
    values = options.get(name)
    if values is None:
        return False, f"sshd -T has no '{name}'"
    value = " ".join(values)
    ok = True
    if "expect" in check:
        ok = value.lower() == str(check["expect"]).lower()
    if "expect_any" in check:
        ok = ok and value.lower() in [str(v).lower() for v in check["expect_any"]]
    items = {item for v in values for item in v.lower().split(",")}
    if "expect_not" in check:
        ok = ok and not items & {str(v).lower() for v in check["expect_not"]}
    if "contains" in check:
        ok = ok and {str(v).lower() for v in check["contains"]} <= items
    return ok, f"sshd running config: {name} {_short(value)}"


def _check_service(check: dict, probe: Probe) -> tuple[bool, str]:
    name, ok, seen = check["name"], True, []
    if "active" in check:
        state = probe.systemctl("is-active", name)
        ok = ok and (state == "active") == bool(check["active"])
        seen.append(state)
    if "enabled" in check:
        state = probe.systemctl("is-enabled", name)
        # static/alias units cannot be enabled or disabled; masked counts as disabled.
        enabled = state in ("enabled", "enabled-runtime", "static", "alias", "indirect")
        ok = ok and enabled == bool(check["enabled"])
        seen.append(state)
    return ok, f"{name}: {', '.join(seen) or 'no state asked'}"


def _check_package(check: dict, probe: Probe) -> tuple[bool, str]:
    installed = probe.package_installed(check["name"])
    return installed == bool(check["installed"]), f"{check['name']} {'installed' if installed else 'not installed'}"


def _check_command(check: dict, probe: Probe) -> tuple[bool, str]:
    argv = [str(a) for a in check["argv"]]
    rc, output = probe.run(argv)
    ok = rc == int(check.get("rc", 0))
    detail = f"`{' '.join(argv)}` rc={rc}"
    if ok and check.get("stdout_regex"):
        found = re.search(check["stdout_regex"], output, re.MULTILINE)
        ok = bool(found)
        detail += f", {'matched' if found else 'no match for'} /{check['stdout_regex']}/"
        if found:
            detail += f": '{_short(found.group(0))}'"
    elif not ok:
        detail += f" (want {check.get('rc', 0)}): {_short(output)}"
    return ok, detail


CHECKERS: dict[str, Callable[[dict, Probe], tuple[bool, str]]] = {
    "sysctl": _check_sysctl,
    "file_mode": _check_file_mode,
    "file_absent": _check_file_absent,
    "file_regex": _check_file_regex,
    "sshd_option": _check_sshd_option,
    "service": _check_service,
    "package": _check_package,
    "command": _check_command,
}


def evaluate(control: dict, probe: Probe, container: str, disabled: set[str]) -> dict[str, Any]:
    """One control's report entry: status and the evidence it is based on."""
    entry = {k: control.get(k) for k in ("id", "title", "cis", "gov")}
    if control["id"] in disabled:
        return dict(entry, status="disabled", evidence="turned off by the inventory (controls_disabled)")
    if container != "none" and control.get("container") == "not_applicable":
        return dict(
            entry, status="not_applicable", evidence=f"not applicable in a {container} container: {control['reason']}"
        )
    try:
        ok, evidence = CHECKERS[control["check"]["kind"]](control["check"], probe)
    except (OSError, re.error, subprocess.SubprocessError) as exc:
        ok, evidence = False, f"check could not run: {exc}"
    return dict(entry, status="pass" if ok else "fail", evidence=evidence)


def summarise(results: list[dict]) -> dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    return counts


def parse_sshd_t(text: str) -> dict[str, list[str]]:
    """`sshd -T` prints one `keyword value...` per line; some keywords repeat (e.g. hostkey)."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value.strip())
    return options


def same_report(old: dict | None, new: dict, volatile: tuple[str, ...] = ("generated_at",)) -> bool:
    """True when only volatile fields differ, so a rerun with the same results changes nothing."""
    if not isinstance(old, dict):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in volatile}  # noqa: E731
    return strip(old) == strip(new)


class HostProbe:
    """Reads the live host. Each external command has a timeout, so one hung tool cannot stall a run."""

    def __init__(self, root: str = "/", timeout: int = 30) -> None:
        self.root = root
        self.timeout = timeout
        self._sshd: dict[str, list[str]] | str | None = None

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def sysctl(self, key: str) -> str | None:
        return self.read_text("/proc/sys/" + key.replace(".", "/"))

    def lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(self._path(path))
        except FileNotFoundError:
            return None

    def owner_names(self, st: os.stat_result) -> tuple[str, str]:
        import grp
        import pwd

        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return owner, group

    def read_text(self, path: str) -> str | None:
        try:
            with open(self._path(path), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def run(self, argv: list[str]) -> tuple[int, str]:
        try:
            # cwd "/": tools run as another user (runuser -u postgres) warn about an unreadable cwd otherwise.
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False, cwd="/")
        except FileNotFoundError:
            return 127, f"{argv[0]}: command not found"
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {self.timeout}s"
        # stdout_regex means stdout; stderr only explains a failure.
        if done.returncode == 0:
            return 0, done.stdout.strip()
        return done.returncode, (done.stdout + done.stderr).strip()

    def sshd_options(self) -> dict[str, list[str]] | str:
        if self._sshd is None:
            rc, output = self.run(["/usr/sbin/sshd", "-T"])
            self._sshd = parse_sshd_t(output) if rc == 0 else output or f"rc={rc}"
        return self._sshd

    def systemctl(self, verb: str, unit: str) -> str:
        lines = self.run(["systemctl", verb, unit])[1].splitlines()
        return lines[0].strip() if lines else "unknown"

    def package_installed(self, name: str) -> bool:
        rc, output = self.run(["dpkg-query", "-W", "-f=${db:Status-Status}", name])
        return rc == 0 and output.strip() == "installed"


def detect_container(probe: Probe) -> str:
    """'none' on a real machine or VM, else the container technology (systemd-nspawn, lxc, docker...)."""
    rc, output = probe.run(["systemd-detect-virt", "--container"])
    value = output.strip().splitlines()[0] if output.strip() else ""
    if rc == 127:
        raise ControlError("systemd-detect-virt is missing: cannot tell whether this host is a container")
    return value if rc == 0 and value else "none"


def merge_records(records: list[dict]) -> dict[str, Any]:
    """One estate report from per-host, per-role records: totals, what failed where, and every control that
    was not applicable here with its reason (the incident report lists these)."""
    hosts: dict[str, dict] = {}
    failed: list[dict] = []
    not_applicable: dict[str, dict] = {}
    totals = {status: 0 for status in STATUSES}
    for rec in sorted(records, key=lambda r: (r.get("host", ""), r.get("role", ""))):
        host = rec.get("host") or "?"
        hosts.setdefault(host, {"container": rec.get("container", "?"), "roles": {}})
        hosts[host]["roles"][rec.get("role", "?")] = {
            "summary": rec.get("summary", {}),
            "controls": rec.get("controls", []),
        }
        for control in rec.get("controls", []):
            status = control.get("status")
            if status in totals:
                totals[status] += 1
            if status == "fail":
                failed.append({"host": host, "id": control.get("id"), "evidence": control.get("evidence")})
            elif status == "not_applicable":
                entry = not_applicable.setdefault(
                    control["id"],
                    {
                        "id": control["id"],
                        "title": control.get("title"),
                        "reason": control.get("evidence"),
                        "hosts": [],
                    },
                )
                entry["hosts"].append(host)
    return {
        "hosts": hosts,
        "totals": totals,
        "failed": failed,
        "not_applicable": [not_applicable[k] for k in sorted(not_applicable)],
    }


def summary_lines(report: dict) -> list[str]:
    """Short human lines: one per host, then what failed."""
    lines = []
    for host, data in report["hosts"].items():
        counts = {s: 0 for s in STATUSES}
        for role in data["roles"].values():
            for status, n in role["summary"].items():
                counts[status] = counts.get(status, 0) + n
        lines.append(
            f"{host}: {counts['pass']} pass, {counts['fail']} fail, {counts['not_applicable']} not applicable here, "
            f"{counts['disabled']} disabled ({', '.join(sorted(data['roles']))})"
        )
    lines += [f"FAILED {f['host']} {f['id']}: {f['evidence']}" for f in report["failed"]]
    return lines


def hardening_scores(report: dict) -> dict[str, float]:
    """Per host, the share of applicable controls that pass (percent, one decimal), from a compliance report.

    Not-applicable controls (e.g. kernel settings in a container) count neither way; a host without applicable
    controls is left out rather than shown as 0 or 100.
    """
    scores: dict[str, float] = {}
    for host, record in sorted((report.get("hosts") or {}).items()):
        statuses = [
            control.get("status")
            for role in (record.get("roles") or {}).values()
            for control in role.get("controls") or []
        ]
        applicable = [s for s in statuses if s in ("pass", "fail")]
        if applicable:
            scores[host] = round(100.0 * applicable.count("pass") / len(applicable), 1)
    return scores


def not_applicable_items(report: dict) -> list[dict[str, str]]:
    """The compliance report's not-applicable controls as ``{what, why}`` (the recovery report lists them)."""
    items = []
    for entry in report.get("not_applicable") or []:
        hosts = entry.get("hosts") or []
        where = f" ({len(hosts)} hosts)" if len(hosts) > 1 else (f" ({hosts[0]})" if hosts else "")
        items.append(
            {
                "what": f"{entry.get('id', '?')} {entry.get('title', '')}".strip() + where,
                "why": str(entry.get("reason", "")),
            }
        )
    return items
