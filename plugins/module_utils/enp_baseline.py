# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Known-good baselines: the manifest format, comparison and classification, noise rules, signatures.

A manifest (docs/baselines.md) records what known-good means on one host as flat sections
(``{SECTION: {KEY: VALUE}}``), so one generic comparison serves every section; a small table
(:data:`SEVERITY`) turns each difference into a finding of a kind and a severity, and a few
overrides look at the value (uid 0, a key added to authorized_keys, a file on a persistence path).

Expected churn is removed by *declared* noise rules (roles/baseline/defaults/main.yml): this file
holds no path exclusions of its own, so a freshly rebuilt host is clean only because the rules say
why each difference is expected.

Signatures use OpenSSH's ``ssh-keygen -Y sign/verify`` (namespace ``enp-baseline``), no crypto of
our own. They live here, not in the CLI, because the enp_baseline_compare module must verify the
manifest it compares against, and modules can only import module_utils.

No Ansible imports: the collector module, the compare module, the enp CLI and the unit tests all
load this file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FORMAT = "enp-baseline/1"
REPORT_FORMAT = "enp-baseline-findings/1"

SECTIONS: tuple[str, ...] = (
    "packages",
    "files",
    "suid",
    "units",
    "users",
    "groups",
    "sudoers",
    "authorized_keys",
    "cron",
    "listeners",
    "kernel_modules",
    "preload",
    "pam",
    "nftables",
    "nginx",
    "postgresql",
)
"""Sections the comparison knows. A manifest may carry others (a newer collector); they compare as config drift."""

TOP_LEVEL_REQUIRED = ("format", "host", "sections")
TOP_LEVEL_OPTIONAL = ("roles", "captured_at", "root", "stats")

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
CHANGES: tuple[str, ...] = ("added", "removed", "modified")

SIG_NAMESPACE = "enp-baseline"
"""ssh-keygen -Y namespace: a signature made for another purpose (git, e-mail) never verifies as a baseline."""
SIGNER_IDENTITY = "enp-baseline"
"""Principal the allowed_signers file names for the baseline key."""


class ManifestError(ValueError):
    """A manifest that cannot be used: not JSON, wrong format, wrong host, malformed section."""


class RuleError(ValueError):
    """Noise rules that cannot be used as given."""


class SignatureError(ValueError):
    """A manifest whose signature is missing, does not verify, or cannot be checked."""


# --------------------------------------------------------------------------------------------------------------
# Manifest format


def canonical_json(manifest: Mapping[str, Any]) -> str:
    """The stored form: sorted keys, compact separators, UTF-8 text (not escaped), one trailing newline.

    Signatures cover these bytes, so the same manifest always serialises to the same signature input.
    NaN and infinities are refused (they are not JSON).
    """
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    return canonical_json(manifest).encode("utf-8")


def validate_manifest(manifest: object) -> list[str]:
    """Every problem with a manifest's shape, as sentences (empty list = usable)."""
    if not isinstance(manifest, Mapping):
        return [f"a manifest is a JSON object, not {type(manifest).__name__}"]
    problems: list[str] = []
    for key in TOP_LEVEL_REQUIRED:
        if key not in manifest:
            problems.append(f"missing '{key}'")
    unknown = sorted(set(manifest) - set(TOP_LEVEL_REQUIRED) - set(TOP_LEVEL_OPTIONAL))
    if unknown:
        problems.append(f"unknown top-level keys {', '.join(unknown)}")
    if "format" in manifest and manifest["format"] != FORMAT:
        problems.append(f"format is {manifest['format']!r}, this enp reads {FORMAT!r}")
    if "host" in manifest and (not isinstance(manifest["host"], str) or not manifest["host"]):
        problems.append("host must be a non-empty string (the inventory_hostname)")
    if "roles" in manifest and not (
        isinstance(manifest["roles"], list) and all(isinstance(r, str) for r in manifest["roles"])
    ):
        problems.append("roles must be a list of group names")
    sections = manifest.get("sections")
    if "sections" in manifest and not isinstance(sections, Mapping):
        problems.append("sections must be an object {SECTION: {KEY: VALUE}}")
    elif isinstance(sections, Mapping):
        for name, body in sections.items():
            if not isinstance(body, Mapping):
                problems.append(f"section {name!r} must be an object {{KEY: VALUE}}, not {type(body).__name__}")
    if "stats" in manifest and not isinstance(manifest["stats"], Mapping):
        problems.append("stats must be an object")
    return problems


def load_manifest(data: bytes | str, source: str = "manifest") -> dict[str, Any]:
    """Parse and validate a manifest; ManifestError names the source and what is wrong."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        manifest = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{source} is not a JSON manifest ({exc})") from None
    problems = validate_manifest(manifest)
    if problems:
        raise ManifestError(f"{source} is not an {FORMAT} manifest: " + "; ".join(problems))
    return manifest


def check_pair(baseline: Mapping[str, Any], live: Mapping[str, Any], host: str | None = None) -> None:
    """Refuse to compare manifests of different formats or hosts (a swapped baseline hides a tampered host)."""
    for label, manifest in (("baseline", baseline), ("live", live)):
        problems = validate_manifest(manifest)
        if problems:
            raise ManifestError(f"the {label} manifest is not usable: " + "; ".join(problems))
    if baseline["host"] != live["host"]:
        raise ManifestError(
            f"the baseline is for host {baseline['host']!r} but the live manifest is from {live['host']!r}; "
            "compare a host only with its own baseline"
        )
    if host is not None and baseline["host"] != host:
        raise ManifestError(
            f"the baseline in the store for {host!r} says it is for {baseline['host']!r}: the store was altered or "
            "files were swapped; restore the store from the mirror's copy or recapture from a known-good host"
        )


# --------------------------------------------------------------------------------------------------------------
# Noise rules

RULE_KEYS = {"section", "key", "fields", "reason"}


def validate_rules(rules: object) -> list[str]:
    """Every problem in a list of noise rules, naming the rule (empty list = usable).

    A rule is ``{"section": NAME or "*", "key": GLOB, "fields": [FIELD, ...] (optional), "reason": TEXT}``.
    Unknown keys and unknown section names are errors: a misspelt rule must not silently do nothing.
    """
    if not isinstance(rules, list):
        return [f"noise rules are a list of rules, not {type(rules).__name__}"]
    problems: list[str] = []
    for index, rule in enumerate(rules):
        where = f"rule {index + 1}"
        if not isinstance(rule, Mapping):
            problems.append(f"{where}: must be a mapping with section, key, reason (and optional fields)")
            continue
        if isinstance(rule.get("key"), str):
            where += f" ({rule.get('section', '?')}:{rule['key']})"
        unknown = sorted(set(rule) - RULE_KEYS, key=str)
        if unknown:
            hint = ""
            if any(rule[k] is None for k in unknown):
                hint = " (a comma inside an unquoted {section: ..., reason: ...} line splits it: quote the reason)"
            problems.append(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))}; a rule has "
                f"{', '.join(sorted(RULE_KEYS))}{hint}"
            )
        section = rule.get("section")
        if not isinstance(section, str) or not section:
            problems.append(f"{where}: 'section' must be a section name or '*'")
        elif section != "*" and section not in SECTIONS:
            problems.append(f"{where}: section {section!r} is not a manifest section (known: {', '.join(SECTIONS)})")
        if not isinstance(rule.get("key"), str) or not rule.get("key"):
            problems.append(f"{where}: 'key' must be a non-empty glob, e.g. '/var/log/*'")
        if "fields" in rule:
            fields = rule["fields"]
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
                problems.append(f"{where}: 'fields' must be a non-empty list of field names, e.g. ['sha256', 'size']")
        reason = rule.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}: 'reason' must say why this difference is expected (it goes in the docs)")
    return problems


def _matching_rules(rules: Iterable[Mapping[str, Any]], section: str, key: str) -> list[Mapping[str, Any]]:
    return [rule for rule in rules if rule["section"] in ("*", section) and fnmatch.fnmatchcase(key, rule["key"])]


def rule_effect(rules: Iterable[Mapping[str, Any]], section: str, key: str) -> tuple[bool, frozenset[str]]:
    """(excluded, ignored fields) for one key: a matching rule without fields excludes the key altogether."""
    matching = _matching_rules(rules, section, key)
    if any("fields" not in rule for rule in matching):
        return True, frozenset()
    return False, frozenset(field for rule in matching for field in rule["fields"])


def _section_excluded(rules: Iterable[Mapping[str, Any]], section: str) -> bool:
    """A whole section is waived by a field-less rule naming it (not '*') with key '*'."""
    return any(rule["section"] == section and rule["key"] == "*" and "fields" not in rule for rule in rules)


# --------------------------------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    section: str
    key: str
    change: str
    before: Any
    after: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# (section, change) -> (kind, severity). Why these severities (docs/baselines.md, "Severities"):
#   critical: the change is itself a way back in or up (new persistence, SUID file, new key, sudoers or
#             PAM drop-in, ld.so.preload): act on it before the host serves again;
#   high:     code or privileges differ from known-good (package, binary, account, listener, module,
#             firewall, DB role or trigger): explain it before trusting the host;
#   medium:   configuration or data drift with a plausible benign cause: review;
#   low:      something known-good is gone (a removed file, key or listener): note it, usually a symptom.
SEVERITY: dict[tuple[str, str], tuple[str, str]] = {
    ("packages", "added"): ("package-added", "high"),
    ("packages", "removed"): ("package-removed", "medium"),
    ("packages", "modified"): ("package-changed", "high"),
    ("files", "added"): ("file-added", "medium"),
    ("files", "removed"): ("file-removed", "medium"),
    ("files", "modified"): ("file-modified", "medium"),
    ("suid", "added"): ("suid-added", "critical"),
    ("suid", "removed"): ("permission-changed", "low"),
    ("suid", "modified"): ("permission-changed", "high"),
    ("units", "added"): ("new-persistence", "critical"),
    ("units", "removed"): ("persistence-removed", "medium"),
    ("units", "modified"): ("new-persistence", "high"),
    ("users", "added"): ("new-account", "high"),
    ("users", "removed"): ("account-removed", "medium"),
    ("users", "modified"): ("account-changed", "high"),
    ("groups", "added"): ("new-account", "medium"),
    ("groups", "removed"): ("account-removed", "low"),
    ("groups", "modified"): ("account-changed", "high"),
    ("sudoers", "added"): ("config-drift", "critical"),
    ("sudoers", "removed"): ("config-drift", "medium"),
    ("sudoers", "modified"): ("config-drift", "critical"),
    ("authorized_keys", "added"): ("new-key", "critical"),
    ("authorized_keys", "removed"): ("key-removed", "low"),
    ("authorized_keys", "modified"): ("new-key", "critical"),
    ("cron", "added"): ("new-persistence", "critical"),
    ("cron", "removed"): ("persistence-removed", "low"),
    ("cron", "modified"): ("new-persistence", "critical"),
    ("listeners", "added"): ("new-listener", "high"),
    ("listeners", "removed"): ("listener-removed", "low"),
    ("listeners", "modified"): ("new-listener", "high"),
    ("kernel_modules", "added"): ("kernel-module-added", "high"),
    ("kernel_modules", "removed"): ("kernel-module-removed", "low"),
    ("kernel_modules", "modified"): ("kernel-module-added", "high"),
    ("preload", "added"): ("new-persistence", "critical"),
    ("preload", "removed"): ("persistence-removed", "low"),
    ("preload", "modified"): ("new-persistence", "critical"),
    ("pam", "added"): ("new-persistence", "critical"),
    ("pam", "removed"): ("config-drift", "high"),
    ("pam", "modified"): ("config-drift", "critical"),
    ("nftables", "added"): ("config-drift", "high"),
    ("nftables", "removed"): ("config-drift", "high"),
    ("nftables", "modified"): ("config-drift", "high"),
    ("nginx", "added"): ("config-drift", "medium"),
    ("nginx", "removed"): ("config-drift", "medium"),
    ("nginx", "modified"): ("config-drift", "medium"),
    ("postgresql", "added"): ("db-object-changed", "high"),
    ("postgresql", "removed"): ("db-object-changed", "medium"),
    ("postgresql", "modified"): ("db-object-changed", "high"),
}
UNKNOWN_SECTION = ("config-drift", "medium")
SECTION_MISSING = ("section-missing", "low")

WEB_ROOT_PATHS: tuple[str, ...] = (
    # Trees a web server serves or runs code from: a new or changed file there may be a web shell (T1505.003).
    "/var/www/*",
    "/srv/*",
)

PERSISTENCE_PATHS: tuple[str, ...] = (
    # Where code placed by an attacker runs again by itself (boot, login, schedule, library load, auth).
    # A classification table, not an exclusion list: it only raises the kind/severity of a file finding.
    "/etc/systemd/*",
    "/lib/systemd/system/*",
    "/usr/lib/systemd/system/*",
    "/lib/systemd/system-generators/*",
    "/usr/lib/systemd/system-generators/*",
    "/usr/lib/systemd/user/*",
    "/usr/local/lib/systemd/*",
    "/*/.config/systemd/*",
    "/home/*/.config/systemd/*",
    "/etc/cron*",
    "/var/spool/cron/*",
    "/var/spool/at*",
    "/etc/anacrontab",
    "/etc/rc.local",
    "/etc/rc?.d/*",
    "/etc/init.d/*",
    "/etc/profile",
    "/etc/profile.d/*",
    "/etc/bash.bashrc",
    "/etc/environment",
    "/etc/zsh/*",
    "/root/.bashrc",
    "/root/.profile",
    "/root/.bash_profile",
    "/root/.bash_login",
    "/root/.bash_logout",
    "/home/*/.bashrc",
    "/home/*/.profile",
    "/home/*/.bash_profile",
    "/home/*/.bash_login",
    "/home/*/.bash_logout",
    "/etc/ld.so.preload",
    "/etc/ansible/facts.d/*",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d/*",
    "/etc/udev/rules.d/*",
    "/lib/udev/rules.d/*",
    "/usr/lib/udev/rules.d/*",
    "/etc/pam.d/*",
    "/etc/security/*",
    "/lib/*/security/*",
    "/usr/lib/*/security/*",
    "/etc/sudoers",
    "/etc/sudoers.d/*",
    "/etc/apt/apt.conf.d/*",
    "/etc/modules",
    "/etc/modules-load.d/*",
    "/etc/modprobe.d/*",
    "/etc/update-motd.d/*",
    "/etc/xdg/autostart/*",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/*",
)
AUTHORIZED_KEYS_PATHS: tuple[str, ...] = (
    "*/.ssh/authorized_keys",
    "*/.ssh/authorized_keys2",
    "/etc/ssh/authorized_keys*",
)
EXECUTABLE_PATHS: tuple[str, ...] = (
    "/bin/*",
    "/sbin/*",
    "/usr/bin/*",
    "/usr/sbin/*",
    "/usr/local/bin/*",
    "/usr/local/sbin/*",
    "/lib/*",
    "/lib64/*",
    "/usr/lib/*",
    "/usr/lib64/*",
    "/usr/libexec/*",
    "/usr/local/lib/*",
    "/boot/*",
)
CONTENT_FIELDS = frozenset({"sha256", "size", "type", "target"})
PERMISSION_FIELDS = frozenset({"mode", "uid", "gid"})

ADVICE: dict[str, str] = {
    "new-persistence": "keep a copy as evidence, find what created it, remove it and rebuild the host from known-good",
    "suid-added": "treat as privilege escalation: keep the file as evidence and rebuild the host",
    "new-key": "remove the key, rotate the account's credentials, and find how it was added",
    "new-account": "lock the account, keep its files as evidence, and find who created it",
    "account-changed": "check the account against the change record; lock it if nobody changed it",
    "account-removed": "check the change record; a removed account may hide an attacker's tracks",
    "config-drift": "diff against the release (git) and restore the known-good configuration",
    "file-modified": "compare with the package or release copy (dpkg --verify) and reinstall from the mirror",
    "file-added": "find which process wrote it; executables outside packages are suspect",
    "file-removed": "check whether a cleanup was planned; restore from the mirror if not",
    "permission-changed": "restore owner and mode from the baseline; find who changed them",
    "package-changed": "reinstall the pinned version from the signed mirror",
    "package-added": "find who installed it and why; remove it unless it is in the change record",
    "package-removed": "reinstall from the mirror if the host needs it",
    "new-listener": "identify the process (ss -ltnp), stop it and keep its binary as evidence",
    "listener-removed": "a known-good service is not listening: check it is running",
    "kernel-module-added": "treat as a possible rootkit: keep memory if possible, then rebuild",
    "kernel-module-removed": "check why a known-good module is no longer loaded",
    "persistence-removed": "a known-good job or unit is gone: check the change record",
    "key-removed": "a known-good key is gone: check the change record",
    "db-role-added": "check the role against the change record; revoke its login if nobody created it",
    "db-object-changed": "diff the schema against the release migrations; restore from the known-good dump",
    "section-missing": "the collector could not read this part of the host; see the capture stats for why",
    "environment-changed": "look for /.dockerenv, /run/container_type or a changed init: an attacker may be hiding "
    "kernel modules; verify from a disk image",
}


def _matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _changed_fields(before: Any, after: Any, ignored: frozenset[str]) -> list[str] | None:
    """Fields that differ between two dict values (ignoring some); None when the values are not both dicts."""
    if not (isinstance(before, Mapping) and isinstance(after, Mapping)):
        return None
    return sorted(f for f in set(before) | set(after) if f not in ignored and before.get(f) != after.get(f))


def _mode_bits(value: Any) -> int:
    try:
        return int(str(value), 8)
    except ValueError:
        return 0


def _classify_file(key: str, change: str, before: Any, after: Any, fields: list[str] | None) -> tuple[str, str, str]:
    value = after if change != "removed" else before
    kind_of = value.get("type", "file") if isinstance(value, Mapping) else "file"
    if _matches_any(key, AUTHORIZED_KEYS_PATHS):
        if change == "removed":
            return "key-removed", "low", "a known-good authorized_keys file is gone"
        return (
            "new-key",
            "critical",
            f"authorized_keys file {change}: someone can log in with a key not in the baseline",
        )
    changed = set(fields or [])
    content = change != "modified" or fields is None or bool(changed & CONTENT_FIELDS)
    if change == "modified" and not content:
        mode = _mode_bits(after.get("mode")) if isinstance(after, Mapping) else 0
        old = _mode_bits(before.get("mode")) if isinstance(before, Mapping) else 0
        gained = mode & ~old
        if gained & 0o6000:
            return "permission-changed", "critical", "gained the setuid/setgid bit"
        if gained & 0o002:
            return "permission-changed", "high", "became writable by every user"
        what = ", ".join(sorted(changed))
        return "permission-changed", "medium", f"{what} changed, content unchanged"
    if _matches_any(key, PERSISTENCE_PATHS):
        if change == "removed":
            return "persistence-removed", "medium", "a known-good file on a persistence path is gone"
        return (
            "new-persistence",
            "critical",
            f"{kind_of} {change} on a path that runs code at boot, login or on a schedule",
        )
    if change in ("added", "modified") and kind_of == "file" and _matches_any(key, WEB_ROOT_PATHS):
        return f"file-{change}", "high", f"{kind_of} {change} in a web root: a web shell looks like this"
    if change == "added":
        executable = isinstance(after, Mapping) and kind_of == "file" and _mode_bits(after.get("mode")) & 0o111
        if _matches_any(key, EXECUTABLE_PATHS):
            return "file-added", "high", f"new {kind_of} among system programs and libraries"
        if executable:
            return "file-added", "high", "new executable file, not in the baseline"
        return "file-added", "medium", f"new {kind_of} not in the baseline"
    if change == "removed":
        return "file-removed", "medium", f"{kind_of} in the baseline is gone"
    if _matches_any(key, EXECUTABLE_PATHS):
        return "file-modified", "high", f"program or library changed ({', '.join(sorted(changed)) or 'content'})"
    return "file-modified", "medium", f"changed: {', '.join(sorted(changed)) or 'content'}"


def _classify_postgresql(key: str, change: str, before: Any, after: Any) -> tuple[str, str, str]:
    prefix = key.split(":", 1)[0]
    if key == "hba":
        return "config-drift", "high", "pg_hba.conf (who may connect, how) changed"
    if prefix == "role":
        gained = [
            attr
            for attr in ("superuser", "rolsuper", "createrole", "rolcreaterole", "bypassrls", "rolbypassrls")
            if isinstance(after, Mapping) and after.get(attr) and not (isinstance(before, Mapping) and before.get(attr))
        ]
        if change == "added":
            severity = "critical" if gained else "high"
            return (
                "db-role-added",
                severity,
                "database role not in the baseline" + (f" with {', '.join(gained)}" if gained else ""),
            )
        if gained:
            return "db-object-changed", "critical", f"role gained {', '.join(gained)}"
        kind, severity = SEVERITY[("postgresql", change)]
        return kind, severity, f"database role {change}"
    if prefix in ("function", "trigger") and change != "removed":
        return "db-object-changed", "high", f"{prefix} {change}: code that runs inside the database"
    if prefix == "extension" and change == "added":
        return "db-object-changed", "high", "extension added: new code loaded into the database"
    kind, severity = SEVERITY[("postgresql", change)]
    return kind, severity, f"{prefix or 'object'} {change}"


def classify(section: str, key: str, change: str, before: Any, after: Any, fields: list[str] | None = None) -> Finding:
    """One difference as one finding: the table gives kind and severity, a few value checks raise them."""
    kind, severity = SEVERITY.get((section, change), UNKNOWN_SECTION)
    reason = f"{section} entry {change}"
    if section == "files":
        kind, severity, reason = _classify_file(key, change, before, after, fields)
    elif section == "postgresql":
        kind, severity, reason = _classify_postgresql(key, change, before, after)
    elif section == "packages":
        reason = {
            "added": f"installed {after}, not in the baseline",
            "removed": f"version {before} of the baseline is not installed",
            "modified": f"version {before} in the baseline, {after} installed",
        }[change]
    elif section == "users":
        uid = after.get("uid") if isinstance(after, Mapping) else None
        if uid == 0 and key != "root":
            kind, severity, reason = "new-account", "critical", "a second account with uid 0 (root)"
        elif change == "modified":
            reason = f"account changed: {', '.join(_changed_fields(before, after, frozenset()) or ['value'])}"
        else:
            reason = f"account {change}"
    elif section == "groups":
        gid = after.get("gid") if isinstance(after, Mapping) else None
        if gid == 0 and key != "root":
            kind, severity, reason = "new-account", "critical", "a second group with gid 0 (root)"
        elif change == "modified" and isinstance(before, Mapping) and isinstance(after, Mapping):
            new = sorted(set(after.get("members") or []) - set(before.get("members") or []))
            reason = f"new members: {', '.join(new)}" if new else "group changed"
        else:
            reason = f"group {change}"
    elif section == "authorized_keys":
        if change == "modified" and isinstance(before, list) and isinstance(after, list):
            new = [line for line in after if line not in before]
            if new:
                reason = f"{len(new)} key(s) not in the baseline: {'; '.join(str(n) for n in new)[:200]}"
            else:
                kind, severity, reason = "key-removed", "low", "known-good key(s) removed"
        else:
            reason = "authorized_keys " + ("added" if change == "added" else "gone")
    elif section == "units":
        state_before = before.get("state") if isinstance(before, Mapping) else None
        state_after = after.get("state") if isinstance(after, Mapping) else None
        changed = _changed_fields(before, after, frozenset())
        if change == "modified" and changed == ["state"] and state_after in ("disabled", "masked"):
            kind, severity = "config-drift", "medium"
            reason = f"unit was {state_before}, now {state_after}"
        elif change == "modified" and changed == ["state"]:
            reason = f"unit was {state_before}, now {state_after}"
        elif change == "modified":
            reason = f"unit changed: {', '.join(changed or ['value'])}"
        else:
            reason = {"added": f"unit not in the baseline ({state_after})", "removed": "known-good unit is gone"}[
                change
            ]
    elif section == "suid":
        reason = {
            "added": f"setuid/setgid file not in the baseline (mode {after})",
            "removed": "no longer setuid/setgid",
            "modified": f"mode {before} -> {after}",
        }[change]
    elif section == "preload":
        if change == "modified" and not after:
            kind, severity, reason = "persistence-removed", "low", "preload emptied"
        elif change != "removed" and not after:
            kind, severity, reason = "config-drift", "low", "empty preload entry"
        else:
            reason = f"libraries preloaded into every process: {after}" if change != "removed" else "entry gone"
    elif section == "listeners":
        if change == "modified":
            reason = f"port now owned by {after}, was {before}"
        else:
            reason = f"listening socket {change}" + (f" ({after})" if change == "added" else "")
    elif section in ("sudoers", "pam", "cron", "nginx", "nftables"):
        reason = f"{section} {change}"
    elif section == "kernel_modules":
        reason = f"kernel module {'loaded, not in the baseline' if change == 'added' else change}"
    return Finding(kind, severity, section, key, change, before, after, reason)


def _strip(value: Any, ignored: frozenset[str]) -> Any:
    if ignored and isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k not in ignored}
    return value


def compare(baseline: Mapping[str, Any], live: Mapping[str, Any], rules: list[dict] | None = None) -> list[Finding]:
    """Every difference between a baseline and a live manifest that the rules do not explain, as findings.

    At most one finding per (section, key); sorted by severity, section, key. Rules must be valid
    (see :func:`validate_rules`); a RuleError is raised otherwise.
    """
    rules = list(rules or [])
    problems = validate_rules(rules)
    if problems:
        raise RuleError("noise rules are not usable:\n- " + "\n- ".join(problems))
    before_sections: Mapping[str, Any] = baseline.get("sections") or {}
    after_sections: Mapping[str, Any] = live.get("sections") or {}
    findings: list[Finding] = []
    # What the host says it is (a container or not) decides which noise rules apply, and a root attacker can
    # fake it (/.dockerenv, /run/container_type) to hide kernel modules: a change from the signed baseline is
    # itself a finding.
    was = (baseline.get("stats") or {}).get("container")
    now = (live.get("stats") or {}).get("container")
    if was is not None and now is not None and was != now:
        findings.append(
            Finding(
                "environment-changed",
                "critical",
                "stats",
                "container",
                "modified",
                was,
                now,
                f"the host now says it is {now!r} (container detection), the baseline was captured as {was!r}",
            )
        )
    for section in sorted(set(before_sections) | set(after_sections)):
        if section not in after_sections or section not in before_sections:
            if _section_excluded(rules, section):
                continue
            present = "baseline" if section in before_sections else "live manifest"
            missing = "live manifest" if section in before_sections else "baseline"
            kind, severity = SECTION_MISSING
            findings.append(
                Finding(
                    kind,
                    severity,
                    section,
                    "",
                    "removed" if section in before_sections else "added",
                    None,
                    None,
                    f"section {section} is in the {present} but not in the {missing}",
                )
            )
            continue
        old: Mapping[str, Any] = before_sections[section]
        new: Mapping[str, Any] = after_sections[section]
        # Only keys that differ can become findings; rules are applied to those alone (a million unchanged
        # files cost one dict comparison each, not one glob match per rule).
        differing = [key for key, value in old.items() if key not in new or new[key] != value]
        differing += [key for key in new if key not in old]
        for key in differing:
            excluded, ignored = rule_effect(rules, section, key)
            if excluded:
                continue
            if key not in new:
                findings.append(classify(section, key, "removed", old[key], None))
            elif key not in old:
                findings.append(classify(section, key, "added", None, new[key]))
            elif _strip(old[key], ignored) != _strip(new[key], ignored):
                fields = _changed_fields(old[key], new[key], ignored)
                findings.append(classify(section, key, "modified", old[key], new[key], fields))
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    rank = {severity: index for index, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (rank.get(f.severity, len(rank)), f.section, f.key))


# --------------------------------------------------------------------------------------------------------------
# Reports


def summarise(findings: Iterable[Finding]) -> dict[str, Any]:
    """Counts per severity (all four, zero included) and per kind; clean means no finding at all."""
    findings = list(findings)
    by_severity = {severity: 0 for severity in SEVERITIES}
    by_kind: dict[str, int] = {}
    for finding in findings:
        by_severity[finding.severity] = by_severity.get(finding.severity, 0) + 1
        by_kind[finding.kind] = by_kind.get(finding.kind, 0) + 1
    return {
        "total": len(findings),
        "clean": not findings,
        "by_severity": by_severity,
        "by_kind": dict(sorted(by_kind.items())),
    }


def summary_line(host: str, summary: Mapping[str, Any]) -> str:
    """One line for the incident report: 'web1: 3 findings (critical 1, high 2) - new-persistence 1, ...'."""
    if summary["total"] == 0:
        return f"{host}: clean (0 findings)"
    severities = ", ".join(f"{s} {n}" for s, n in summary["by_severity"].items() if n)
    kinds = ", ".join(f"{k} {n}" for k, n in summary["by_kind"].items())
    plural = "s" if summary["total"] != 1 else ""
    return f"{host}: {summary['total']} finding{plural} ({severities}) - {kinds}"


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_text(host: str, findings: list[Finding]) -> list[str]:
    """Human report: the summary line, then one line per finding grouped by severity, then what to do."""
    summary = summarise(findings)
    lines = [summary_line(host, summary)]
    for severity in SEVERITIES:
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        lines += ["", f"  {severity.upper()} ({len(group)})"]
        for f in group:
            where = f"{f.section} {f.key}" if f.key else f.section
            detail = f.reason
            if f.change == "modified" and f.section not in ("packages", "suid", "listeners"):
                detail += f" [was {_short(f.before, 60)}, now {_short(f.after, 60)}]"
            lines.append(f"    {f.kind:<20} {where}: {detail}")
    kinds = sorted(
        {f.kind for f in findings}, key=lambda k: min(SEVERITIES.index(f.severity) for f in findings if f.kind == k)
    )
    if kinds:
        lines += ["", "  What to do:"]
        lines += [f"    {kind}: {ADVICE.get(kind, 'review against the change record')}" for kind in kinds]
    return lines


def build_report(
    baseline: Mapping[str, Any], live: Mapping[str, Any], findings: list[Finding], rules_count: int = 0
) -> dict[str, Any]:
    """The JSON findings report of one host (what enp_baseline_compare writes and the CLI reads)."""
    summary = summarise(findings)
    return {
        "format": REPORT_FORMAT,
        "host": live.get("host"),
        "root": live.get("root", "/"),
        "baseline_captured_at": baseline.get("captured_at"),
        "live_captured_at": live.get("captured_at"),
        "noise_rules": rules_count,
        "clean": summary["clean"],
        "summary": summary,
        "summary_line": summary_line(str(live.get("host")), summary),
        "findings": [f.to_dict() for f in findings],
    }


def findings_from_report(report: Mapping[str, Any]) -> list[Finding]:
    return [Finding(**item) for item in report.get("findings") or []]


# --------------------------------------------------------------------------------------------------------------
# Signatures (ssh-keygen -Y)


def allowed_signers_line(public_key: str) -> str:
    """The allowed_signers entry for a baseline public key (``ssh-ed25519 AAAA... comment``)."""
    parts = public_key.split()
    if len(parts) < 2:
        raise SignatureError("not an OpenSSH public key (expected 'TYPE BASE64 [comment]')")
    return f'{SIGNER_IDENTITY} namespaces="{SIG_NAMESPACE}" {parts[0]} {parts[1]}\n'


def _ssh_keygen(args: list[str], data: bytes, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["ssh-keygen", *args], input=data, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise SignatureError(
            f"cannot {what}: ssh-keygen not found; install openssh-client (OpenSSH 8.1 or newer) on the controller"
        ) from None
    except subprocess.TimeoutExpired:
        raise SignatureError(
            f"cannot {what}: ssh-keygen did not answer within 60 s (a key with a passphrase?)"
        ) from None


def sign_bytes(data: bytes, key_path: str) -> bytes:
    """An armoured SSH signature of ``data`` made with the private key at key_path (namespace enp-baseline)."""
    if not os.path.isfile(key_path):
        raise SignatureError(f"signing key {key_path} does not exist")
    proc = _ssh_keygen(["-Y", "sign", "-n", SIG_NAMESPACE, "-f", key_path], data, "sign")
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        message = proc.stderr.decode("utf-8", "replace").strip()
        raise SignatureError(f"ssh-keygen could not sign with {key_path}: {message}")
    return proc.stdout


def verify_bytes(data: bytes, signature: bytes, allowed_signers: str, source: str = "manifest") -> str:
    """Check that ``signature`` is a good enp-baseline signature of ``data`` by a key in allowed_signers.

    Returns ssh-keygen's confirmation ('Good "enp-baseline" signature ...'); raises SignatureError otherwise.
    """
    if not os.path.isfile(allowed_signers):
        raise SignatureError(
            f"cannot verify {source}: allowed signers file {allowed_signers} does not exist; it holds the public half "
            "of the baseline signing key (docs/baselines.md, 'Signing')"
        )
    with tempfile.NamedTemporaryFile(prefix="enp-baseline-", suffix=".sig") as handle:
        handle.write(signature)
        handle.flush()
        args = ["-Y", "verify", "-n", SIG_NAMESPACE, "-I", SIGNER_IDENTITY, "-f", allowed_signers, "-s", handle.name]
        proc = _ssh_keygen(args, data, "verify")
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().replace("\n", "; ")
        raise SignatureError(
            f"{source}: the signature does not verify ({message}). The manifest or its signature was altered, or it "
            "was signed with another key. Do not use it: restore the baseline store from the mirror's copy, or "
            "recapture from a host rebuilt from known-good"
        )
    return proc.stdout.decode("utf-8", "replace").strip()


def read_signed_manifest(
    path: str, allowed_signers: str, signature_path: str | None = None
) -> tuple[dict[str, Any], str]:
    """Load a stored manifest only if its signature verifies; the bytes verified are the bytes parsed.

    Returns the manifest and ssh-keygen's confirmation line (which names the key's fingerprint).
    """
    signature_path = signature_path or f"{path}.sig"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ManifestError(
            f"no baseline manifest at {path} ({exc.strerror}); capture one from a known-good host "
            "(enp baseline capture) or restore the store from the mirror"
        ) from None
    try:
        with open(signature_path, "rb") as handle:
            signature = handle.read()
    except OSError:
        raise SignatureError(
            f"{path} has no signature ({signature_path} missing): an unsigned manifest is never trusted. Sign it only "
            "if you know it came from a known-good capture (enp baseline sign), else recapture or restore the store"
        ) from None
    confirmation = verify_bytes(data, signature, allowed_signers, source=path)
    return load_manifest(data, source=path), confirmation


def drift_rows(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Findings of verify reports as the recovery report's drift rows ``{host, path, kind, detail, severity}``."""
    rows = []
    for report in reports:
        host = str(report.get("host", "?"))
        for finding in findings_from_report(report):
            detail = f"{finding.change} in {finding.section}: {finding.reason}".strip().rstrip(":")
            row = {"host": host, "path": finding.key, "kind": finding.kind, "detail": detail}
            rows.append(row | {"severity": finding.severity})
    return rows
