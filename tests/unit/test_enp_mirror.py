"""Unit tests for the baseline mirror's pure logic (plugins/module_utils/enp_mirror.py)."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest
import yaml
from ansible.module_utils.enp_mirror import (
    EFFECTIVE_LOCK_HEADER,
    LOCK_META_KEYS,
    KeyInfo,
    LockEntry,
    Manifest,
    MirrorError,
    StaleLockError,
    apt_problems,
    check_files,
    deb_filename,
    debian_sources,
    effective_lock_applies,
    entries_from_records,
    fetch_list,
    format_lock,
    gpgv_command,
    image_matches_lock,
    inputs_digest,
    installed_packages,
    lock_changes,
    parse_control,
    parse_lock,
    parse_lock_line,
    parse_madison,
    parse_manifest,
    parse_secret_keys,
    parse_simulation,
    pick_signing_key,
    private_apt_conf,
    proxy_settings,
    release_options,
    relock_changes,
    stale_entries,
    stale_lock_failure,
    stale_lock_warning,
    tree_digest,
    unavailable_pins,
)
from hypothesis import given
from hypothesis import strategies as st

PROJECT = pathlib.Path(__file__).resolve().parents[2]
SHA_A = "a" * 64
SHA_B = "b" * 64


def entry(name: str, version: str = "1.0-1", arch: str = "amd64", sha: str = SHA_A, size: int = 10) -> LockEntry:
    return LockEntry(name, version, arch, sha, size)


# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("name", "version", "arch", "expected"),
    [
        ("acl", "2.3.1-3", "amd64", "acl_2.3.1-3_amd64.deb"),
        ("auditd", "1:3.0.9-1", "amd64", "auditd_1%3a3.0.9-1_amd64.deb"),
        ("tzdata", "2026f-0+deb12u1", "all", "tzdata_2026f-0+deb12u1_all.deb"),
    ],
)
def test_deb_filename_matches_apt(name, version, arch, expected):
    assert deb_filename(name, version, arch) == expected
    assert LockEntry(name, version, arch, SHA_A, 1).filename == expected


# ---------------------------------------------------------------- manifest


def test_parse_manifest_defaults_and_values():
    manifest = parse_manifest({"packages": ["nginx", "postgresql"], "install_recommends": True})
    assert manifest == Manifest(packages=("nginx", "postgresql"), install_recommends=True)
    assert manifest.suite == "bookworm" and manifest.architecture == "amd64" and manifest.components == ("main",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["nginx"], "YAML mapping"),
        ({"packages": []}, "non-empty"),
        ({"packages": "nginx"}, "non-empty"),
        ({"packages": ["nginx"], "install_recommend": False}, "unknown keys"),
        ({"packages": ["Nginx"]}, "not a Debian package name"),
        ({"packages": ["n"]}, "not a Debian package name"),
        ({"packages": ["nginx", "acl", "nginx"]}, "more than once"),
        ({"packages": ["nginx"], "install_recommends": "no"}, "true or false"),
        ({"packages": ["nginx"], "components": "main"}, "components"),
        ({"packages": ["nginx"], "suite": "../x"}, "not valid"),
        ({"packages": [None]}, "not a Debian package name"),
    ],
)
def test_parse_manifest_refuses(data, message):
    with pytest.raises(MirrorError, match=message):
        parse_manifest(data)


def test_manifest_digest_ignores_order_but_not_content():
    one = parse_manifest({"packages": ["nginx", "acl"]})
    assert one.digest() == parse_manifest({"packages": ["acl", "nginx"]}).digest()
    assert one.digest() != parse_manifest({"packages": ["acl"]}).digest()
    assert one.digest() != parse_manifest({"packages": ["nginx", "acl"], "install_recommends": True}).digest()
    assert one.digest() != parse_manifest({"packages": ["nginx", "acl"], "include_image_upgrades": False}).digest()


def test_committed_manifest_and_lock_agree():
    """CI guard: editing baseline/packages.yml without re-locking fails here, not during a rebuild."""
    manifest = parse_manifest(yaml.safe_load((PROJECT / "baseline/packages.yml").read_text()))
    meta, entries = parse_lock((PROJECT / "baseline/packages.lock").read_text())
    assert meta["manifest-sha256"] == manifest.digest(), "baseline/packages.yml changed: run `make mirror-lock`"
    assert int(meta["packages"]) == len(entries)
    assert int(meta["bytes"]) == sum(e.size for e in entries)
    names = {e.name for e in entries}
    installed_in_image = {"sudo"}  # top-level packages the golden image already has (no upgrade pending)
    assert set(manifest.packages) - installed_in_image <= names


# ---------------------------------------------------------------- lock


@pytest.mark.parametrize(
    "line",
    [
        "acl 2.3.1-3 amd64 " + SHA_A,  # no size
        "acl 2.3.1-3 amd64 " + SHA_A + " 10 extra",
        "acl 2.3.1-3 amd64 " + "A" * 64 + " 10",  # upper-case hash
        "acl 2.3.1-3 amd64 " + "a" * 63 + " 10",
        "acl 2.3.1-3 amd64 " + SHA_A + " -1",
        "Acl 2.3.1-3 amd64 " + SHA_A + " 10",
        "acl ~bad amd64 " + SHA_A + " 10",
    ],
)
def test_parse_lock_line_refuses_malformed(line):
    with pytest.raises(MirrorError):
        parse_lock_line(line, 7)


def test_parse_lock_reads_header_and_sorts():
    text = (
        "# anything\n# suite: bookworm\n# manifest-sha256: abc\n# not-a-key: x\n\n"
        f"zlib1g 1:1.2.13 amd64 {SHA_A} 5\nacl 2.3.1-3 amd64 {SHA_B} 7\n"
    )
    meta, entries = parse_lock(text)
    assert meta == {"suite": "bookworm", "manifest-sha256": "abc"}
    assert [e.name for e in entries] == ["acl", "zlib1g"]
    assert entries[1].version == "1:1.2.13"


def test_parse_lock_refuses_two_versions_of_one_package():
    with pytest.raises(MirrorError, match="one version per package"):
        parse_lock(f"acl 1 amd64 {SHA_A} 1\nacl 2 amd64 {SHA_B} 1\n")


def test_parse_lock_refuses_unknown_format():
    with pytest.raises(MirrorError, match="format"):
        parse_lock("# format: 9\n")


def test_format_lock_is_sorted_deterministic_and_totals():
    entries = [entry("zlib1g", size=5), entry("acl", size=7)]
    text = format_lock(entries, {"suite": "bookworm", "manifest-sha256": "abc"})
    assert text == format_lock(list(reversed(entries)), {"manifest-sha256": "abc", "suite": "bookworm"})
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [entry("acl", size=7).line(), entry("zlib1g", size=5).line()]
    assert "# packages: 2\n" in text and "# bytes: 12\n" in text
    assert text.endswith("\n")


names = st.from_regex(r"[a-z0-9][a-z0-9+.-]{1,20}", fullmatch=True)
versions = st.from_regex(r"([0-9]{1,2}:)?[0-9][0-9A-Za-z.+~]{0,10}(-[0-9A-Za-z.+~]{1,6})?", fullmatch=True)
entries_st = st.lists(
    st.builds(
        LockEntry,
        name=names,
        version=versions,
        arch=st.sampled_from(["amd64", "all", "arm64"]),
        sha256=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        size=st.integers(min_value=0, max_value=2**40),
    ),
    max_size=30,
    unique_by=lambda e: (e.name, e.arch),
)
meta_st = st.fixed_dictionaries(
    {},
    optional={
        "suite": st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
        "architecture": st.sampled_from(["amd64", "arm64"]),
        "manifest-sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        "image-status-sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    },
)


@given(entries=entries_st, meta=meta_st)
def test_lock_round_trip(entries, meta):
    text = format_lock(entries, meta)
    parsed_meta, parsed = parse_lock(text)
    assert parsed == sorted(entries)
    assert {k: v for k, v in parsed_meta.items() if k in meta} == meta
    assert parsed_meta["packages"] == str(len(entries))
    assert format_lock(parsed, parsed_meta) == text  # a second format changes nothing: diff-stable
    assert set(parsed_meta) <= set(LOCK_META_KEYS)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], [entry("acl")], {"added": ["acl=1.0-1"], "removed": [], "changed": []}),
        ([entry("acl")], [], {"added": [], "removed": ["acl=1.0-1"], "changed": []}),
        (
            [entry("acl")],
            [entry("acl", "1.0-2", sha=SHA_B)],
            {"added": [], "removed": [], "changed": ["acl: 1.0-1 -> 1.0-2"]},
        ),
        ([entry("acl")], [entry("acl", sha=SHA_B)], {"added": [], "removed": [], "changed": ["acl: 1.0-1 -> 1.0-1"]}),
        ([entry("acl")], [entry("acl")], {"added": [], "removed": [], "changed": []}),
    ],
)
def test_lock_changes(old, new, expected):
    assert lock_changes(old, new) == expected


# ---------------------------------------------------------------- resolution


SIMULATION = """NOTE: This is only a simulation!
Reading package lists...
Inst perl-base [5.36.0-7+deb12u3] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64])
Inst python3.11 [3.11.2-6+deb12u8] (3.11.2-6+deb12u9 Debian-Security:12/oldstable-security [amd64]) []
Inst tzdata [2026b-0+deb12u1] (2026f-0+deb12u1 Debian-Security:12/oldstable-security [all])
Inst auditd (1:3.0.9-1 Debian:12.15/oldstable [amd64])
Inst nginx (1.22.1-9+deb12u11 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Conf auditd (1:3.0.9-1 Debian:12.15/oldstable [amd64])
"""


def test_parse_simulation():
    assert parse_simulation(SIMULATION) == [
        ("auditd", "1:3.0.9-1", "amd64"),
        ("nginx", "1.22.1-9+deb12u11", "amd64"),
        ("perl-base", "5.36.0-7+deb12u4", "amd64"),
        ("python3.11", "3.11.2-6+deb12u9", "amd64"),
        ("tzdata", "2026f-0+deb12u1", "all"),
    ]


def test_parse_simulation_refuses_removals():
    with pytest.raises(MirrorError, match="remove packages the golden image has: systemd-timesyncd"):
        parse_simulation(SIMULATION + "Remv systemd-timesyncd [252.36-1~deb12u1]\n")


RECORDS = f"""Package: acl
Version: 2.3.1-3
Architecture: amd64
Size: 61244
SHA256: {SHA_A}
Description: access control list - utilities
 This package contains the getfacl and setfacl utilities.

Package: acl
Version: 2.3.1-3
Architecture: amd64
Size: 61244
SHA256: {SHA_A}
"""


def test_entries_from_records_dedupes_and_attaches_hashes():
    records = parse_control(RECORDS)
    assert records[0]["Description"].endswith("setfacl utilities.")
    assert entries_from_records([("acl", "2.3.1-3", "amd64")], records) == [entry("acl", "2.3.1-3", size=61244)]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ("", "no record"),
        (RECORDS.replace(SHA_A, SHA_B, 1), "different sha256"),
        (RECORDS.replace("Size: 61244", "Size: x"), "no record"),
    ],
)
def test_entries_from_records_refuses(records, message):
    with pytest.raises(MirrorError, match=message):
        entries_from_records([("acl", "2.3.1-3", "amd64")], parse_control(records))


def test_installed_packages_only_counts_installed():
    status = (
        "Package: apt\nStatus: install ok installed\nVersion: 2.6.1\n\n"
        "Package: old\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: broken\nStatus: install reinstreq half-installed\nVersion: 2\n"
    )
    assert installed_packages(status) == {"apt": "2.6.1"}


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("E: Version '1.22.1-9+deb12u1' for 'nginx' was not found\n", ["nginx=1.22.1-9+deb12u1"]),
        ("E: Unable to locate package nginz\n", ["nginz"]),
        (
            "E: Version '1' for 'b' was not found\nE: Version '2' for 'a' was not found\n",
            ["a=2", "b=1"],
        ),
        ("E: Unable to correct problems, you have held broken packages.\n", []),
    ],
)
def test_unavailable_pins(output, expected):
    assert unavailable_pins(output) == expected


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("", []),
        ("W: Download is performed unsandboxed as root as file '/x' couldn't be accessed by user '_apt'.", []),
        (
            "W: GPG error: http://x bookworm InRelease: NO_PUBKEY 123",
            ["W: GPG error: http://x bookworm InRelease: NO_PUBKEY 123"],
        ),
        ("E: Failed to fetch http://x\nN: note", ["E: Failed to fetch http://x"]),
    ],
)
def test_apt_problems(stderr, expected):
    assert apt_problems(stderr) == expected


# ---------------------------------------------------------------- cache and idempotence


def test_check_files_sorts_entries_into_ok_missing_mismatched():
    ok, gone, bad, short = entry("acl"), entry("aide"), entry("chrony"), entry("sudo")
    result = check_files(
        [gone, ok, bad, short],
        {ok.filename: (SHA_A, 10), bad.filename: (SHA_B, 10), short.filename: (SHA_A, 9)},
    )
    assert result.ok == [ok] and result.missing == [gone] and result.mismatched == [bad, short]


def test_inputs_digest_depends_on_every_input():
    base = inputs_digest("lock", "abcd", "enp-bookworm", "enp", "enp baseline")
    assert base == inputs_digest("lock", "ABCD", "enp-bookworm", "enp", "enp baseline")
    for args in (
        ("lock2", "abcd", "enp-bookworm", "enp", "enp baseline"),
        ("lock", "abce", "enp-bookworm", "enp", "enp baseline"),
        ("lock", "abcd", "enp-trixie", "enp", "enp baseline"),
        ("lock", "abcd", "enp-bookworm", "other", "enp baseline"),
        ("lock", "abcd", "enp-bookworm", "enp", "other"),
    ):
        assert inputs_digest(*args) != base


def test_tree_digest_is_order_free_and_content_bound():
    files = [("dists/x/Release", SHA_A), ("pool/main/a.deb", SHA_B)]
    assert tree_digest(files) == tree_digest(list(reversed(files)))
    assert tree_digest(files) != tree_digest([("dists/x/Release", SHA_B), ("pool/main/a.deb", SHA_B)])
    assert tree_digest(files) != tree_digest([*files, ("extra", SHA_A)])


# ---------------------------------------------------------------- apt and Release configuration


def test_private_apt_conf_isolates_every_state_directory():
    conf = private_apt_conf(
        "/c/.apt",
        "/c/.apt/state/status",
        "/c",
        "/c/.apt/etc/debian.sources",
        "amd64",
        False,
        {"Acquire::http::Proxy": "http://proxy:3128"},
    )
    lines = dict(line.rstrip(";").split(" ", 1) for line in conf.splitlines())
    for key in ("Dir::Etc::Parts", "Dir::Etc::SourceParts", "Dir::Etc::PreferencesParts", "Dir::Etc::TrustedParts"):
        assert lines[key] == '"/c/.apt/etc/empty.d"'
    assert lines["Dir::State::status"] == '"/c/.apt/state/status"'
    assert lines["Dir::Cache::Archives"] == '"/c"'
    assert lines["Dir::State::Lists"] == '"/c/.apt/state/lists"'
    assert lines["APT::Architecture"] == '"amd64"'
    assert lines["APT::Install-Recommends"] == '"false"'
    assert lines["APT::Get::AllowUnauthenticated"] == '"false"'
    assert lines["Acquire::http::Proxy"] == '"http://proxy:3128"'


def test_private_apt_conf_refuses_quotes():
    with pytest.raises(MirrorError, match="quote"):
        private_apt_conf('/c/"x', "/s", "/a", "/src", "amd64", False)


def test_proxy_settings_are_the_only_config_carried_over():
    dump = (
        'Acquire::http::Proxy "http://proxy:3128";\nAcquire::https::Proxy "DIRECT";\n'
        'Acquire::http::Proxy::deb.example "DIRECT";\nDPkg::Post-Invoke "rm -f /var/cache/apt/archives/*.deb";\n'
        'APT::Install-Recommends "1";\n'
    )
    assert proxy_settings(dump) == {
        "Acquire::http::Proxy": "http://proxy:3128",
        "Acquire::https::Proxy": "DIRECT",
        "Acquire::http::Proxy::deb.example": "DIRECT",
    }


def test_debian_sources_has_updates_and_security_signed():
    text = debian_sources(
        "http://archive.example/debian",
        "http://archive.example/debian-security",
        "bookworm",
        ["main"],
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    )
    stanzas = [s for s in text.split("\n\n") if s.strip()]
    assert len(stanzas) == 2
    assert "Suites: bookworm bookworm-updates" in stanzas[0]
    assert "Suites: bookworm-security" in stanzas[1]
    assert all("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in s for s in stanzas)


def test_release_options():
    args = release_options("enp-bookworm", ["main"], "amd64", "enp", "enp baseline", "known good")
    pairs = dict(a.split("=", 1) for a in args if a != "-o")
    assert pairs["APT::FTPArchive::Release::Suite"] == "enp-bookworm"
    assert pairs["APT::FTPArchive::Release::Codename"] == "enp-bookworm"
    assert pairs["APT::FTPArchive::Release::Label"] == "enp baseline"
    assert args.count("-o") == 7


# ---------------------------------------------------------------- signing key


COLONS = """sec:u:255:22:A8B537D577E59002:1795452365:::u:::scSC:::+::ed25519:::0:
fpr:::::::::44F8359271A3A00A902D2906A8B537D577E59002:
grp:::::::::05A43E995ADA4F1F7BF76029392F8B0D815E9EDA:
uid:u::::1795452365::D44D8C405C5B82895233B87D5A2787F9::enp baseline mirror (lab) <mirror@enp.invalid>::::::::::0:
sec:r:255:22:1111111111111111:1795452365:::u:::scSC:::+::ed25519:::0:
fpr:::::::::RRRRRRRRRRRRRRRRRRRRRRRR1111111111111111:
uid:r::::1795452365::AAAA::enp baseline mirror (lab) <mirror@enp.invalid>::::::::::0:
sec:u:255:22:2222222222222222:1795452365:::u:::cC:::+::ed25519:::0:
fpr:::::::::CCCCCCCCCCCCCCCCCCCCCCCC2222222222222222:
uid:u::::1795452365::BBBB::certify only\\x3a no signing::::::::::0:
ssb:u:255:18:3333333333333333:1795452365::::::e:::+::cv25519::
fpr:::::::::SSSSSSSSSSSSSSSSSSSSSSSS3333333333333333:
"""
LAB_UID = "enp baseline mirror (lab) <mirror@enp.invalid>"


def test_parse_secret_keys_reads_primary_fingerprints_only():
    keys = parse_secret_keys(COLONS)
    assert [k.fingerprint for k in keys] == [
        "44F8359271A3A00A902D2906A8B537D577E59002",
        "RRRRRRRRRRRRRRRRRRRRRRRR1111111111111111",
        "CCCCCCCCCCCCCCCCCCCCCCCC2222222222222222",
    ]
    assert keys[0] == KeyInfo("44F8359271A3A00A902D2906A8B537D577E59002", (LAB_UID,), True, "u")
    assert keys[1].validity == "r"
    assert keys[2].can_sign is False and keys[2].uids == ("certify only: no signing",)


@pytest.mark.parametrize(
    ("uid", "fingerprint", "expected"),
    [
        (LAB_UID, None, "44F8359271A3A00A902D2906A8B537D577E59002"),  # the revoked twin is ignored
        ("someone else", None, None),
        (LAB_UID, "44f8 3592 71a3 a00a 902d  2906 a8b5 37d5 77e5 9002", "44F8359271A3A00A902D2906A8B537D577E59002"),
    ],
)
def test_pick_signing_key(uid, fingerprint, expected):
    key = pick_signing_key(parse_secret_keys(COLONS), uid, fingerprint)
    assert (key.fingerprint if key else None) == expected


@pytest.mark.parametrize(
    ("keys", "fingerprint", "message"),
    [
        ("CCCCCCCCCCCCCCCCCCCCCCCC2222222222222222", "CCCCCCCCCCCCCCCCCCCCCCCC2222222222222222", "not a usable"),
        ("twins", None, "2 usable keys"),
    ],
)
def test_pick_signing_key_refuses(keys, fingerprint, message):
    parsed = parse_secret_keys(COLONS)
    if keys == "twins":
        parsed = [parsed[0], KeyInfo("F" * 40, (LAB_UID,), True, "u")]
    with pytest.raises(MirrorError, match=message):
        pick_signing_key(parsed, LAB_UID, fingerprint)


# ---------------------------------------------------------------- download list (build mode)


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        pytest.param({}, ["acl", "aide", "auditd"], id="cold cache: every locked file"),
        pytest.param(
            {"acl_1.0-1_amd64.deb": (SHA_A, 10), "aide_1.0-1_amd64.deb": (SHA_A, 10)},
            ["auditd"],
            id="warm except one",
        ),
        pytest.param(
            {
                "acl_1.0-1_amd64.deb": (SHA_B, 10),
                "aide_1.0-1_amd64.deb": (SHA_A, 9),
                "auditd_1%3a1.0-1_amd64.deb": (SHA_A, 10),
            },
            ["acl", "aide"],
            id="wrong bytes are fetched again",
        ),
        pytest.param(
            {
                "acl_1.0-1_amd64.deb": (SHA_A, 10),
                "aide_1.0-1_amd64.deb": (SHA_A, 10),
                "auditd_1%3a1.0-1_amd64.deb": (SHA_A, 10),
                "apt_2.6.2_amd64.deb": (SHA_A, 10),
            },
            [],
            id="fully warm; unlocked extra files are irrelevant",
        ),
        pytest.param({"auditd_1:1.0-1_amd64.deb": (SHA_A, 10)}, ["acl", "aide", "auditd"], id="epoch spelt by apt"),
    ],
)
def test_fetch_list_is_exactly_the_locked_files_not_in_the_cache(observed, expected):
    entries = [entry("auditd", "1:1.0-1"), entry("aide"), entry("acl")]
    assert [e.name for e in fetch_list(entries, observed)] == expected


def test_fetch_list_ignores_what_the_image_has():
    """Regression for the fresh-machine breakage: the download list is a function of lock and cache only."""
    entries = [entry("libssl3", "3.0.22-1~deb12u2"), entry("nginx")]
    assert fetch_list(entries, {}) == sorted(entries)


# ---------------------------------------------------------------- stale locks


MADISON = """       acl |    2.3.1-3 | http://deb.debian.org/debian bookworm/main amd64 Packages
    tzdata | 2026f-0+deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
    tzdata | 2026b-0+deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
   libssl3 | 3.0.22-1~deb12u2 | /var/lib/dpkg/status
    auditd |  1:3.0.9-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
N: Unable to locate package nosuch
"""


def test_parse_madison():
    assert parse_madison(MADISON) == {
        "acl": {"2.3.1-3"},
        "tzdata": {"2026f-0+deb12u1", "2026b-0+deb12u1"},
        "auditd": {"1:3.0.9-1"},
    }


@pytest.mark.parametrize(
    ("locked", "expected"),
    [
        pytest.param([entry("acl", "2.3.1-3")], [], id="served"),
        pytest.param([entry("acl", "2.3.1-2")], ["acl=2.3.1-2"], id="older version gone"),
        pytest.param([entry("tzdata", "2026b-0+deb12u1")], [], id="any served suite counts"),
        pytest.param([entry("tzdata", "2025b-0+deb12u1")], ["tzdata=2025b-0+deb12u1"], id="replaced in -updates"),
        pytest.param([entry("auditd", "3.0.9-1")], ["auditd=3.0.9-1"], id="epoch is part of the version"),
        pytest.param(
            [entry("libssl3", "3.0.22-1~deb12u2")], ["libssl3=3.0.22-1~deb12u2"], id="installed is not served"
        ),
        pytest.param([entry("nosuch")], ["nosuch=1.0-1"], id="package gone"),
        pytest.param(
            [entry("zz", "1"), entry("acl", "9")],
            ["acl=9", "zz=1"],
            id="sorted",
        ),
    ],
)
def test_stale_entries(locked, expected):
    assert [e.pin for e in stale_entries(locked, parse_madison(MADISON))] == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param([entry("acl")], [entry("acl")], [], id="unchanged"),
        pytest.param([entry("acl")], [entry("acl", "1.0-2", sha=SHA_B)], ["acl 1.0-1 -> 1.0-2"], id="new version"),
        pytest.param([entry("acl")], [entry("acl", sha=SHA_B)], ["acl 1.0-1 -> 1.0-1"], id="same version, new bytes"),
        pytest.param([], [entry("newdep", "2")], ["newdep (none) -> 2"], id="added"),
        pytest.param([entry("libssl3", "3")], [], ["libssl3 3 -> (removed)"], id="removed"),
        pytest.param(
            [entry("b", "1"), entry("a", "1:1"), entry("c", "1")],
            [entry("c", "1"), entry("a", "1:2", sha=SHA_B), entry("d", "1")],
            ["a 1:1 -> 1:2", "b 1 -> (removed)", "d (none) -> 1"],
            id="mixed, sorted by name",
        ),
    ],
)
def test_relock_changes(old, new, expected):
    assert relock_changes(old, new) == expected


@pytest.mark.parametrize(
    ("meta", "status_sha", "expected"),
    [
        ({"image-status-sha256": SHA_A}, SHA_A, True),
        ({"image-status-sha256": SHA_A}, SHA_B, False),
        ({}, SHA_A, None),
        ({"image-status-sha256": SHA_A}, None, None),
    ],
)
def test_image_matches_lock(meta, status_sha, expected):
    assert image_matches_lock(meta, status_sha) is expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"replaces-lock-sha256": SHA_A, "manifest-sha256": SHA_B}, True),
        ({"replaces-lock-sha256": SHA_B, "manifest-sha256": SHA_B}, False),  # the repository lock was re-locked
        ({"replaces-lock-sha256": SHA_A, "manifest-sha256": SHA_A}, False),  # the manifest changed
        ({"manifest-sha256": SHA_B}, False),  # a repository lock is not an effective lock
    ],
)
def test_effective_lock_applies(meta, expected):
    assert effective_lock_applies(meta, SHA_A, SHA_B) is expected


def test_effective_lock_round_trips_with_its_provenance():
    meta = {"manifest-sha256": SHA_B, "replaces-lock-sha256": SHA_A, "stale-packages": "acl=1 tzdata=2"}
    text = format_lock([entry("acl", "2")], meta, header=EFFECTIVE_LOCK_HEADER)
    assert text.startswith("# enp EFFECTIVE lock") and "make mirror-lock" in text.split("# format")[0]
    parsed, entries = parse_lock(text)
    assert parsed["stale-packages"].split() == ["acl=1", "tzdata=2"]
    assert effective_lock_applies(parsed, SHA_A, SHA_B) and entries == [entry("acl", "2")]
    # The repository lock never carries these fields.
    repo = parse_lock((PROJECT / "baseline/packages.lock").read_text())[0]
    assert "replaces-lock-sha256" not in repo and "stale-packages" not in repo


def test_stale_lock_error_sorts_and_names_pins():
    error = StaleLockError([entry("zz", "2"), entry("acl", "1")])
    assert [e.pin for e in error.stale] == ["acl=1", "zz=2"]
    assert "acl=1, zz=2" in str(error)


@pytest.mark.parametrize(
    ("stale", "shown", "hidden"),
    [
        (["acl=2.3.1-2"], ["acl=2.3.1-2", "1 locked version"], []),
        ([f"p{i:02d}=1" for i in range(15)], ["p00=1", "p11=1", "and 3 more"], ["p12=1"]),
    ],
)
def test_stale_lock_failure_says_what_and_what_next(stale, shown, hidden):
    text = stale_lock_failure(stale, "/repo/baseline/packages.lock", "/cache/debs")
    for part in [*shown, "/repo/baseline/packages.lock", "/cache/debs", "`make mirror-lock`", "on_stale_lock=relock"]:
        assert part in text
    for part in hidden:
        assert part not in text


def test_stale_lock_warning_lists_changes_and_the_way_back():
    changes = [f"p{i:02d} 1 -> 2" for i in range(23)]
    text = stale_lock_warning(["p00=1"], changes, "/repo/packages.lock", "/lab/packages.effective.lock")
    assert text.startswith("STALE LOCK: /repo/packages.lock")
    assert "/lab/packages.effective.lock" in text and "23 change(s)" in text
    assert "p19 1 -> 2" in text and "p20 1 -> 2" not in text and "and 3 more" in text
    assert "`make mirror-lock`" in text and "commit" in text
    assert "some locked versions" in stale_lock_warning([], [], "/l", "/e")


def test_gpgv_never_uses_the_default_home():
    argv = gpgv_command("/tmp/h", "/m/key.gpg", "/m/InRelease")
    assert argv[:3] == ["gpgv", "--homedir", "/tmp/h"]
    assert argv[3:] == ["--keyring", "/m/key.gpg", "/m/InRelease"]


# ---------------------------------------------------------------- operator-facing commands exist


MAKE_RE = re.compile(r"`make ([a-z][a-z-]*)`")


def makefile_targets() -> set[str]:
    text = (PROJECT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][a-z-]*):", text, re.M)}


@pytest.mark.parametrize(
    "path",
    [
        "plugins/modules/enp_mirror_build.py",
        "plugins/module_utils/enp_mirror.py",
        "baseline/packages.yml",
        "baseline/packages.lock",
        "playbooks/mirror_lock.yml",
        "playbooks/mirror_build.yml",
    ],
)
def test_every_make_command_named_to_the_operator_exists(path):
    named = set(MAKE_RE.findall((PROJECT / path).read_text()))
    assert named, f"{path} names no make target (the check would be vacuous)"
    assert named <= makefile_targets(), f"{path} names missing make targets: {sorted(named - makefile_targets())}"


def test_mirror_playbooks_build_the_lab_image():
    """mirror_lock.yml must resolve against the image lab hosts boot: same module defaults as roles/lab."""
    tree = ast.parse((PROJECT / "plugins/modules/enp_lab_image.py").read_text())
    module_packages = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DEFAULT_PACKAGES"
    )
    role = yaml.safe_load((PROJECT / "roles/lab/defaults/main.yml").read_text())
    assert role["lab_image_packages"] == module_packages and role["lab_image_suite"] == "bookworm"
    for name in ("mirror_lock.yml", "mirror_build.yml"):
        play = yaml.safe_load((PROJECT / "playbooks" / name).read_text())[0]
        image_args = next(t["enp_lab_image"] for t in play["tasks"] if "enp_lab_image" in t)
        assert image_args["cache_dir"].endswith("}}/images")
        assert "ENP_CACHE_DIR" in play["vars"]["enp_mirror_cache_dir"]
        assert not {"suite", "packages", "security_updates"} & set(image_args), f"{name} builds another image"
