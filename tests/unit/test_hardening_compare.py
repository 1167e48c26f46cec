"""bench/hardening_compare: parsers (Lynis, oscap, ansible-playbook, systemctl), the table, the variants' playbooks
and overrides, and the benchmark's own inventory. No lab, no root."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest
import yaml
from ansible.module_utils.enp_lab import plan_lab

PROJECT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "bench"))

from hardening_compare import cli, lab, parsing, report, variants  # noqa: E402 - bench/ is not a package

LYNIS_REPORT = """\
# Lynis Report
report_version_major=1
report_datetime_start=2026-11-23 22:54:04
lynis_version=3.0.8
tests_executed=HRDN-7231|HRDN-7230|KRNL-6000|
tests_skipped=AUTH-9252|
warning[]=AUTH-9229|Password hashing methods vs. configured methods not equal|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxAuthTries (set 6 to 3)|-|
suggestion[]=DEB-0280|Install libpam-tmpdir to set $TMP and $TMPDIR for PAM sessions|-|-|
report_datetime_end=2026-11-23 22:54:25
hardening_index=58
"""


def test_lynis_report_counts_lines_per_kind_and_keeps_ids() -> None:
    parsed = parsing.parse_lynis_report(LYNIS_REPORT)
    assert parsed.hardening_index == 58 and parsed.lynis_version == "3.0.8"
    assert len(parsed.warnings) == 1 and len(parsed.suggestions) == 3
    assert parsed.warnings[0] == ("AUTH-9229", "Password hashing methods vs. configured methods not equal")
    assert parsed.ids("suggestions") == {"SSH-7408": 2, "DEB-0280": 1}
    assert parsed.tests_executed == 3 and parsed.tests_skipped == 1
    assert parsed.complete


@pytest.mark.parametrize(
    ("text", "complete", "index"),
    [
        ("", False, None),
        ("report_datetime_start=x\nlynis_version=3.0.8\n", False, None),  # Lynis died before the end
        ("hardening_index=\nreport_datetime_end=x\n", False, None),
        ("hardening_index=74\nreport_datetime_end=x\n", True, 74),
        ("# hardening_index=99\nhardening_index=12\nreport_datetime_end=x\n", True, 12),
    ],
)
def test_lynis_report_is_complete_only_with_an_index_and_an_end(text: str, complete: bool, index: int | None) -> None:
    parsed = parsing.parse_lynis_report(text)
    assert parsed.complete is complete and parsed.hardening_index == index


def test_oscap_results_are_counted() -> None:
    out = "Title\tA\nRule\tx\nResult\tpass\n\nTitle\tB\nResult\tfail\nTitle\tC\nResult\tpass\nResultless line\n"
    assert parsing.parse_oscap_results(out) == {"pass": 2, "fail": 1}


FATAL_LOG = """\
TASK [deb12_cis : 2.4.1.1 | PATCH | Ensure cron daemon is enabled and active] ***
skipping: [bh-lockdown]

TASK [deb12_cis : 2.4.1.2 | PATCH | Ensure permissions on /etc/crontab are configured] ***
Monday 23 November 2026  23:02:05 +0000 (0:00:00.055)       0:00:36.655 *******
[ERROR]: Task failed: Module failed: file (/etc/crontab) is absent, cannot continue
Origin: /work/anchors/DEBIAN12-CIS/tasks/section_2/cis_2.4.1.x.yml:21:3

fatal: [bh-lockdown]: FAILED! =>
    changed: false
    msg: file (/etc/crontab) is absent, cannot continue
    path: /etc/crontab

PLAY RECAP *********************************************************************
bh-lockdown                : ok=69   changed=7    unreachable=0    failed=1    skipped=204  rescued=0    ignored=0
"""

ITEM_LOG = """\
TASK [devsec.hardening.os_hardening : Change various sysctl-settings] ***
failed: [bh-devsec] (item={'key': 'fs.protected_fifos', 'value': 1}) =>
    ansible_loop_var: item
    msg: |-
        setting fs.protected_fifos failed: sysctl: permission denied on key "fs.protected_fifos"
"""

HANDLER_LOG = """\
TASK [devsec.hardening.ssh_hardening : Enable or disable sshd service] ***
ok: [bh-devsec]

RUNNING HANDLER [devsec.hardening.os_hardening : Restart auditd via systemd] ***
fatal: [bh-devsec]: FAILED! =>
    changed: false
    msg: |-
        Unable to start service auditd.service: Job for auditd.service failed.
        See "systemctl status auditd.service" for details.
"""

IGNORED_LOG = """\
TASK [probe something] ***
fatal: [h1]: FAILED! =>
    msg: expected, ignored
...ignoring

TASK [really break] ***
fatal: [h1]: FAILED! =>
    msg: 'the real one'
"""


@pytest.mark.parametrize(
    ("log", "host", "task", "message", "unreachable"),
    [
        (FATAL_LOG, None, "2.4.1.2 | PATCH | Ensure permissions on /etc/crontab are configured",
         "file (/etc/crontab) is absent, cannot continue", False),
        (ITEM_LOG, "bh-devsec", "Change various sysctl-settings",
         'setting fs.protected_fifos failed: sysctl: permission denied on key "fs.protected_fifos"', False),
        (IGNORED_LOG, "h1", "really break", "the real one", False),
        ("TASK [Gathering Facts] ***\nfatal: [h2]: UNREACHABLE! =>\n    msg: 'Failed to connect'\n", None,
         "Gathering Facts", "Failed to connect", True),
        (HANDLER_LOG, "bh-devsec", "handler Restart auditd via systemd",
         "Unable to start service auditd.service: Job for auditd.service failed.", False),
        ("ERROR! the role 'deb12_cis' was not found in /tmp/roles\n", None, "(before any task)",
         "the role 'deb12_cis' was not found in /tmp/roles", False),
    ],
)  # fmt: skip
def test_first_failure(log: str, host: str | None, task: str, message: str, unreachable: bool) -> None:
    failure = parsing.first_failure(log, host)
    assert failure is not None
    assert (failure.task, failure.message, failure.unreachable) == (task, message, unreachable)


def test_first_failure_none_and_other_hosts() -> None:
    assert parsing.first_failure("TASK [x] ***\nok: [h1]\n") is None
    assert parsing.first_failure(FATAL_LOG, "bh-devsec") is None
    assert parsing.first_failure(FATAL_LOG, "bh-lockdown").short(40).endswith("...")


def test_play_recap_takes_the_last_recap() -> None:
    log = FATAL_LOG + "\nTASKS RECAP ***\nbh-lockdown : ok=1 changed=0\n"
    assert parsing.play_recap(log) == {
        "bh-lockdown": {
            "ok": 69,
            "changed": 7,
            "unreachable": 0,
            "failed": 1,
            "skipped": 204,
            "rescued": 0,
            "ignored": 0,
        }
    }


@pytest.mark.parametrize(
    ("out", "units"),
    [
        ("", []),
        ("auditd.service loaded failed failed Security Auditing Service\n", ["auditd.service"]),
        ("\u25cf a.service loaded failed failed A\n  b.socket loaded failed failed B\n", ["a.service", "b.socket"]),
        ("0 loaded units listed.\n", []),
    ],
)
def test_failed_units(out: str, units: list[str]) -> None:
    assert parsing.failed_units(out) == units


def test_probe_markers() -> None:
    out = "probe.pg_isready=0\nnoise\nprobe.psql_out=civic_app ssl=t \n"
    assert parsing.markers_in(out, "probe") == {"pg_isready": "0", "psql_out": "civic_app ssl=t"}


# ---------------------------------------------------------------- table


def measured(variant: str, index: int, failed_before: list[str], failed_after: list[str], **kw: object):  # noqa: ANN201
    result = report.VariantResult(variant=variant, label=variant, source=report.THIS_RUN, host=f"bh-{variant}")
    result.hardening_index, result.warnings, result.suggestions = index, 0, 40
    result.before = report.Health(ssh_login=True, sudo=True, failed_units=failed_before, service_ok=True)
    result.after = report.Health(ssh_login=True, sudo=True, failed_units=failed_after, service_ok=True, via="ssh+sudo")
    for key, value in kw.items():
        setattr(result, key, value)
    return result


def test_table_has_one_row_per_variant_in_order_with_sources() -> None:
    rows = [
        measured("lockdown", 59, [], [], harden_seconds=103.44),
        report.reference_row("devsec", "devsec: no --devsec PATH given; reference figure shown"),
        measured("untouched", 58, [], []),
        report.VariantResult(variant="ours", label="ours", note="ours: playbooks/harden.yml not present"),
    ]
    lines = report.render_table(rows).splitlines()
    assert lines[0].split("  ")[0] == "variant" and "wall time s" in lines[0] and "SSH still works" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["untouched", "devsec", "lockdown", "ours"]
    assert "reference, not this run  74" in lines[3]
    assert lines[4].split()[1:4] == ["this", "run", "59"] and lines[4].endswith("103.4")
    assert lines[5].split() == ["ours", "not", "run"] + ["-"] * 7
    assert "  ours: playbooks/harden.yml not present" in report.notes(rows)


def test_failed_units_cell_shows_the_change_and_notes_name_new_units() -> None:
    result = measured("devsec", 73, [], ["auditd.service"])
    assert report.row_cells(result)[7] == "1 (+1)"
    assert any("failed units: auditd.service (new: auditd.service)" in line for line in report.notes([result]))
    assert report.row_cells(measured("devsec", 73, ["a.service"], ["a.service"]))[7] == "1"


@pytest.mark.parametrize(
    ("login", "sudo", "text"),
    [(None, None, "-"), (False, False, "NO"), (True, False, "login only, sudo -n refused"), (True, True, "yes")],
)
def test_ssh_cell(login: bool | None, sudo: bool | None, text: str) -> None:
    assert report.Health(ssh_login=login, sudo=sudo).ssh_text == text


def test_unhealthy_service_and_nsenter_are_in_the_notes() -> None:
    result = measured("lockdown", 60, [], [])
    result.after = report.Health(
        ssh_login=False, ssh_error="Permission denied (publickey)", service_ok=False, service_detail="psql rc=2",
        network_ok=False, via="nsenter from the controller (SSH login refused)",
    )  # fmt: skip
    cells, text = report.row_cells(result), "\n".join(report.notes([result]))
    assert cells[5:7] == ["NO", "NO"]
    for expected in ("psql rc=2", "Permission denied", "does not answer the controller", "via nsenter"):
        assert expected in text


def test_comparisons_use_only_this_run() -> None:
    results = {
        "untouched": measured("untouched", 58, [], []),
        "devsec": report.reference_row("devsec", ""),
        "lockdown": measured("lockdown", 59, [], []),
        "ours": measured("ours", 80, [], []),
    }
    lines = cli.comparisons(results)
    assert "lockdown vs untouched (same run): +1 points (59 vs 58)" in lines
    assert "ours vs lockdown (same run): +21 points" in lines
    assert not any("devsec" in line for line in lines)


# ---------------------------------------------------------------- variants


@pytest.mark.parametrize("variant", ["devsec", "lockdown"])
def test_anchor_playbook_applies_the_roles_with_the_overrides_as_play_vars(variant: str) -> None:
    overrides = variants.overrides_for(variant)
    play = yaml.safe_load(variants.anchor_playbook(variant, overrides))[0]
    assert play["hosts"] == "estate" and play["become"] is True and play["gather_facts"] is True
    assert play["vars"] == {o.name: o.value for o in overrides}
    roles = [r["role"] for r in play["roles"]]
    assert roles == (
        ["devsec.hardening.os_hardening", "devsec.hardening.ssh_hardening"] if variant == "devsec" else ["deb12_cis"]
    )
    assert "vars" not in yaml.safe_load(variants.anchor_playbook(variant, variants.overrides_for(variant, False)))[0]


def test_overrides_are_the_anchors_own_variables_each_with_a_reason() -> None:
    for override in variants.DEVSEC_OVERRIDES + variants.LOCKDOWN_OVERRIDES:
        assert len(override.reason) > 40, override.name
    assert all(o.name.startswith("deb12cis_") for o in variants.LOCKDOWN_OVERRIDES)
    names = [o.name for o in variants.DEVSEC_OVERRIDES]
    assert names == [
        "sysctl_unsupported_entries",
        "os_auditd_enabled",
        "os_auth_pam_passwdqc_enable",
        "os_modprobe_enabled",
    ]
    # The sysctl override keeps every net.* key (writable per network namespace) and drops the rest.
    assert "reject('match', 'net[.]')" in variants.DEVSEC_OVERRIDES[0].value


def test_grouped_overrides_print_the_cron_rules_as_one_line() -> None:
    groups = variants.group_overrides(variants.LOCKDOWN_OVERRIDES)
    cron = [names for names, _, reason in groups if reason.startswith("cron")]
    assert cron == [[f"deb12cis_rule_2_4_1_{n}" for n in range(1, 8)]]
    assert len(groups) == len(variants.LOCKDOWN_OVERRIDES) - 6


def test_check_anchor_refuses_other_folders(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=re.escape("no galaxy.yml of devsec.hardening")):
        variants.check_anchor("devsec", tmp_path)
    with pytest.raises(ValueError, match=re.escape("tasks/main.yml is missing")):
        variants.check_anchor("lockdown", tmp_path)
    (tmp_path / "galaxy.yml").write_text("namespace: devsec\nname: hardening\nversion: 10.6.0\n")
    with pytest.raises(ValueError, match=re.escape("roles/os_hardening")):
        variants.check_anchor("devsec", tmp_path)
    for role in ("os_hardening", "ssh_hardening"):
        (tmp_path / "roles" / role / "tasks").mkdir(parents=True)
        (tmp_path / "roles" / role / "tasks" / "main.yml").write_text("---\n")
    anchor = variants.check_anchor("devsec", tmp_path)
    assert anchor.version == "10.6.0" and "10.6.0" in variants.label("devsec", anchor)


def test_link_anchors_builds_a_collection_path_and_a_roles_path(tmp_path: pathlib.Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    anchors = {v: variants.Anchor(v, checkout, "1", "abc", "2026-05-27") for v in ("devsec", "lockdown")}
    paths = variants.link_anchors(tmp_path / "tmp", anchors)
    assert (paths["collections"] / "ansible_collections" / "devsec" / "hardening").resolve() == checkout
    assert (paths["roles"] / "deb12_cis").resolve() == checkout
    env = lab.ansible_env(tmp_path / "state", tmp_path, paths)
    assert env["ANSIBLE_COLLECTIONS_PATH"] == str(paths["collections"])
    assert env["ANSIBLE_ROLES_PATH"].split(":") == [str(paths["roles"]), str(PROJECT / "roles")]
    assert env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] == str(tmp_path / "facts")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ours,untouched", ["untouched", "ours"]), ("devsec", ["devsec"]), (" lockdown , devsec", ["devsec", "lockdown"])],
)
def test_variants_arg(text: str, expected: list[str]) -> None:
    assert cli.variants_arg(text) == expected


@pytest.mark.parametrize("text", ["", "cis", "devsec,nope"])
def test_variants_arg_refuses(text: str) -> None:
    with pytest.raises(Exception, match="choose from"):
        cli.variants_arg(text)


def test_bad_anchor_path_is_a_usage_error_before_anything_runs(tmp_path: pathlib.Path, capsys) -> None:
    assert cli.main(["--devsec", str(tmp_path)]) == 2
    assert "no galaxy.yml of devsec.hardening" in capsys.readouterr().err


def test_app_password_ignores_the_lookup_file_salt(tmp_path: pathlib.Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "postgresql_app_password").write_text("Secret123 salt=abcdefgh\n")
    assert cli.app_password(tmp_path) == "Secret123"


# ---------------------------------------------------------------- inventory


def test_inventory_is_one_host_per_variant_in_the_benchmark_zone(tmp_path: pathlib.Path) -> None:
    addresses = lab.write_inventory(tmp_path, ["untouched", "lockdown"])
    assert addresses == {"bh-untouched": "198.18.96.11", "bh-lockdown": "198.18.96.13"}
    source = yaml.safe_load((lab.SOURCE_INVENTORY / "hosts.yml").read_text())
    hosts = source["all"]["children"]["estate"]["children"]["data"]["children"]["postgresql"]["children"]
    hosts = hosts["db_primary"]["hosts"]
    assert {hv["hc_variant"] for hv in hosts.values()} == set(variants.VARIANTS)
    assert set(hosts) == set(variants.HOSTS.values())
    zones = yaml.safe_load((lab.SOURCE_INVENTORY / "group_vars" / "all" / "zones.yml").read_text())["enp_zones"]
    assert zones["bh"]["lab_bridge"] == lab.BRIDGE and zones["bh"]["lab_controller"] == lab.SUBNET_PREFIX + "1"
    plan = plan_lab(
        [{"name": n, "zone": "bh", "address": hv["ansible_host"], "gateway_host": False} for n, hv in hosts.items()],
        zones,
    )
    assert sorted(h["name"] for h in plan["hosts"]) == sorted(hosts)
    assert all(h["interfaces"][0]["address"].startswith(lab.SUBNET_PREFIX) for h in plan["hosts"])
