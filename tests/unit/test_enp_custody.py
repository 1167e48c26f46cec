"""Chain of custody and host readers of the evidence phase (plugins/module_utils/enp_custody.py).

The chain must notice every kind of later change - an item's byte, a record's field, a record removed, moved or cut
off the end, a file slipped into the folder - and name the item or line; appending to a broken chain is refused.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import pathlib
import tarfile

import pytest
from ansible.module_utils import enp_custody as cu
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime.datetime(2026, 12, 6, 8, 15, 0, tzinfo=datetime.UTC)


def make_evidence(base: pathlib.Path, files: dict[str, bytes], incident: str = "INC-1") -> list[dict]:
    entries = []
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries.append({"item": rel, "host": rel.split("/")[0], "where": f"test {rel}"})
    return cu.append(
        str(base / cu.CHAIN_FILE), entries, base_dir=str(base), collected_by="op@ctl", incident_id=incident, now=NOW
    )


FILES = {
    "web1/r1/processes.json": b'{"processes": []}\n',
    "web1/r1/files.tar.gz": b"\x1f\x8b" + bytes(range(256)),
    "db1/r1/sockets.json": b"[]\n",
    "db1/r1/journal.txt.gz": b"journal",
}


def write_summary(base: pathlib.Path) -> None:
    records = cu.read_chain(str(base / cu.CHAIN_FILE))
    summary = cu.summarise(records, {"web1": {"collected": True}, "db1": {"collected": True}}, "INC-1")
    (base / cu.SUMMARY_FILE).write_text(json.dumps(summary))


@pytest.fixture
def evidence(tmp_path: pathlib.Path) -> pathlib.Path:
    make_evidence(tmp_path, FILES)
    write_summary(tmp_path)
    return tmp_path


def rewrite_chain(base: pathlib.Path, edit) -> None:  # noqa: ANN001 - a callable over the list of lines
    path = base / cu.CHAIN_FILE
    os.chmod(path, 0o600)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_an_untouched_chain_verifies(evidence: pathlib.Path) -> None:
    result = cu.verify(str(evidence))
    assert result["ok"], result["problems"]
    assert result["records"] == result["items"] == len(FILES)
    assert result["bytes"] == sum(len(v) for v in FILES.values())
    assert oct(os.stat(evidence / cu.CHAIN_FILE).st_mode & 0o777) == "0o400"


def test_records_carry_who_when_where_and_link_to_the_one_before(tmp_path: pathlib.Path) -> None:
    records = make_evidence(tmp_path, FILES)
    assert records[0]["prev_hash"] == cu.GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]
    first = records[0]
    assert set(cu.RECORD_FIELDS) <= set(first)
    assert first["collected_at"] == "2026-12-06T08:15:00Z" and first["collected_at_ist"] == "2026-12-06T13:45:00+05:30"
    assert first["collected_by"] == "op@ctl" and first["incident_id"] == "INC-1"
    assert first["sha256"] == cu.sha256_bytes(FILES[first["item"]]) and first["bytes"] == len(FILES[first["item"]])
    assert first["hash"] == cu.record_hash(first)


def flip_byte(path: pathlib.Path, index: int = 3) -> None:
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERING = [
    # (what, how, words every problem list must contain)
    (
        "one byte of an item",
        lambda b: flip_byte(b / "web1/r1/files.tar.gz"),
        ["web1/r1/files.tar.gz", "content changed"],
    ),
    ("an item deleted", lambda b: (b / "db1/r1/sockets.json").unlink(), ["db1/r1/sockets.json", "cannot be read"]),
    (
        "an item replaced by the same size",
        lambda b: (os.chmod(b / "db1/r1/sockets.json", 0o600), (b / "db1/r1/sockets.json").write_bytes(b"{}\n")),
        ["db1/r1/sockets.json", "content changed"],
    ),
    (
        "a record's collector edited",
        lambda b: rewrite_chain(b, lambda ls: [ls[0], ls[1].replace("op@ctl", "someone@else"), *ls[2:]]),
        ["line 2", "edited"],
    ),
    (
        "a record's hash recomputed after an edit",
        lambda b: rewrite_chain(b, lambda ls: [ls[0], _rehashed(ls[1], where="moved"), *ls[2:]]),
        ["line 3", "prev_hash"],
    ),
    ("a record removed", lambda b: rewrite_chain(b, lambda ls: [ls[0], *ls[2:]]), ["line 2", "sequence number"]),
    ("two records swapped", lambda b: rewrite_chain(b, lambda ls: [ls[1], ls[0], *ls[2:]]), ["line 1", "prev_hash"]),
    ("the last record cut off", lambda b: rewrite_chain(b, lambda ls: ls[:-1]), ["removed from the end", "head"]),
    (
        "a file slipped in",
        lambda b: (b / "web1/r1/extra.txt").write_text("x"),
        ["web1/r1/extra.txt", "not in the chain"],
    ),
    ("a line of garbage", lambda b: rewrite_chain(b, lambda ls: [*ls, "not json"]), ["not JSON"]),
]


def _rehashed(line: str, **changes: str) -> str:
    record = json.loads(line)
    record.update(changes)
    record["hash"] = cu.record_hash(record)
    return cu.canonical(record)


@pytest.mark.parametrize(("what", "tamper", "words"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_every_later_change_is_found_and_named(evidence: pathlib.Path, what: str, tamper, words: list[str]) -> None:  # noqa: ANN001
    tamper(evidence)
    result = cu.verify(str(evidence))
    assert not result["ok"], f"{what}: not detected"
    text = "\n".join(result["problems"])
    for word in words:
        assert word in text, f"{what}: {word!r} not in {text}"


def test_the_verify_cli_exits_1_naming_the_item(evidence: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cu.main(["verify", str(evidence)]) == 0
    flip_byte(evidence / "db1/r1/journal.txt.gz", 0)
    assert cu.main(["verify", str(evidence)]) == 1
    out = capsys.readouterr().out
    assert "FAIL item db1/r1/journal.txt.gz: content changed" in out and "BROKEN" in out
    assert cu.main([]) == 2


def test_appending_to_a_broken_chain_is_refused(evidence: pathlib.Path) -> None:
    rewrite_chain(evidence, lambda ls: [ls[0].replace("op@ctl", "x@y"), *ls[1:]])
    (evidence / "new.json").write_text("{}")
    with pytest.raises(cu.ChainError, match="already broken"):
        cu.append(
            str(evidence / cu.CHAIN_FILE),
            [{"item": "new.json", "host": "web1", "where": "x"}],
            base_dir=str(evidence),
            collected_by="op@ctl",
            incident_id="INC-1",
        )


def test_a_second_run_extends_the_same_chain(evidence: pathlib.Path) -> None:
    more = make_evidence(evidence, {"web1/r2/processes.json": b"{}"})
    assert more[0]["seq"] == len(FILES) + 1
    assert more[0]["prev_hash"] == cu.read_chain(str(evidence / cu.CHAIN_FILE))[len(FILES) - 1]["hash"]
    write_summary(evidence)
    assert cu.verify(str(evidence))["ok"]


def test_a_path_leaving_the_folder_is_refused(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    base = tmp_path / "evidence"
    base.mkdir()
    cu.append(
        str(base / cu.CHAIN_FILE),
        [{"item": "../outside.txt", "host": "h", "where": "w"}],
        base_dir=str(base),
        collected_by="o",
        incident_id="i",
    )
    assert "leaves the evidence folder" in "\n".join(cu.verify(str(base))["problems"])


@given(
    field=st.sampled_from(
        [
            "item",
            "host",
            "sha256",
            "bytes",
            "collected_at",
            "collected_at_ist",
            "collected_by",
            "where",
            "incident_id",
            "seq",
        ]
    ),
    index=st.integers(min_value=0, max_value=3),
)
def test_editing_any_field_of_any_record_breaks_the_chain(field: str, index: int) -> None:
    stamp = cu.timestamps(NOW)
    records, previous = [], cu.GENESIS
    for n in range(4):
        record = cu.make_record(
            seq=n + 1,
            item=f"h/{n}",
            host="h",
            sha256="a" * 64,
            size=n,
            collected_at=stamp,
            collected_by="o@c",
            where="w",
            incident_id="I",
            prev_hash=previous,
        )
        records.append(record)
        previous = record["hash"]
    assert cu.check_chain(records) == []
    edited = [dict(r) for r in records]
    value = edited[index][field]
    edited[index][field] = value + 1 if isinstance(value, int) else str(value) + "x"
    assert cu.check_chain(edited), f"editing {field} of record {index + 1} went unnoticed"


# ------------------------------------------------------------------------------------------------ host side


@pytest.mark.parametrize(
    ("text", "comm", "ppid"),
    [
        ("42 (bash) S 1 42 42 0 -1 4194560 " + "0 " * 13 + "77 0", "bash", 1),
        ("43 (evil) (x) R 42 43 43 0 -1 4194560 " + "0 " * 13 + "78 0", "evil) (x", 42),
        ("44 (a b) S 2 0 0 0 -1 0 " + "0 " * 13 + "79 0", "a b", 2),
    ],
)
def test_proc_stat_names_with_spaces_and_parentheses(text: str, comm: str, ppid: int) -> None:
    parsed = cu.parse_stat(text)
    assert (parsed["comm"], parsed["ppid"]) == (comm, ppid)


def test_proc_net_lines_become_sockets() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6389674 1\n"
        "   1: 0B5C12C6:0016 015C12C6:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 555 1\n"
    )
    listen, established = cu.parse_net(text, "tcp")
    assert listen == {
        "proto": "tcp",
        "local": "0.0.0.0:4444",
        "remote": "0.0.0.0:0",
        "state": "LISTEN",
        "uid": 0,
        "inode": 6389674,
    }
    assert established["local"] == "198.18.92.11:22" and established["remote"] == "198.18.92.1:54000"
    assert established["state"] == "ESTABLISHED"
    six = "h\n   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 9 1\n"
    assert cu.parse_net(six, "tcp6")[0]["local"] == "[::]:22"


@pytest.mark.parametrize(
    ("exe", "why"),
    [
        ("/usr/sbin/sshd", ""),
        ("/tmp/.ICE-unix/kworker", "temporary directory"),
        ("/dev/shm/x", "temporary directory"),
        ("/var/tmp", "temporary directory"),
        ("/usr/bin/python3.11 (deleted)", "deleted"),
        ("/memfd:payload (deleted)", "deleted"),
        ("/home/bob/miner", "outside the program directories"),
        ("/tmpfoo/bin", "outside the program directories"),
        (None, ""),
    ],
)
def test_suspicious_executables(exe: str | None, why: str) -> None:
    found = cu.suspicious_exe(exe)
    assert (why in found) if why else found == ""


def test_hidden_from_ps_only_counts_processes_seen_before_and_after() -> None:
    ps = "  PID  PPID USER\n    1     0 root\n   42     1 root\n"
    assert cu.ps_pids(ps) == {1, 42}
    # 99 is in both /proc reads but not in ps: hidden. 100 started after ps ran, 7 ended before: not counted.
    assert cu.hidden_pids([1, 42, 99, 7], [1, 42, 99, 100], cu.ps_pids(ps), None) == [99]


def test_processes_read_from_a_fake_proc(tmp_path: pathlib.Path) -> None:
    proc = tmp_path / "proc"
    payload = tmp_path / "tmp" / "kworker"
    payload.parent.mkdir()
    payload.write_bytes(b"\x7fELF fake")
    pid = proc / "310"
    (pid / "fd").mkdir(parents=True)
    (pid / "stat").write_text("310 (kworker) S 1 310 310 0 -1 0 " + "0 " * 13 + "555 0\n")
    (pid / "status").write_text("Name:\tkworker\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
    (pid / "cmdline").write_bytes(b"/tmp/kworker\0-c\0listen\0")
    (pid / "environ").write_bytes(b"PATH=/bin\0LD_PRELOAD=/dev/shm/x.so\0")
    os.symlink(payload, pid / "exe")
    os.symlink("socket:[777]", pid / "fd" / "3")
    (proc / "self").mkdir()
    [process] = cu.read_processes(str(proc))
    assert process["pid"] == 310 and process["args"] == ["/tmp/kworker", "-c", "listen"]
    assert process["exe"] == str(payload) and process["exe_sha256"] == cu.sha256_bytes(b"\x7fELF fake")
    assert process["ld_env"] == ["LD_PRELOAD=/dev/shm/x.so"] and process["socket_inodes"] == [777]
    (proc / "net").mkdir()
    (proc / "net" / "tcp").write_text(
        "h\n   0: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n"
    )
    [sock] = cu.read_sockets([process], str(proc))
    assert sock["local"] == "0.0.0.0:4444" and sock["processes"] == ["kworker/310"]


def test_capped_tar_lists_what_it_leaves_out(tmp_path: pathlib.Path) -> None:
    small, big, same = tmp_path / "small", tmp_path / "big", tmp_path / "same"
    small.write_bytes(b"a" * 10)
    same.write_bytes(b"a" * 10)
    big.write_bytes(b"b" * 100)
    tar = cu.CappedTar(max_bytes=25, max_file_bytes=50)
    assert tar.add_file(str(small), "t")
    assert tar.add_file(str(same), "t")  # same content: listed, stored once
    assert not tar.add_file(str(big), "t")
    assert not tar.add_file(str(tmp_path / "missing"), "t")
    more = tmp_path / "more"
    more.write_bytes(b"c" * 20)
    assert not tar.add_file(str(more), "t")  # 10 + 20 > 25
    reasons = {pathlib.Path(t["path"]).name: t["reason"] for t in tar.truncated}
    assert "per-file cap" in reasons["big"] and "total cap" in reasons["more"] and "cannot stat" in reasons["missing"]
    data = tar.close()
    assert [m.get("same_as") for m in tar.members] == [None, str(small).lstrip("/")]
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    with tarfile.open(archive) as handle:
        assert handle.getnames() == [str(small).lstrip("/")]


def test_recent_files_window_and_bound(tmp_path: pathlib.Path) -> None:
    for n in range(5):
        path = tmp_path / f"f{n}"
        path.write_text(str(n))
        os.utime(path, (1000 + n, 1000 + n))
    old = tmp_path / "old"
    old.write_text("x")
    entries, more = cu.recent_files([str(tmp_path)], since=0, max_entries=3)
    assert len(entries) == 3 and more == 3  # 6 files changed (ctime is now for all): 3 listed, 3 counted
    entries, more = cu.recent_files([str(tmp_path)], since=9e12, max_entries=3)
    assert entries == [] and more == 0


def test_own_payload_dir() -> None:
    zipped = "/tmp/ansible_enp_evidence_custody_payload_ab12/ansible_enp_evidence_custody_payload.zip/ansible/x.py"
    assert cu.own_payload_dir(zipped) == "/tmp/ansible_enp_evidence_custody_payload_ab12"
    assert cu.own_payload_dir("/work/main/plugins/module_utils/enp_custody.py") == ""


def test_overlay_archive_keeps_numeric_owners_and_lists_the_cap(tmp_path: pathlib.Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").write_text("198.18.92.66 deb.debian.org\n")
    (upper / "var").mkdir()
    (upper / "var" / "big").write_bytes(b"x" * 1000)
    os.symlink("/etc/hosts", upper / "link")
    dest = tmp_path / "upper.tar.gz"
    stats = cu.archive_tree(str(upper), str(dest), max_bytes=100)
    assert stats["files"] == 1 and [t["path"] for t in stats["truncated"]] == ["/var/big"]
    with tarfile.open(dest) as handle:
        names = handle.getnames()
        assert "etc/hosts" in names and "link" in names and "var/big" not in names
        assert all(m.uname == "" for m in handle.getmembers())
        assert handle.extractfile("etc/hosts").read().startswith(b"198.18.92.66")


def test_summary_counts_per_host_and_names_the_head(evidence: pathlib.Path) -> None:
    records = cu.read_chain(str(evidence / cu.CHAIN_FILE))
    summary = cu.summarise(
        records, {"web1": {"collected": True}, "gone1": {"collected": False, "reason": "no route"}}, "INC-1"
    )
    assert summary["chain"]["head"] == records[-1]["hash"] and summary["chain"]["records"] == 4
    assert summary["hosts"]["web1"]["items"] == 2 and summary["hosts"]["db1"]["items"] == 2
    assert summary["totals"]["hosts_not_collected"] == ["gone1"]
    lines = cu.summary_lines(summary)
    assert any(line.startswith("gone1: no route") for line in lines)
