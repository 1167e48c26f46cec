"""Controls as data (plugins/module_utils/enp_controls.py): catalogue validation and live-state decisions."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest
import yaml
from ansible.module_utils.enp_controls import (
    ControlError,
    detect_container,
    evaluate,
    hardening_scores,
    not_applicable_items,
    parse_sshd_t,
    same_report,
    summarise,
    unknown_ids,
    validate_catalogue,
)

PROJECT = pathlib.Path(__file__).resolve().parents[2]


def fake_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


class FakeProbe:
    def __init__(self, **data: object) -> None:
        self.data = data

    def sysctl(self, key: str) -> str | None:
        return self.data.get("sysctl", {}).get(key)

    def lstat(self, path: str) -> os.stat_result | None:
        return self.data.get("files", {}).get(path)

    def owner_names(self, st: os.stat_result) -> tuple[str, str]:
        names = {0: "root", 42: "shadow", 1000: "civic"}
        return names[st.st_uid], names[st.st_gid]

    def read_text(self, path: str) -> str | None:
        return self.data.get("texts", {}).get(path)

    def sshd_options(self) -> dict[str, list[str]] | str:
        return self.data.get("sshd", "sshd: no hostkeys available -- exiting.")

    def systemctl(self, verb: str, unit: str) -> str:
        return self.data.get("systemctl", {}).get((verb, unit), "unknown")

    def package_installed(self, name: str) -> bool:
        return name in self.data.get("packages", ())

    def run(self, argv: list[str]) -> tuple[int, str]:
        return self.data.get("commands", {}).get(tuple(argv), (127, f"{argv[0]}: command not found"))


def control(check: dict, **extra: object) -> dict:
    base = {"id": "OS-001", "title": "t", "cis": "1.1", "gov": ["G1"], "tags": ["x"], "container": "applies"}
    return dict(base, check=check, **extra)


PROBE = FakeProbe(
    sysctl={"net.ipv4.conf.all.rp_filter": "1\n", "kernel.randomize_va_space": "2"},
    files={
        "/etc/shadow": fake_stat(0o640, 0, 42),
        "/etc/passwd": fake_stat(0o644),
        "/etc/crontab": fake_stat(0o644, 1000, 0),
    },
    texts={"/etc/login.defs": "PASS_MAX_DAYS\t365\nUMASK\t\t027\n", "/etc/issue.net": "Authorised use only.\n"},
    sshd={
        "permitrootlogin": ["prohibit-password"],
        "ciphers": ["chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"],
        "hostkey": ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"],
    },
    systemctl={
        ("is-active", "auditd"): "active",
        ("is-enabled", "auditd"): "enabled",
        ("is-active", "rsync"): "inactive",
    },
    packages={"aide", "auditd"},
    commands={("nft", "list", "ruleset"): (0, "table inet enp_filter {\n chain input { policy drop; }\n}")},
)

CASES = [
    ({"kind": "sysctl", "key": "net.ipv4.conf.all.rp_filter", "expect": 1}, "pass"),
    ({"kind": "sysctl", "key": "net.ipv4.conf.all.rp_filter", "expect": 2}, "fail"),
    ({"kind": "sysctl", "key": "net.ipv4.no_such_key", "expect": 0}, "fail"),
    ({"kind": "sysctl", "values": {"net.ipv4.conf.all.rp_filter": 1, "kernel.randomize_va_space": 2}}, "pass"),
    ({"kind": "sysctl", "values": {"net.ipv4.conf.all.rp_filter": 1, "kernel.randomize_va_space": 1}}, "fail"),
    ({"kind": "file_mode", "path": "/etc/shadow", "mode": "0640", "owner": "root", "group": "shadow"}, "pass"),
    ({"kind": "file_mode", "path": "/etc/shadow", "mode": "0600"}, "fail"),
    ({"kind": "file_mode", "path": "/etc/crontab", "mode": "0600", "owner": "root"}, "fail"),
    ({"kind": "file_mode", "path": "/etc/gshadow", "mode": "0640"}, "fail"),
    ({"kind": "file_absent", "path": "/etc/hosts.equiv"}, "pass"),
    ({"kind": "file_absent", "path": "/etc/passwd"}, "fail"),
    ({"kind": "file_regex", "path": "/etc/login.defs", "regex": r"^UMASK\s+027$"}, "pass"),
    ({"kind": "file_regex", "path": "/etc/login.defs", "regex": r"^PASS_MAX_DAYS\s+(9\d|[1-8]?\d)$"}, "fail"),
    ({"kind": "file_regex", "path": "/etc/issue.net", "regex": r"\\[mrsv]", "present": False}, "pass"),
    ({"kind": "file_regex", "path": "/etc/motd", "regex": "x", "present": False}, "pass"),
    ({"kind": "file_regex", "path": "/etc/motd", "regex": "x"}, "fail"),
    ({"kind": "sshd_option", "name": "PermitRootLogin", "expect": "prohibit-password"}, "pass"),
    ({"kind": "sshd_option", "name": "permitrootlogin", "expect_any": ["no", "prohibit-password"]}, "pass"),
    ({"kind": "sshd_option", "name": "permitrootlogin", "expect": "no"}, "fail"),
    ({"kind": "sshd_option", "name": "ciphers", "expect_not": ["aes128-cbc", "3des-cbc"]}, "pass"),
    ({"kind": "sshd_option", "name": "ciphers", "expect_not": ["aes256-gcm@openssh.com"]}, "fail"),
    ({"kind": "sshd_option", "name": "ciphers", "contains": ["chacha20-poly1305@openssh.com"]}, "pass"),
    ({"kind": "sshd_option", "name": "macs", "contains": ["hmac-sha2-512-etm@openssh.com"]}, "fail"),
    ({"kind": "service", "name": "auditd", "active": True, "enabled": True}, "pass"),
    ({"kind": "service", "name": "rsync", "active": False}, "pass"),
    ({"kind": "service", "name": "rsync", "active": True}, "fail"),
    ({"kind": "package", "name": "aide", "installed": True}, "pass"),
    ({"kind": "package", "name": "telnet", "installed": False}, "pass"),
    ({"kind": "package", "name": "auditd", "installed": False}, "fail"),
    ({"kind": "command", "argv": ["nft", "list", "ruleset"], "stdout_regex": "policy drop"}, "pass"),
    ({"kind": "command", "argv": ["nft", "list", "ruleset"], "stdout_regex": "policy accept"}, "fail"),
    ({"kind": "command", "argv": ["aide", "--check"]}, "fail"),
]


@pytest.mark.parametrize(("check", "status"), CASES, ids=[f"{c['kind']}-{i}" for i, (c, _) in enumerate(CASES)])
def test_each_check_kind_decides_from_the_live_state(check: dict, status: str) -> None:
    result = evaluate(control(check), PROBE, "none", set())
    assert result["status"] == status, result
    assert result["evidence"]


def test_sshd_failure_is_a_failed_control_with_the_reason() -> None:
    result = evaluate(control({"kind": "sshd_option", "name": "x", "expect": "y"}), FakeProbe(), "none", set())
    assert result["status"] == "fail"
    assert "no hostkeys" in result["evidence"]


def test_not_applicable_only_in_a_container_and_always_with_the_reason() -> None:
    entry = control(
        {"kind": "sysctl", "key": "kernel.randomize_va_space", "expect": 2},
        container="not_applicable",
        reason="kernel.* belongs to the host kernel",
    )
    in_container = evaluate(entry, PROBE, "systemd-nspawn", set())
    assert in_container["status"] == "not_applicable"
    assert "systemd-nspawn" in in_container["evidence"] and "host kernel" in in_container["evidence"]
    assert evaluate(entry, PROBE, "none", set())["status"] == "pass"


def test_disabled_wins_and_says_who_turned_it_off() -> None:
    result = evaluate(control({"kind": "package", "name": "telnet", "installed": True}), PROBE, "none", {"OS-001"})
    assert result["status"] == "disabled"
    assert "inventory" in result["evidence"]


def test_validate_catalogue_names_every_problem() -> None:
    bad = [
        {"id": "os-1", "title": "t"},
        control({"kind": "sysctl", "key": "a"}),
        control({"kind": "teleport"}),
        control({"kind": "file_absent", "path": "/x"}, container="not_applicable"),
    ]
    problems = "\n".join(validate_catalogue(bad))
    assert "os-1: id must look like" in problems
    assert "missing 'check'" in problems
    assert "check 'sysctl' needs 'key' and 'expect', or 'values'" in problems
    assert "check kind 'teleport' unknown" in problems
    assert "needs a 'reason'" in problems
    assert "id used twice" in problems


def test_unknown_toggle_ids_are_reported_sorted() -> None:
    catalogue = [control({"kind": "file_absent", "path": "/x"})]
    assert unknown_ids(["OS-001", "OS-01", "SSH-004"], catalogue) == ["OS-01", "SSH-004"]
    assert unknown_ids([], catalogue) == []


def test_summary_counts_every_status() -> None:
    results = [{"status": s} for s in ("pass", "pass", "fail", "not_applicable")]
    assert summarise(results) == {"pass": 2, "fail": 1, "not_applicable": 1, "disabled": 0}


def test_parse_sshd_t_keeps_repeated_keywords() -> None:
    parsed = parse_sshd_t("port 22\nhostkey /a\nhostkey /b\nciphers a,b\n\n")
    assert parsed == {"port": ["22"], "hostkey": ["/a", "/b"], "ciphers": ["a,b"]}


def test_same_report_ignores_only_the_timestamp() -> None:
    old = {"generated_at": "2026-01-01", "summary": {"pass": 1}}
    assert same_report(old, {"generated_at": "2026-11-23", "summary": {"pass": 1}})
    assert not same_report(old, {"generated_at": "2026-01-01", "summary": {"pass": 2}})
    assert not same_report(None, old)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [((0, "systemd-nspawn\n"), "systemd-nspawn"), ((1, "none\n"), "none"), ((0, "lxc"), "lxc")],
)
def test_detect_container(answer: tuple[int, str], expected: str) -> None:
    probe = FakeProbe(commands={("systemd-detect-virt", "--container"): answer})
    assert detect_container(probe) == expected


def test_detect_container_refuses_to_guess_without_the_tool() -> None:
    with pytest.raises(ControlError, match="systemd-detect-virt is missing"):
        detect_container(FakeProbe())


CATALOGUES = sorted(PROJECT.glob("roles/*/vars/controls.yml"))


@pytest.mark.parametrize("path", CATALOGUES, ids=[p.parts[-3] for p in CATALOGUES])
def test_every_role_catalogue_is_valid(path: pathlib.Path) -> None:
    data = yaml.safe_load(path.read_text())
    (name,) = data
    assert name == f"__{path.parts[-3]}_controls"
    assert validate_catalogue(data[name]) == []


def test_control_ids_are_unique_across_roles() -> None:
    ids = [c["id"] for p in CATALOGUES for c in next(iter(yaml.safe_load(p.read_text()).values()))]
    assert len(ids) == len(set(ids))


def test_merge_records_totals_failures_and_reasons_across_hosts() -> None:
    from ansible.module_utils.enp_controls import merge_records, summary_lines

    na = {"id": "OS-050", "title": "auditd", "status": "not_applicable", "evidence": "host kernel"}
    records = [
        {"host": "web1", "role": "os_hardening", "container": "systemd-nspawn",
         "summary": {"pass": 1, "fail": 1, "not_applicable": 1, "disabled": 0},
         "controls": [{"id": "OS-001", "status": "pass", "evidence": "ok"},
                      {"id": "OS-035", "status": "fail", "evidence": "/usr/bin/evil"}, na]},
        {"host": "app1", "role": "os_hardening", "container": "systemd-nspawn",
         "summary": {"pass": 0, "fail": 0, "not_applicable": 1, "disabled": 1},
         "controls": [na, {"id": "OS-001", "status": "disabled", "evidence": "inventory"}]},
    ]  # fmt: skip
    report = merge_records(records)
    assert report["totals"] == {"pass": 1, "fail": 1, "not_applicable": 2, "disabled": 1}
    assert report["failed"] == [{"host": "web1", "id": "OS-035", "evidence": "/usr/bin/evil"}]
    assert report["not_applicable"] == [
        {"id": "OS-050", "title": "auditd", "reason": "host kernel", "hosts": ["app1", "web1"]}
    ]
    lines = summary_lines(report)
    assert lines[0].startswith("app1: 0 pass, 0 fail, 1 not applicable here, 1 disabled")
    assert lines[-1] == "FAILED web1 OS-035: /usr/bin/evil"


def test_hardening_scores_count_only_applicable_controls() -> None:
    def controls(*statuses: str) -> dict:
        return {"controls": [{"id": f"X-{i}", "status": s} for i, s in enumerate(statuses)]}

    report = {
        "hosts": {
            "web1": {"roles": {"os_hardening": controls("pass", "pass", "fail", "not_applicable")}},
            "db1": {"roles": {"os_hardening": controls("pass"), "ssh_hardening": controls("pass", "disabled")}},
            "gw1": {"roles": {"os_hardening": controls("not_applicable")}},
        },
        "not_applicable": [
            {"id": "OS-038", "title": "SUID core dumps", "hosts": ["web1", "db1"], "reason": "host kernel"},
            {"id": "OS-040", "title": "Modules", "hosts": ["gw1"], "reason": "no modules in a container"},
        ],
    }
    assert hardening_scores(report) == {"db1": 100.0, "web1": 66.7}
    assert not_applicable_items(report) == [
        {"what": "OS-038 SUID core dumps (2 hosts)", "why": "host kernel"},
        {"what": "OS-040 Modules (gw1)", "why": "no modules in a container"},
    ]
    assert hardening_scores({}) == {} and not_applicable_items({}) == []
