"""bench/baseline: the AIDE configuration it writes, AIDE's and ansible-playbook's output, manifest statistics, the
table and the benchmark's own inventory. No lab, no root."""

from __future__ import annotations

import fnmatch
import json
import pathlib
import re
import sys

import pytest
import yaml
from ansible.module_utils.enp_lab import plan_lab

PROJECT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "bench"))

from baseline import cli, parsing  # noqa: E402 - bench/ is not a package

AIDE_INIT = """\
Start timestamp: 2026-12-06 04:43:18 +0000 (AIDE 0.18.3)
AIDE successfully initialized database.
New AIDE database written to /var/lib/enp-bench-aide/aide.db.new.gz

Number of entries:	41179

---------------------------------------------------
The attributes of the (uncompressed) database(s):
---------------------------------------------------

/var/lib/enp-bench-aide/aide.db.new.gz
 MD5       : GrBTHM7NbJgULrvdz9T69w==
 SHA256    : Nw2WsMsSTjjqCFD+QR2S2m4BXOru3Icn

End timestamp: 2026-12-06 04:43:19 +0000 (run time: 0m 1s)
"""

AIDE_CHECK_CHANGED = """\
Start timestamp: 2026-12-06 04:43:18 +0000 (AIDE 0.18.3)
AIDE found differences between database and filesystem!!

Summary:
  Total number of entries:	1180
  Added entries:		1
  Removed entries:		0
  Changed entries:		12

---------------------------------------------------
Added entries:
---------------------------------------------------

f+++++++++++++++++: /etc/enp-bb-probe
"""

AIDE_CHECK_CLEAN = """\
Start timestamp: 2026-12-06 04:50:00 +0000 (AIDE 0.18.3)
AIDE found NO differences between database and filesystem. Looks okay!!

Number of entries:	41179

End timestamp: 2026-12-06 04:50:21 +0000 (run time: 0m 21s)
"""

AIDE_ERROR = """\
  ERROR: /var/lib/enp-bench-aide/aide.conf:1: open (read-only) failed for file '/x/aide.db.gz': No such file
"""

PLAYBOOK_OUTPUT = """\
TASK [baseline : Baseline | Capture | Record packages, file hashes and persistence points (/)] ***
Sunday 06 December 2026  04:50:01 +0000 (0:00:01.000)       0:00:02.000 ******
changed: [bb-full]

PLAY RECAP *********************************************************************
bb-full                    : ok=14   changed=4    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0

Sunday 06 December 2026  04:50:30 +0000 (0:00:00.100)       0:00:30.000 ******
===============================================================================
baseline : Baseline | Capture | Record packages, file hashes and persistence points (/) - 21.43s
baseline : Baseline | Store | Fetch the manifest to the controller ------------ 3.10s
baseline : Baseline | Verify | Capture the live state (/) --------------------- 9.50s
baseline : Baseline | Verify | Fetch the live manifest ------------------------ 1.25s
baseline : Baseline | Verify | Compare with the signed baseline and classify the findings --- 2.00s
"""


# ---------------------------------------------------------------- AIDE configuration


@pytest.mark.parametrize(
    "path",
    ["/usr/share/doc", "/usr/share/doc/x/y", "/home/enp/.ansible", "/home/enp/.ansible/tmp/a", "/root/.cache"],
)
def test_aide_regex_covers_the_skipped_subtree(path: str) -> None:
    skip = ["/usr/share/doc", "/home/*/.ansible", "/root/.cache"]
    assert any(re.match(parsing.glob_to_aide_regex(s), path) for s in skip)


@pytest.mark.parametrize("path", ["/usr/share/docs", "/usr/share/doc2/x", "/home/enp/.ansiblex", "/root/.cache2"])
def test_aide_regex_does_not_cover_siblings_with_the_same_prefix(path: str) -> None:
    skip = ["/usr/share/doc", "/home/*/.ansible", "/root/.cache"]
    assert not any(re.match(parsing.glob_to_aide_regex(s), path) for s in skip)


def test_aide_regex_escapes_regex_characters_and_agrees_with_fnmatch() -> None:
    regex = parsing.glob_to_aide_regex("/etc/ansible/facts.d/enp_baseline.fact")
    assert regex == r"/etc/ansible/facts\.d/enp_baseline\.fact(/|$)"
    assert not re.match(regex, "/etc/ansible/factsXd/enp_baseline.fact")
    pairs = [
        ("/home/*/.cache", "/home/a/.cache"),
        ("/usr/lib/python3/dist-packages/*/__pycache__", "/usr/lib/python3/dist-packages/a/b/__pycache__"),
    ]
    for glob, path in pairs:
        assert fnmatch.fnmatchcase(path, glob)
        assert re.match(parsing.glob_to_aide_regex(glob), path)


def test_aide_config_watches_the_capture_paths_with_comparable_attributes() -> None:
    text = parsing.aide_config(["/usr/lib", "/etc/", "/opt"], ["/usr/share/doc", "/var/lib/enp/baseline"], "/db")
    lines = text.splitlines()
    assert "database_in=file:/db/aide.db.gz" in lines and "database_out=file:/db/aide.db.new.gz" in lines
    assert f"{parsing.AIDE_GROUP} = p+u+g+s+m+i+l+ftype+sha256" in lines
    assert "/etc(/|$) ENPBENCH" in lines and "/usr/lib(/|$) ENPBENCH" in lines and "/opt(/|$) ENPBENCH" in lines
    assert "!/var/lib/enp/baseline(/|$)" in lines
    # /usr/lib must not pull in /usr/libexec or /usr/lib64, which the capture does not scan
    assert not re.match(r"/usr/lib(/|$)", "/usr/libexec/x")


def test_role_settings_are_the_roles_own_defaults_plus_its_own_files() -> None:
    paths, skip, sections = cli.role_settings()
    assert "/etc" in paths and "/opt" in paths
    assert "/var/lib/enp/baseline" in skip and "/etc/ansible/facts.d/enp_baseline.fact" in skip
    assert sections[0] == "packages" and "postgresql" in sections
    assert cli.BENCH_TREE.startswith("/opt/") and not any(cli.AIDE_DIR.startswith(p) for p in paths)


# ---------------------------------------------------------------- AIDE output


def test_parse_aide_init() -> None:
    result = parsing.parse_aide(AIDE_INIT)
    assert result.entries == 41179 and result.found is None and result.errors == []


def test_parse_aide_check_with_differences() -> None:
    result = parsing.parse_aide(AIDE_CHECK_CHANGED)
    assert (result.entries, result.added, result.removed, result.changed) == (1180, 1, 0, 12)
    assert result.differences is True and result.found == 13


def test_parse_aide_check_without_differences() -> None:
    result = parsing.parse_aide(AIDE_CHECK_CLEAN)
    assert result.differences is False and result.found == 0 and result.entries == 41179


def test_parse_aide_errors() -> None:
    result = parsing.parse_aide(AIDE_ERROR)
    assert result.entries is None and result.found is None
    assert result.errors and result.errors[0].startswith("ERROR:")


@pytest.mark.parametrize(
    ("rc", "check", "meaning"),
    [
        (0, True, "no differences"),
        (0, False, "ok"),
        (5, True, "differences: added, changed"),
        (4, True, "differences: changed"),
        (17, True, "invalid configuration"),
        (18, False, "I/O error"),
        (None, True, "timed out"),
    ],
)
def test_aide_exit_meaning(rc: int | None, check: bool, meaning: str) -> None:
    assert parsing.aide_exit_meaning(rc, check) == meaning


def test_markers_in() -> None:
    text = "noise\nbench.rc=0\nbench.start=1.5\nother.x=1\nbench.lines= 12 \n"
    assert parsing.markers_in(text) == {"rc": "0", "start": "1.5", "lines": "12"}


# ---------------------------------------------------------------- our side


def test_task_seconds_from_profile_tasks() -> None:
    assert parsing.task_seconds(PLAYBOOK_OUTPUT, cli.CAPTURE_TASK) == 21.43
    assert parsing.task_seconds(PLAYBOOK_OUTPUT, "Fetch the manifest to the controller") == 3.1
    assert [parsing.task_seconds(PLAYBOOK_OUTPUT, t) for t in cli.VERIFY_TASKS] == [9.5, 1.25, 2.0]
    assert parsing.task_seconds(PLAYBOOK_OUTPUT, "no such task") is None
    # the task header before the recap is not a timing line
    assert parsing.task_seconds(PLAYBOOK_OUTPUT.split("PLAY RECAP")[0], cli.CAPTURE_TASK) is None


CAPTURE_STATISTICS = """\
TASK [baseline : Baseline | Capture | Statistics] ******************************
ok: [bb-full] =>
    msg: 'bb-full: 6105 files in 0.483 s (12639.1 files/s; 0 hashed, 4853 from the cache);
        skipped: kernel_modules, nginx'
Sunday 06 December 2026  04:45:47 +0000 (0:00:00.043)       0:00:02.078 *******
"""


def test_capture_statistics_from_the_folded_debug_line() -> None:
    stats = parsing.capture_statistics(CAPTURE_STATISTICS)
    assert stats["files"] == 6105 and stats["seconds"] == 0.483 and stats["files_per_second"] == 12639.1
    assert (stats["hashed"], stats["reused"]) == (0, 4853)
    assert sorted(stats["skipped"]) == ["kernel_modules", "nginx"]
    nothing = parsing.capture_statistics(CAPTURE_STATISTICS.replace("kernel_modules, nginx", "nothing"))
    assert nothing["skipped"] == {}
    assert parsing.capture_statistics("no statistics here") == {}


def test_manifest_stats_from_the_tail_of_a_canonical_manifest() -> None:
    stats = {"files": 3, "hashed": 1, "reused": 2, "seconds": 0.5, "skipped": {"kernel_modules": "x"}}
    manifest = {"captured_at": "t", "format": "enp-baseline/1", "sections": {"files": {"/a": {}}}, "stats": stats}
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n"
    assert parsing.manifest_stats(text) == stats
    assert parsing.manifest_stats(text[: len(text) // 2]) == {}
    assert parsing.manifest_stats("") == {}


def test_evidence_of_lists_the_collected_sections_in_short_words() -> None:
    sections = ["packages", "files", "users", "groups", "authorized_keys", "kernel_modules", "nginx"]
    stats = {"skipped": {"kernel_modules": "not visible", "nginx": "no /etc/nginx"}}
    assert parsing.evidence_of(stats, sections) == ["packages", "files", "users", "keys"]
    assert parsing.evidence_of({}, ["kernel_modules"]) == ["modules"]


def test_report_summary() -> None:
    report = {"summary": {"total": 3, "by_kind": {"file-modified": 2, "file-added": 1}}, "findings": [{}] * 3}
    assert parsing.report_summary(report) == (3, {"file-modified": 2, "file-added": 1})
    assert parsing.report_summary({"findings": [{}, {}]}) == (2, {})


# ---------------------------------------------------------------- the table


def test_speed_ratio_and_table() -> None:
    ours = parsing.Row("bb-full", 40000, "ours", "capture cold", 10.0, 14.0, "cold", pair="init cold")
    ours.evidence = ["packages", "files", "suid"]
    aide = parsing.Row("bb-full", 41000, "AIDE", "init cold", 20.5, 21.0, "cold", evidence=["files"])
    assert ours.files_per_second == 4000 and aide.files_per_second == 2000
    assert parsing.speed_ratio(ours, aide) == pytest.approx(2.0)
    table = parsing.render_table([ours, aide]).splitlines()
    assert table[0].split()[:4] == ["host", "files", "tool", "step"]
    assert "2.00x vs init cold" in table[2] and "packages, files, suid (3)" in table[2]
    assert table[3].rstrip().endswith("files")
    missing = parsing.Row("bb-full", None, "ours", "verify unchanged", None, pair="check unchanged")
    assert parsing.speed_ratio(missing, aide) is None
    assert " - " in parsing.render_table([missing])


# ---------------------------------------------------------------- inventory


def test_inventory_is_the_benchmark_zone_only(tmp_path: pathlib.Path) -> None:
    addresses = cli.write_inventory(tmp_path, ["files"])
    assert addresses == {"bb-files": "198.18.86.12"}
    source = yaml.safe_load((cli.SOURCE_INVENTORY / "hosts.yml").read_text())
    hosts = source["all"]["children"]["estate"]["hosts"]
    assert set(hosts) == set(cli.HOSTS.values())
    zones = yaml.safe_load((cli.SOURCE_INVENTORY / "group_vars" / "all" / "zones.yml").read_text())["enp_zones"]
    assert list(zones) == ["bb"]
    assert zones["bb"]["subnet"] == "198.18.86.0/24" and zones["bb"]["lab_bridge"] == cli.BRIDGE == "enp-bb"
    assert zones["bb"]["lab_controller"] == cli.SUBNET_PREFIX + "1"
    plan = plan_lab(
        [{"name": n, "zone": "bb", "address": hv["ansible_host"], "gateway_host": False} for n, hv in hosts.items()],
        zones,
    )
    assert sorted(h["name"] for h in plan["hosts"]) == sorted(hosts)
    assert all(h["interfaces"][0]["address"].startswith(cli.SUBNET_PREFIX) for h in plan["hosts"])


def test_arguments() -> None:
    args = cli.parse_args([])
    assert args.files == 1_000_000 and args.hosts == ["full", "files"] and args.change_percent == 1.0
    assert cli.parse_args(["--hosts", "files", "--files", "5000"]).hosts == ["files"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--hosts", "web"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--change-percent", "0"])
