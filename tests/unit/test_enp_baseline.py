"""Known-good baselines: manifest format, comparison and classification, noise rules, signatures, CLI helpers.

Property tests (hypothesis) cover the manifest format and the generic comparison; table-driven tests pin the
classification an operator relies on (what is critical and why); signature tests use the real ssh-keygen.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import enp_baseline as mu
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from enp import baseline as enp_baseline
from enp import cli, runner
from enp.cli import ExitCode
from enp.runner import HostFailure, RunResult

PROJECT = Path(__file__).resolve().parents[2]
HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None
needs_ssh_keygen = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen (openssh-client) not installed")


def manifest(sections: dict[str, dict[str, Any]], host: str = "web1") -> dict[str, Any]:
    return {
        "format": mu.FORMAT,
        "host": host,
        "roles": ["web"],
        "captured_at": "2026-12-06T04:00:00Z",
        "root": "/",
        "sections": sections,
        "stats": {"files": 10, "hashed": 3, "reused": 7, "seconds": 0.5, "files_per_second": 20.0},
    }


# A realistic known-good web host, small enough to read.
KNOWN_GOOD: dict[str, Any] = manifest(
    {
        "packages": {"nginx:amd64": "1.22.1-9", "openssh-server:amd64": "1:9.2p1-2+deb12u6"},
        "files": {
            "/usr/sbin/nginx": {"type": "file", "mode": "0755", "uid": 0, "gid": 0, "size": 1200, "sha256": "aa"},
            "/etc/nginx/nginx.conf": {"type": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 90, "sha256": "bb"},
            "/etc/cron.d/e2scrub_all": {"type": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 9, "sha256": "cc"},
            "/home/enp/.bashrc": {"type": "file", "mode": "0644", "uid": 1000, "gid": 1000, "size": 5, "sha256": "dd"},
            "/var/log/syslog": {"type": "file", "mode": "0640", "uid": 0, "gid": 4, "size": 5, "sha256": "ee"},
            "/usr/bin/passwd": {"type": "file", "mode": "4755", "uid": 0, "gid": 0, "size": 7, "sha256": "ff"},
            "/usr/lib/x86_64-linux-gnu/libc.so.6": {"type": "link", "mode": "0777", "uid": 0, "gid": 0, "target": "x"},
        },
        "suid": {"/usr/bin/passwd": "4755"},
        "units": {"nginx.service": {"state": "enabled", "path": "/lib/systemd/system/nginx.service", "sha256": "11"}},
        "users": {
            "root": {"uid": 0, "gid": 0, "home": "/root", "shell": "/bin/bash", "locked": True},
            "enp": {"uid": 1000, "gid": 1000, "home": "/home/enp", "shell": "/bin/bash", "locked": False},
        },
        "groups": {"sudo": {"gid": 27, "members": ["enp"]}},
        "sudoers": {"/etc/sudoers": "s1"},
        "authorized_keys": {"/home/enp/.ssh/authorized_keys": ["ssh-ed25519 SHA256:op enp@controller"]},
        "cron": {"/etc/crontab": "c1"},
        "listeners": {"tcp:0.0.0.0:443": {"process": "nginx", "user": "root"}},
        "kernel_modules": {"nf_tables": True},
        "preload": {"/etc/ld.so.preload": []},
        "pam": {"/etc/pam.d/common-auth": "p1"},
        "nftables": {"ruleset": "r1", "tables": ["inet filter"]},
        "nginx": {"/etc/nginx/sites-enabled/portal": "n1"},
        "postgresql": {"role:app": {"superuser": False, "login": True}, "function:public.audit()": "f1"},
    }
)


def changed(section: str, key: str, value: Any = None, *, remove: bool = False) -> dict[str, Any]:
    live = copy.deepcopy(KNOWN_GOOD)
    if remove:
        del live["sections"][section][key]
    else:
        live["sections"][section][key] = value
    return live


# ---------------------------------------------------------------------------------------------------------------
# Hypothesis strategies: manifests with any sections, keys and JSON values

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
section_bodies = st.dictionaries(st.text(min_size=1, max_size=16), json_values, max_size=6)
manifests = st.builds(
    lambda sections, host: manifest(sections, host),
    st.dictionaries(st.sampled_from(mu.SECTIONS), section_bodies, max_size=6),
    st.text(min_size=1, max_size=10),
)


@given(manifests)
def test_canonical_serialisation_round_trips_and_is_a_fixed_point(m: dict[str, Any]) -> None:
    text = mu.canonical_json(m)
    assert text.endswith("\n") and "\n" not in text[:-1]
    loaded = mu.load_manifest(text.encode("utf-8"))
    assert loaded == m
    assert mu.canonical_json(loaded) == text


@given(manifests)
def test_canonical_form_ignores_key_order(m: dict[str, Any]) -> None:
    reordered = json.loads(json.dumps(m), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert mu.canonical_bytes(reordered) == mu.canonical_bytes(m)


@given(manifests)
def test_a_manifest_compared_with_itself_has_no_findings(m: dict[str, Any]) -> None:
    assert mu.compare(m, copy.deepcopy(m), []) == []


def _by_change(findings: list[mu.Finding]) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {change: set() for change in mu.CHANGES}
    for f in findings:
        out[f.change].add((f.section, f.key))
    return out


@given(manifests, manifests)
def test_compare_is_symmetric_in_added_and_removed(a: dict[str, Any], b: dict[str, Any]) -> None:
    forward = _by_change(mu.compare(a, b, []))
    backward = _by_change(mu.compare(b, a, []))
    assert forward["added"] == backward["removed"]
    assert forward["removed"] == backward["added"]
    assert forward["modified"] == backward["modified"]


@given(manifests, manifests)
def test_at_most_one_finding_per_section_and_key(a: dict[str, Any], b: dict[str, Any]) -> None:
    findings = mu.compare(a, b, [])
    places = [(f.section, f.key) for f in findings]
    assert len(places) == len(set(places))
    assert all(f.severity in mu.SEVERITIES and f.change in mu.CHANGES and f.reason for f in findings)
    json.dumps([f.to_dict() for f in findings])  # the JSON report can always be written


# What an operator may expect per (section, change), written independently of the table in the code.
EXPECTED_KINDS: dict[str, dict[str, set[str]]] = {
    "packages": {"added": {"package-added"}, "removed": {"package-removed"}, "modified": {"package-changed"}},
    "files": {
        "added": {"file-added", "new-persistence", "new-key"},
        "removed": {"file-removed", "persistence-removed", "key-removed"},
        "modified": {"file-modified", "permission-changed", "new-persistence", "new-key"},
    },
    "suid": {"added": {"suid-added"}, "removed": {"permission-changed"}, "modified": {"permission-changed"}},
    "units": {
        "added": {"new-persistence"},
        "removed": {"persistence-removed"},
        "modified": {"new-persistence", "config-drift"},
    },
    "users": {"added": {"new-account"}, "removed": {"account-removed"}, "modified": {"account-changed", "new-account"}},
    "groups": {
        "added": {"new-account"},
        "removed": {"account-removed"},
        "modified": {"account-changed", "new-account"},
    },
    "sudoers": {"added": {"config-drift"}, "removed": {"config-drift"}, "modified": {"config-drift"}},
    "authorized_keys": {"added": {"new-key"}, "removed": {"key-removed"}, "modified": {"new-key", "key-removed"}},
    "cron": {"added": {"new-persistence"}, "removed": {"persistence-removed"}, "modified": {"new-persistence"}},
    "listeners": {"added": {"new-listener"}, "removed": {"listener-removed"}, "modified": {"new-listener"}},
    "kernel_modules": {
        "added": {"kernel-module-added"},
        "removed": {"kernel-module-removed"},
        "modified": {"kernel-module-added"},
    },
    "preload": {
        "added": {"new-persistence", "config-drift"},
        "removed": {"persistence-removed"},
        "modified": {"new-persistence", "persistence-removed"},
    },
    "pam": {"added": {"new-persistence"}, "removed": {"config-drift"}, "modified": {"config-drift"}},
    "nftables": {"added": {"config-drift"}, "removed": {"config-drift"}, "modified": {"config-drift"}},
    "nginx": {"added": {"config-drift"}, "removed": {"config-drift"}, "modified": {"config-drift"}},
    "postgresql": {
        "added": {"db-role-added", "db-object-changed", "config-drift"},
        "removed": {"db-object-changed", "config-drift"},
        "modified": {"db-object-changed", "config-drift"},
    },
}


def test_expected_kinds_cover_every_section() -> None:
    assert set(EXPECTED_KINDS) == set(mu.SECTIONS)


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(
    m=manifests,
    section=st.sampled_from(mu.SECTIONS),
    key=st.text(min_size=1, max_size=16),
    value=json_values,
    change=st.sampled_from(mu.CHANGES),
    data=st.data(),
)
def test_one_change_in_any_section_is_exactly_one_finding_of_the_right_kind(
    m: dict[str, Any], section: str, key: str, value: Any, change: str, data: st.DataObject
) -> None:
    baseline = copy.deepcopy(m)
    body = baseline["sections"].setdefault(section, {})
    if change == "added":
        body.pop(key, None)
    else:
        body.setdefault(key, value)
    live = copy.deepcopy(baseline)
    if change == "added":
        live["sections"][section][key] = value
    elif change == "removed":
        del live["sections"][section][key]
    else:
        new = data.draw(json_values.filter(lambda v: v != body[key]))
        assume(new != body[key])
        live["sections"][section][key] = new
    findings = mu.compare(baseline, live, [])
    assert len(findings) == 1, findings
    (finding,) = findings
    assert (finding.section, finding.key, finding.change) == (section, key, change)
    assert finding.kind in EXPECTED_KINDS[section][change]


# ---------------------------------------------------------------------------------------------------------------
# Classification: what an attacker's change looks like in the report


def edit(section: str, key: str, **fields: Any) -> dict[str, Any]:
    """The known-good host with some fields of one entry changed."""
    return changed(section, key, {**KNOWN_GOOD["sections"][section][key], **fields})


def new_file(path: str, mode: str = "0644", uid: int = 0) -> dict[str, Any]:
    return changed("files", path, {"type": "file", "mode": mode, "uid": uid, "gid": uid, "size": 1, "sha256": "x"})


ROOT_SHELL = {"uid": 0, "gid": 0, "home": "/root", "shell": "/bin/bash", "locked": False}
EVIL_KEY = "ssh-rsa SHA256:ev x@y"
AK = "/home/enp/.ssh/authorized_keys"

CASES = [
    # (id, live manifest, expected kind, expected severity)
    ("trojaned nginx binary", edit("files", "/usr/sbin/nginx", sha256="ev", size=1300), "file-modified", "high"),
    ("config edited", edit("files", "/etc/nginx/nginx.conf", sha256="x"), "file-modified", "medium"),
    ("new cron.d file", new_file("/etc/cron.d/updater"), "new-persistence", "critical"),
    ("web shell in a web root", new_file("/var/www/html/.status.php", uid=33), "file-added", "high"),
    ("plain new data file", new_file("/var/lib/misc/notes"), "file-added", "medium"),
    ("user .bashrc backdoor", edit("files", "/home/enp/.bashrc", sha256="x"), "new-persistence", "critical"),
    ("new generator", new_file("/usr/lib/systemd/system-generators/n", "0755"), "new-persistence", "critical"),
    ("new udev rule", new_file("/etc/udev/rules.d/75-net.rules"), "new-persistence", "critical"),
    ("APT hook", new_file("/etc/apt/apt.conf.d/99update"), "new-persistence", "critical"),
    ("dropped executable in /tmp", new_file("/tmp/.x/kworker", "0755", 33), "file-added", "high"),
    ("new file in a served tree", new_file("/srv/app/notes.txt"), "file-added", "high"),
    ("root authorized_keys file", new_file("/root/.ssh/authorized_keys", "0600"), "new-key", "critical"),
    ("setuid bit added", edit("files", "/etc/nginx/nginx.conf", mode="4755"), "permission-changed", "critical"),
    ("world-writable config", edit("files", "/etc/nginx/nginx.conf", mode="0666"), "permission-changed", "high"),
    ("owner changed", edit("files", "/etc/nginx/nginx.conf", uid=33), "permission-changed", "medium"),
    (
        "library link redirected",
        edit("files", "/usr/lib/x86_64-linux-gnu/libc.so.6", target="/dev/shm/l"),
        "file-modified",
        "high",
    ),
    ("binary deleted", changed("files", "/usr/sbin/nginx", remove=True), "file-removed", "medium"),
    ("suid shell", changed("suid", "/var/tmp/.bash", "4755"), "suid-added", "critical"),
    ("package downgraded", changed("packages", "openssh-server:amd64", "1:9.2p1-2"), "package-changed", "high"),
    ("tool installed", changed("packages", "netcat-traditional:amd64", "1.10-47"), "package-added", "high"),
    ("package removed", changed("packages", "nginx:amd64", remove=True), "package-removed", "medium"),
    (
        "new timer",
        changed("units", "dbus-update.timer", {"state": "enabled", "path": "/etc/systemd/system/d.timer"}),
        "new-persistence",
        "critical",
    ),
    ("unit ExecStart changed", edit("units", "nginx.service", sha256="22"), "new-persistence", "high"),
    ("unit masked", edit("units", "nginx.service", state="masked"), "config-drift", "medium"),
    ("second uid 0", changed("users", "toor", ROOT_SHELL), "new-account", "critical"),
    ("new account", changed("users", "backup2", {**ROOT_SHELL, "uid": 1001, "gid": 1001}), "new-account", "high"),
    ("uid changed to 0", edit("users", "enp", uid=0), "new-account", "critical"),
    ("login shell changed", edit("users", "enp", **{"shell": "/bin/sh"}), "account-changed", "high"),
    (
        "added to sudo",
        changed("groups", "sudo", {"gid": 27, "members": ["enp", "www-data"]}),
        "account-changed",
        "high",
    ),
    ("second gid 0", changed("groups", "wheel0", {"gid": 0, "members": []}), "new-account", "critical"),
    ("sudoers drop-in", changed("sudoers", "/etc/sudoers.d/zz", "s2"), "config-drift", "critical"),
    (
        "key added",
        changed("authorized_keys", AK, [*KNOWN_GOOD["sections"]["authorized_keys"][AK], EVIL_KEY]),
        "new-key",
        "critical",
    ),
    ("key removed only", changed("authorized_keys", AK, []), "key-removed", "low"),
    (
        "root authorized_keys",
        changed("authorized_keys", "/root/.ssh/authorized_keys", [EVIL_KEY]),
        "new-key",
        "critical",
    ),
    ("crontab edited", changed("cron", "/etc/crontab", "c2"), "new-persistence", "critical"),
    ("at job", changed("cron", "/var/spool/cron/atjobs/a0001", "a1"), "new-persistence", "critical"),
    (
        "bind shell",
        changed("listeners", "tcp:0.0.0.0:31337", {"process": "python3", "user": "www-data"}),
        "new-listener",
        "high",
    ),
    ("port taken over", edit("listeners", "tcp:0.0.0.0:443", process="socat"), "new-listener", "high"),
    ("rootkit module", changed("kernel_modules", "diamorphine", True), "kernel-module-added", "high"),
    ("ld.so.preload", changed("preload", "/etc/ld.so.preload", ["/usr/lib/libs.so"]), "new-persistence", "critical"),
    ("pam_exec in common-auth", changed("pam", "/etc/pam.d/common-auth", "p2"), "config-drift", "critical"),
    ("new pam file", changed("pam", "/etc/security/x.conf", "p3"), "new-persistence", "critical"),
    ("firewall flushed", changed("nftables", "ruleset", "r0"), "config-drift", "high"),
    ("nginx site added", changed("nginx", "/etc/nginx/sites-enabled/proxy", "n2"), "config-drift", "medium"),
    ("new DB superuser", changed("postgresql", "role:maint", {"superuser": True}), "db-role-added", "critical"),
    ("new DB role", changed("postgresql", "role:report", {"superuser": False}), "db-role-added", "high"),
    ("role made superuser", edit("postgresql", "role:app", superuser=True), "db-object-changed", "critical"),
    ("trigger added", changed("postgresql", "trigger:public.citizens.t", "t1"), "db-object-changed", "high"),
    ("hba edited", changed("postgresql", "hba", "h2"), "config-drift", "high"),
]


@pytest.mark.parametrize(("live", "kind", "severity"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classification(live: dict[str, Any], kind: str, severity: str) -> None:
    findings = mu.compare(KNOWN_GOOD, live, [])
    assert [(f.kind, f.severity) for f in findings] == [(kind, severity)], findings
    assert findings[0].reason


def test_every_kind_has_advice_for_the_operator() -> None:
    kinds = {kind for kind, _ in mu.SEVERITY.values()} | {c[2] for c in CASES} | {mu.SECTION_MISSING[0]}
    assert kinds <= set(mu.ADVICE), kinds - set(mu.ADVICE)


def test_findings_are_sorted_critical_first() -> None:
    live = changed("suid", "/tmp/x", "4755")
    live["sections"]["packages"]["nginx:amd64"] = "1.22.1-10"
    live["sections"]["listeners"] = {}
    severities = [f.severity for f in mu.compare(KNOWN_GOOD, live, [])]
    assert severities == ["critical", "high", "low"]


# ---------------------------------------------------------------------------------------------------------------
# Noise rules

LOGS = {"section": "files", "key": "/var/log/*", "reason": "logs rotate"}


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ({"section": "files"}, "list of rules"),
        (["files"], "must be a mapping"),
        ([{"section": "files", "key": "/x", "reason": "r", "field": ["sha256"]}], "unknown key(s) field"),
        ([{"section": "file", "key": "/x", "reason": "r"}], "'file' is not a manifest section"),
        ([{"key": "/x", "reason": "r"}], "'section' must be"),
        ([{"section": "files", "key": "", "reason": "r"}], "'key' must be a non-empty glob"),
        ([{"section": "files", "key": "/x", "reason": "r", "fields": "sha256"}], "'fields' must be a non-empty list"),
        ([{"section": "files", "key": "/x", "reason": "r", "fields": []}], "'fields' must be a non-empty list"),
        ([{"section": "files", "key": "/x"}], "'reason' must say why"),
        ([{"section": "files", "key": "/x", "reason": "  "}], "'reason' must say why"),
    ],
)
def test_bad_rules_are_named(rules: Any, fragment: str) -> None:
    problems = mu.validate_rules(rules)
    assert problems and any(fragment in p for p in problems), problems
    if isinstance(rules, list):
        with pytest.raises(mu.RuleError, match="not usable"):
            mu.compare(KNOWN_GOOD, KNOWN_GOOD, rules)


def test_good_rules_validate() -> None:
    rules = [LOGS, {"section": "*", "key": "/etc/machine-id", "fields": ["sha256"], "reason": "regenerated"}]
    assert mu.validate_rules(rules) == []


def test_the_role_defaults_rules_are_valid() -> None:
    defaults = PROJECT / "roles" / "baseline" / "defaults" / "main.yml"
    if not defaults.exists():
        pytest.skip("roles/baseline/defaults/main.yml not written yet")
    import yaml

    variables = yaml.safe_load(defaults.read_text())
    lists = {name: value for name, value in variables.items() if "noise_rules" in name}
    assert lists.get("baseline_noise_rules"), "the role declares no noise rules"
    for name, rules in lists.items():
        assert mu.validate_rules(rules) == [], name


def test_a_yaml_comma_slip_is_explained() -> None:
    import yaml

    rules = yaml.safe_load("- {section: files, key: /var/lib/enp/*, reason: records, manifests and the cache}")
    (problem,) = mu.validate_rules(rules)
    assert "unknown key(s) manifests and the cache" in problem and "quote the reason" in problem


def test_a_rule_without_fields_excludes_matching_keys_in_every_change() -> None:
    live = changed("files", "/var/log/syslog", {"type": "file", "mode": "0640", "uid": 0, "gid": 4, "sha256": "zz"})
    live["sections"]["files"]["/var/log/nginx/access.log.1"] = {"type": "file", "mode": "0640"}
    assert len(mu.compare(KNOWN_GOOD, live, [])) == 2
    assert mu.compare(KNOWN_GOOD, live, [LOGS]) == []  # '*' crosses '/' (fnmatch)


def test_a_rule_applies_only_to_its_section() -> None:
    live = changed("cron", "/var/log/x", "c9")
    assert [f.kind for f in mu.compare(KNOWN_GOOD, live, [LOGS])] == ["new-persistence"]
    star = {**LOGS, "section": "*"}
    assert mu.compare(KNOWN_GOOD, live, [star]) == []


def test_fields_ignore_only_those_fields_and_never_hide_additions() -> None:
    rule = {"section": "files", "key": "/etc/nginx/*", "fields": ["sha256", "size"], "reason": "templated"}
    base = KNOWN_GOOD["sections"]["files"]["/etc/nginx/nginx.conf"]
    content = changed("files", "/etc/nginx/nginx.conf", {**base, "sha256": "new", "size": 91})
    assert mu.compare(KNOWN_GOOD, content, [rule]) == []
    mode = changed("files", "/etc/nginx/nginx.conf", {**base, "sha256": "new", "mode": "0666"})
    (finding,) = mu.compare(KNOWN_GOOD, mode, [rule])
    assert (finding.kind, finding.severity) == ("permission-changed", "high")
    added = changed("files", "/etc/nginx/conf.d/evil.conf", {"type": "file", "mode": "0644"})
    assert [f.change for f in mu.compare(KNOWN_GOOD, added, [rule])] == ["added"]


def test_missing_section_is_low_unless_a_rule_waives_it() -> None:
    live = copy.deepcopy(KNOWN_GOOD)
    del live["sections"]["kernel_modules"]
    (finding,) = mu.compare(KNOWN_GOOD, live, [])
    assert (finding.kind, finding.severity, finding.section) == ("section-missing", "low", "kernel_modules")
    waiver = {"section": "kernel_modules", "key": "*", "reason": "containers cannot see /proc/modules"}
    assert mu.compare(KNOWN_GOOD, live, [waiver]) == []
    # A '*' section rule waives keys, not whole sections: a collector that stops reporting is still seen.
    assert len(mu.compare(KNOWN_GOOD, live, [{"section": "*", "key": "*", "reason": "everything"}])) == 1
    both = copy.deepcopy(live)
    assert mu.compare(live, both, []) == []  # missing in both is fine


def test_python_holds_no_path_exclusions() -> None:
    """Noise comes only from declared rules: with none, even logs and machine-id differences are findings."""
    live = copy.deepcopy(KNOWN_GOOD)
    for path in ("/var/log/syslog", "/etc/machine-id", "/var/lib/postgresql/15/main/base/1", "/etc/ssh/ssh_host_x"):
        live["sections"]["files"][path] = {"type": "file", "mode": "0600", "sha256": "new"}
    assert len(mu.compare(KNOWN_GOOD, live, [])) == 4


# ---------------------------------------------------------------------------------------------------------------
# Manifest validation and pairing


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "is not a JSON manifest"),
        (b"[]", "a manifest is a JSON object"),
        (b'{"format": "enp-baseline/2", "host": "a", "sections": {}}', "format is 'enp-baseline/2'"),
        (b'{"format": "enp-baseline/1", "sections": {}}', "missing 'host'"),
        (b'{"format": "enp-baseline/1", "host": "a", "sections": {"files": []}}', "section 'files' must be an object"),
        (b'{"format": "enp-baseline/1", "host": "a", "sections": {}, "extra": 1}', "unknown top-level keys extra"),
        (b"\xff\xfe", "is not a JSON manifest"),
    ],
)
def test_load_manifest_refuses_with_the_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(mu.ManifestError, match=r"web1\.json") as info:
        mu.load_manifest(data, source="web1.json")
    assert fragment in str(info.value)


def test_check_pair_refuses_another_hosts_baseline() -> None:
    with pytest.raises(mu.ManifestError, match="compare a host only with its own baseline"):
        mu.check_pair(KNOWN_GOOD, manifest({}, host="db1"))
    with pytest.raises(mu.ManifestError, match="restore the store"):
        mu.check_pair(KNOWN_GOOD, KNOWN_GOOD, host="web2")
    mu.check_pair(KNOWN_GOOD, KNOWN_GOOD, host="web1")


# ---------------------------------------------------------------------------------------------------------------
# Reports


def test_reports_text_json_and_summary_line() -> None:
    live = changed("suid", "/var/tmp/.bash", "4755")
    live["sections"]["packages"]["nginx:amd64"] = "1.22.1-10"
    findings = mu.compare(KNOWN_GOOD, live, [])
    report = mu.build_report(KNOWN_GOOD, live, findings, rules_count=3)
    assert json.loads(json.dumps(report)) == report
    assert report["clean"] is False and report["noise_rules"] == 3
    assert report["summary"]["by_severity"] == {"critical": 1, "high": 1, "medium": 0, "low": 0}
    assert report["summary_line"] == "web1: 2 findings (critical 1, high 1) - package-changed 1, suid-added 1"
    assert mu.findings_from_report(report) == findings
    text = mu.render_text("web1", findings)
    assert text[0] == report["summary_line"]
    assert text.index("  CRITICAL (1)") < text.index("  HIGH (1)")
    assert any("suid-added" in line and "/var/tmp/.bash" in line for line in text)
    assert any(line.strip().startswith("suid-added: treat as privilege escalation") for line in text)


def test_clean_report() -> None:
    report = mu.build_report(KNOWN_GOOD, KNOWN_GOOD, [])
    assert report["clean"] is True and report["summary_line"] == "web1: clean (0 findings)"
    assert mu.render_text("web1", []) == ["web1: clean (0 findings)"]


# ---------------------------------------------------------------------------------------------------------------
# Signatures (real ssh-keygen)


def make_key(directory: Path, name: str = "signing_key") -> tuple[Path, Path]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(key)], check=True)
    signers = directory / f"{name}.allowed"
    signers.write_text(mu.allowed_signers_line((directory / f"{name}.pub").read_text()))
    return key, signers


def store_manifest(directory: Path, key: Path, m: dict[str, Any] | None = None) -> Path:
    path = directory / "web1.json"
    data = mu.canonical_bytes(m or KNOWN_GOOD)
    path.write_bytes(data)
    (directory / "web1.json.sig").write_bytes(mu.sign_bytes(data, str(key)))
    return path


@needs_ssh_keygen
def test_signed_manifest_verifies_and_loads(tmp_path: Path) -> None:
    key, signers = make_key(tmp_path)
    path = store_manifest(tmp_path, key)
    loaded, confirmation = mu.read_signed_manifest(str(path), str(signers))
    assert loaded == KNOWN_GOOD
    assert 'Good "enp-baseline" signature' in confirmation


@needs_ssh_keygen
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes().replace(b'"4755"', b'"0755"')), id="one value edited"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes() + b" "), id="one byte appended"),
        pytest.param(lambda p: p.with_name("web1.json.sig").write_text("junk\n"), id="signature garbage"),
    ],
)
def test_tampered_manifest_is_refused(tmp_path: Path, tamper: Any) -> None:
    key, signers = make_key(tmp_path)
    path = store_manifest(tmp_path, key)
    tamper(path)
    with pytest.raises(mu.SignatureError, match=r"does not verify.*restore the baseline store from the mirror"):
        mu.read_signed_manifest(str(path), str(signers))


@needs_ssh_keygen
def test_unsigned_manifest_is_refused(tmp_path: Path) -> None:
    key, signers = make_key(tmp_path)
    path = store_manifest(tmp_path, key)
    path.with_name("web1.json.sig").unlink()
    with pytest.raises(mu.SignatureError, match="has no signature"):
        mu.read_signed_manifest(str(path), str(signers))


@needs_ssh_keygen
def test_signature_by_another_key_or_namespace_is_refused(tmp_path: Path) -> None:
    key, signers = make_key(tmp_path)
    other, _ = make_key(tmp_path, "other")
    path = store_manifest(tmp_path, other)
    with pytest.raises(mu.SignatureError, match="does not verify"):
        mu.read_signed_manifest(str(path), str(signers))
    # a valid signature made for git (another namespace) by the right key is not a baseline signature
    proc = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(key)], input=path.read_bytes(), capture_output=True
    )
    path.with_name("web1.json.sig").write_bytes(proc.stdout)
    with pytest.raises(mu.SignatureError, match="does not verify"):
        mu.read_signed_manifest(str(path), str(signers))


@needs_ssh_keygen
def test_missing_allowed_signers_says_what_it_is(tmp_path: Path) -> None:
    key, _ = make_key(tmp_path)
    path = store_manifest(tmp_path, key)
    with pytest.raises(mu.SignatureError, match="holds the public half"):
        mu.read_signed_manifest(str(path), str(tmp_path / "nope"))


def test_allowed_signers_line() -> None:
    line = mu.allowed_signers_line("ssh-ed25519 AAAAC3Nz comment here\n")
    assert line == 'enp-baseline namespaces="enp-baseline" ssh-ed25519 AAAAC3Nz\n'
    with pytest.raises(mu.SignatureError):
        mu.allowed_signers_line("garbage")


# ---------------------------------------------------------------------------------------------------------------
# enp.baseline (controller helpers)


def lab_paths(tmp_path: Path) -> enp_baseline.BaselinePaths:
    return enp_baseline.resolve_paths(
        tmp_path, tmp_path / "inventories" / "lab", environ={"ENP_LAB_DIR": str(tmp_path / "lab")}
    )


def test_lab_paths_default_under_the_lab_dir(tmp_path: Path) -> None:
    paths = lab_paths(tmp_path)
    assert paths.lab
    assert paths.signing_key == tmp_path / "lab" / "baseline" / "signing_key"
    assert paths.allowed_signers == tmp_path / "lab" / "baseline" / "allowed_signers"
    assert paths.store == tmp_path / "lab" / "baseline" / "store"
    assert set(paths.extravars()) == {
        "enp_baseline_store",
        "enp_baseline_signing_key",
        "enp_baseline_allowed_signers",
        "enp_baseline_report_dir",
    }


def test_production_inventory_needs_an_explicit_key_and_never_creates_one(tmp_path: Path) -> None:
    production = tmp_path / "inventories" / "production"
    with pytest.raises(enp_baseline.BaselineRefusal, match=r"--signing-key PATH .* and --store DIR"):
        enp_baseline.resolve_paths(tmp_path, production, environ={})
    with pytest.raises(enp_baseline.BaselineRefusal, match="name --allowed-signers PATH and --store DIR"):
        enp_baseline.resolve_paths(tmp_path, production, need_key=False, environ={})
    verify_only = enp_baseline.resolve_paths(
        tmp_path, production, store=tmp_path / "s", allowed_signers=tmp_path / "as", need_key=False, environ={}
    )
    assert verify_only.allowed_signers == tmp_path / "as" and not verify_only.lab
    paths = enp_baseline.resolve_paths(
        tmp_path, production, store=tmp_path / "s", signing_key=tmp_path / "k", environ={}
    )
    assert paths.allowed_signers == tmp_path / "allowed_signers"
    assert not paths.lab
    with pytest.raises(enp_baseline.BaselineRefusal, match=r"never creates a production key.*ssh-keygen -t ed25519"):
        enp_baseline.ensure_signing_key(paths)
    assert not (tmp_path / "k").exists()


@needs_ssh_keygen
def test_lab_key_is_created_once_and_signs_the_store(tmp_path: Path) -> None:
    paths = lab_paths(tmp_path)
    assert len(enp_baseline.ensure_signing_key(paths)) == 2
    assert enp_baseline.ensure_signing_key(paths) == []
    assert (paths.signing_key.stat().st_mode & 0o777) == 0o600
    paths.store.mkdir(parents=True)
    # a pretty-printed manifest (e.g. captured from a forensic image by hand) is stored canonically when signed
    (paths.store / "web1.json").write_text(json.dumps(KNOWN_GOOD, indent=2))
    assert enp_baseline.stored_hosts(paths) == ["web1"]
    assert enp_baseline.check_stored(paths, "web1")[0] is False  # unsigned
    assert "Good" in enp_baseline.sign_manifest(paths, "web1")
    assert (paths.store / "web1.json").read_bytes() == mu.canonical_bytes(KNOWN_GOOD)
    assert enp_baseline.check_stored(paths, "web1")[0] is True


@needs_ssh_keygen
def test_sign_refuses_to_bless_a_tampered_manifest(tmp_path: Path) -> None:
    paths = lab_paths(tmp_path)
    enp_baseline.ensure_signing_key(paths)
    paths.store.mkdir(parents=True)
    (paths.store / "web1.json").write_bytes(mu.canonical_bytes(KNOWN_GOOD))
    enp_baseline.sign_manifest(paths, "web1")
    tampered = copy.deepcopy(KNOWN_GOOD)
    tampered["sections"]["authorized_keys"]["/root/.ssh/authorized_keys"] = ["ssh-rsa SHA256:ev x@y"]
    (paths.store / "web1.json").write_bytes(mu.canonical_bytes(tampered))
    ok, detail = enp_baseline.check_stored(paths, "web1")
    assert not ok and "does not verify" in detail
    with pytest.raises(enp_baseline.BaselineRefusal, match="will not re-sign"):
        enp_baseline.sign_manifest(paths, "web1")
    enp_baseline.sign_manifest(paths, "web1", force=True)
    assert enp_baseline.check_stored(paths, "web1")[0]


@needs_ssh_keygen
def test_swapped_manifest_is_refused(tmp_path: Path) -> None:
    paths = lab_paths(tmp_path)
    enp_baseline.ensure_signing_key(paths)
    paths.store.mkdir(parents=True)
    (paths.store / "web2.json").write_bytes(mu.canonical_bytes(KNOWN_GOOD))  # web1's manifest under web2's name
    with pytest.raises(enp_baseline.BaselineRefusal, match="not 'web2'"):
        enp_baseline.sign_manifest(paths, "web2", force=True)


# ---------------------------------------------------------------------------------------------------------------
# The module, through ansible on localhost (exactly what the verify playbook runs)


def run_compare_module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
         "-m", "enp_baseline_compare", "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        },
        check=False,
    )  # fmt: skip
    try:
        return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        pytest.fail(f"ansible did not run the module: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")


@needs_ssh_keygen
def test_module_verifies_compares_and_writes_the_report(tmp_path: Path) -> None:
    key, signers = make_key(tmp_path)
    baseline = store_manifest(tmp_path, key)
    live = tmp_path / "live.json"
    tampered = changed("cron", "/etc/cron.d/updater", "x1")
    live.write_text(json.dumps(tampered))
    report = tmp_path / "reports" / "web1.json"
    rules = [LOGS]
    out = run_compare_module(
        tmp_path,
        baseline_path=str(baseline),
        live_path=str(live),
        allowed_signers=str(signers),
        host="web1",
        rules=rules,
        report_path=str(report),
    )
    assert out["changed"] is True and out["clean"] is False
    assert [f["kind"] for f in out["findings"]] == ["new-persistence"]
    assert json.loads(report.read_text())["summary_line"] == out["summary_line"]
    again = run_compare_module(
        tmp_path, baseline_path=str(baseline), live_path=str(live), allowed_signers=str(signers), host="web1",
        rules=rules, report_path=str(report),
    )  # fmt: skip
    assert again["changed"] is False
    # tampered baseline: refused, nothing compared
    baseline.write_bytes(baseline.read_bytes().replace(b"nginx", b"nginy"))
    refused = run_compare_module(
        tmp_path, baseline_path=str(baseline), live_path=str(live), allowed_signers=str(signers), host="web1"
    )
    assert refused["failed"] and refused["refused"] and "does not verify" in refused["msg"]


# ---------------------------------------------------------------------------------------------------------------
# The CLI (runner faked)


def run_result(stats: dict[str, dict[str, int]], failures: list[HostFailure] | None = None) -> RunResult:
    ok = not failures
    return RunResult(
        status="successful" if ok else "failed",
        rc=0 if ok else 2,
        stats=stats,
        artifact_dir=Path("/tmp/run"),
        failures=failures or [],
        set_stats={},
        duration=3.0,
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "inventories" / "lab").mkdir(parents=True)
    (tmp_path / "inventories" / "lab" / "hosts.yml").write_text("all: {}\n")
    monkeypatch.setenv("ENP_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("ENP_LAB_DIR", str(tmp_path / ".lab"))
    monkeypatch.delenv("ENP_BASELINE_SIGNING_KEY", raising=False)
    return tmp_path


def fake_verify(monkeypatch: pytest.MonkeyPatch, reports: dict[str, dict | None], failures: list[HostFailure]) -> list:
    calls: list[dict[str, Any]] = []

    def run(playbook: str, **kwargs: Any) -> RunResult:
        calls.append({"playbook": playbook, **kwargs})
        report_dir = Path(kwargs["extravars"]["enp_baseline_report_dir"])
        report_dir.mkdir(parents=True)
        for host, report in reports.items():
            if report is not None:
                (report_dir / f"{host}.json").write_text(json.dumps(report))
        return run_result({"processed": dict.fromkeys(reports, 1)}, failures)

    monkeypatch.setattr(runner, "run_playbook", run)
    return calls


def test_cli_verify_clean_is_0(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    calls = fake_verify(monkeypatch, {"web1": mu.build_report(KNOWN_GOOD, KNOWN_GOOD, [])}, [])
    assert cli.main(["baseline", "verify", "--hosts", "web"]) == ExitCode.OK
    assert calls[0]["playbook"] == "playbooks/baseline_verify.yml"
    extravars = calls[0]["extravars"]
    assert extravars["enp_baseline_store"] == str(project / ".lab" / "baseline" / "store")
    assert extravars["enp_baseline_hosts"] == "web" and extravars["enp_baseline_fail_on_findings"] is False
    assert Path(extravars["enp_baseline_report_dir"]).parent == project / ".lab" / "baseline" / "reports"
    out = capsys.readouterr().out
    assert "1 of 1 hosts clean" in out and "web1: clean (0 findings)" in out


def test_cli_verify_findings_are_1_with_json(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    live = changed("suid", "/var/tmp/.bash", "4755")
    report = mu.build_report(KNOWN_GOOD, live, mu.compare(KNOWN_GOOD, live, []))
    fake_verify(monkeypatch, {"web1": report, "web2": mu.build_report(KNOWN_GOOD, KNOWN_GOOD, [])}, [])
    assert cli.main(["baseline", "verify", "--json"]) == ExitCode.FAILED
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 1 and doc["summary"]["by_kind"] == {"suid-added": 1}
    assert doc["summary"]["hosts_clean"] == 1 and doc["reports"]["web1"]["findings"][0]["key"] == "/var/tmp/.bash"
    assert cli.main(["baseline", "verify", "--summary"]) == ExitCode.FAILED
    out = capsys.readouterr().out.splitlines()
    assert "web1: 1 finding (critical 1) - suid-added 1" in out


def test_cli_verify_refused_baseline_is_2(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    failure = HostFailure("web1", "Compare", "refused to verify web1 against its baseline: ... does not verify ...")
    fake_verify(monkeypatch, {"web1": None}, [failure])
    assert cli.main(["baseline", "verify"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert "1 baseline(s) REFUSED" in captured.out and "web1: REFUSED: ... does not verify" in captured.out
    assert "FAILED after" not in captured.err  # a refusal is explained above, not reported as a broken run
    assert cli.main(["baseline", "verify", "--json"]) == ExitCode.USAGE
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 2 and doc["summary"]["hosts_refused"] == ["web1"]


def test_cli_production_without_key_is_refused(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "inventories" / "production").mkdir()
    assert cli.main(["baseline", "capture", "-i", "inventories/production"]) == ExitCode.USAGE
    assert "--signing-key" in capsys.readouterr().err


@needs_ssh_keygen
def test_cli_capture_creates_the_lab_key_and_checks_the_store(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def run(playbook: str, **kwargs: Any) -> RunResult:
        extravars = kwargs["extravars"]
        assert playbook == "playbooks/baseline_capture.yml"
        assert extravars["enp_baseline_replace"] is True and "enp_baseline_hosts" not in extravars
        store = Path(extravars["enp_baseline_store"])
        store.mkdir(parents=True, exist_ok=True)
        for host in ("web1", "web2"):
            data = mu.canonical_bytes(manifest({}, host))
            (store / f"{host}.json").write_bytes(data)
            if host == "web1":  # web2 is left unsigned: capture must say so
                (store / f"{host}.json.sig").write_bytes(mu.sign_bytes(data, extravars["enp_baseline_signing_key"]))
        return run_result({"processed": {"web1": 1, "web2": 1}})

    monkeypatch.setattr(runner, "run_playbook", run)
    assert cli.main(["baseline", "capture", "--replace"]) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "created the lab baseline signing key" in captured.err
    rows = {line.split()[0]: line.split()[1] for line in captured.out.splitlines() if line.startswith("web")}
    assert rows == {"web1": "good", "web2": "BAD"}
    assert "web2.json has no signature" in captured.out
    assert cli.main(["baseline", "sign", "web2"]) == ExitCode.OK
    assert enp_baseline.check_stored(lab_paths_for(project), "web2")[0]


def lab_paths_for(project: Path) -> enp_baseline.BaselinePaths:
    return enp_baseline.resolve_paths(
        project, project / "inventories" / "lab", environ={"ENP_LAB_DIR": str(project / ".lab")}
    )


def test_cli_sign_with_an_empty_store_is_usage(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["baseline", "sign"]) == ExitCode.USAGE
    assert "run enp baseline capture first" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["baseline"], ["baseline", "sideways"], ["baseline", "verify", "--force"]])
def test_cli_baseline_usage_errors(argv: list[str]) -> None:
    assert cli.main(argv) == ExitCode.USAGE


def test_cli_verify_failing_on_findings_is_a_finding_not_a_broken_run(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    live = changed("cron", "/etc/cron.d/updater", "x1")
    report = mu.build_report(KNOWN_GOOD, live, mu.compare(KNOWN_GOOD, live, []))
    failure = HostFailure("web1", "Compare with the signed baseline", report["summary_line"])
    fake_verify(monkeypatch, {"web1": report}, [failure])
    assert cli.main(["baseline", "verify"]) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "CRITICAL (1)" in captured.out and "FAILED after" not in captured.err
    broken = HostFailure("web2", "Capture the live manifest", "Permission denied")
    fake_verify(monkeypatch, {"web1": report, "web2": None}, [failure, broken])
    assert cli.main(["baseline", "verify"]) == ExitCode.FAILED
    assert "Permission denied" in capsys.readouterr().err


def test_a_host_that_now_says_it_is_a_container_is_a_critical_finding() -> None:
    """Faking /.dockerenv would switch on the container noise rules (kernel modules ignored)."""
    live = copy.deepcopy(KNOWN_GOOD)
    baseline = copy.deepcopy(KNOWN_GOOD)
    baseline["stats"]["container"] = "none"
    live["stats"]["container"] = "docker"
    findings = mu.compare(baseline, live, [])
    assert [(f.kind, f.severity, f.key) for f in findings] == [("environment-changed", "critical", "container")]
    live["stats"]["container"] = "none"
    assert mu.compare(baseline, live, []) == []


def test_drift_rows_for_the_recovery_report() -> None:
    finding = {
        "kind": "cron-added",
        "severity": "critical",
        "section": "cron",
        "key": "/etc/cron.d/sys-update",
        "change": "added",
        "before": None,
        "after": "* * * * * root curl",
        "reason": "new scheduled job",
    }
    rows = mu.drift_rows([{"host": "app1", "findings": [finding]}, {"host": "web1", "findings": []}])
    assert rows == [
        {
            "host": "app1",
            "path": "/etc/cron.d/sys-update",
            "kind": "cron-added",
            "detail": "added in cron: new scheduled job",
            "severity": "critical",
        }
    ]
    assert mu.drift_rows([]) == []
