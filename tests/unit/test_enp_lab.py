"""Unit tests for the lab provider's pure logic (plugins/module_utils/enp_lab.py)."""

from __future__ import annotations

import ipaddress

import pytest
from ansible.module_utils.enp_lab import (
    HostSpec,
    LabError,
    cgroup_hierarchies,
    check_lab_address,
    check_name,
    check_username,
    container_ifname,
    debian_mirrors,
    extra_veth_name,
    find_clashes,
    image_cache_key,
    networkd_config,
    nspawn_command,
    parse_deb822_sources,
    parse_interfaces,
    parse_one_line_sources,
    plan_lab,
    process_start_time,
)
from hypothesis import given
from hypothesis import strategies as st

ZONES = {
    "dmz": {
        "subnet": "198.18.1.0/24",
        "gateway": "198.18.1.254",
        "lab_bridge": "enp-dmz",
        "lab_controller": "198.18.1.1",
    },
    "mgmt": {
        "subnet": "198.18.4.0/24",
        "gateway": "198.18.4.254",
        "lab_bridge": "enp-mgmt",
        "lab_controller": "198.18.4.1",
    },
}


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("198.18.0.1/24", True),
        ("198.19.255.254/16", True),
        ("198.20.0.1/24", False),  # just past the /15
        ("198.17.255.1/24", False),
        ("10.0.0.1/24", False),
        ("192.168.1.10/24", False),
        ("8.8.8.8/32", False),
        ("198.18.0.0/14", False),  # network larger than the lab range
        ("not-an-ip/24", False),
        ("", False),
    ],
)
def test_check_lab_address_only_accepts_the_benchmark_range(address: str, ok: bool) -> None:
    if ok:
        assert str(check_lab_address(address).ip) == address.split("/")[0]
    else:
        with pytest.raises(LabError):
            check_lab_address(address)


def test_refusal_message_tells_the_operator_what_to_do() -> None:
    with pytest.raises(LabError, match=r"outside the lab range 198\.18\.0\.0/15.*pick an address"):
        check_lab_address("10.1.2.3/24")


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=15, max_value=32))
def test_any_accepted_address_lies_inside_the_lab_range(raw: int, prefix: int) -> None:
    address = f"{ipaddress.IPv4Address(raw)}/{prefix}"
    inside = ipaddress.ip_interface(address).network.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
    if inside:
        check_lab_address(address)
    else:
        with pytest.raises(LabError):
            check_lab_address(address)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("db1", True), ("mol-apt-baseline-1", True), ("DB1", False), ("-db", False), ("db_1", False), ("a" * 33, False)],
)
def test_check_name(name: str, ok: bool) -> None:
    if ok:
        assert check_name(name) == name
    else:
        with pytest.raises(LabError):
            check_name(name)


@pytest.mark.parametrize(("user", "ok"), [("enp", True), ("ops_1", True), ("root", False), ("Bad", False)])
def test_operator_user_is_never_root(user: str, ok: bool) -> None:
    if ok:
        assert check_username(user) == user
    else:
        with pytest.raises(LabError):
            check_username(user)


def test_parse_interfaces_checks_gateway_is_on_the_subnet() -> None:
    with pytest.raises(LabError, match="not inside"):
        parse_interfaces([{"bridge": "enp-dmz", "address": "198.18.1.11/24", "gateway": "198.18.2.254"}])
    [iface] = parse_interfaces([{"bridge": "enp-dmz", "address": "198.18.1.11/24", "gateway": "198.18.1.254"}])
    assert iface.gateway == "198.18.1.254"
    with pytest.raises(LabError, match="at least one interface"):
        parse_interfaces([])


def test_find_clashes_reports_duplicate_addresses_and_names() -> None:
    one = parse_interfaces([{"bridge": "enp-dmz", "address": "198.18.1.11/24"}])
    hosts = [HostSpec("web1", one), HostSpec("web2", one), HostSpec("web1", one)]
    problems = find_clashes(hosts)
    assert any("198.18.1.11" in p and "web2" in p for p in problems)
    assert any("web1 is defined 2 times" in p for p in problems)
    assert find_clashes([HostSpec("web1", one)]) == []
    bridge_clash = find_clashes([HostSpec("web1", one)], {"enp-dmz": "198.18.1.11/24"})
    assert bridge_clash and "bridge enp-dmz" in bridge_clash[0]


def test_image_cache_key_is_stable_and_sensitive() -> None:
    base = image_cache_key("bookworm", "minbase", ["sudo", "python3"])
    assert base == image_cache_key("bookworm", "minbase", ["python3", "sudo", "sudo"])
    assert base != image_cache_key("bookworm", "minbase", ["python3"])
    assert base != image_cache_key("trixie", "minbase", ["sudo", "python3"])
    assert len(base) == 16


SOURCES_DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    ("stanzas", "expected"),
    [
        (
            parse_deb822_sources(SOURCES_DEB822),
            ("http://mirror.example/debian", "http://mirror.example/debian-security"),
        ),
        (
            parse_one_line_sources(
                "deb [signed-by=/k.gpg arch=amd64] http://m.example/debian/ trixie main\n"
                "deb http://m.example/sec trixie-security main\n"
            ),
            ("http://m.example/debian", "http://m.example/sec"),
        ),
        (parse_one_line_sources("# deb http://x/ bookworm main\n"), (None, None)),
        ([{"Types": "deb-src", "URIs": "http://x/debian", "Suites": "bookworm"}], (None, None)),
    ],
)
def test_debian_mirrors_from_controller_sources(stanzas: list[dict], expected: tuple) -> None:
    assert debian_mirrors(stanzas) == expected


def test_networkd_config_without_gateway_has_no_route() -> None:
    [iface] = parse_interfaces([{"bridge": "enp-dmz", "address": "198.18.1.11/24"}])
    text = networkd_config("host0", iface)
    assert "Name=host0" in text and "Address=198.18.1.11/24" in text
    assert "Gateway" not in text
    [routed] = parse_interfaces([{"bridge": "enp-dmz", "address": "198.18.1.11/24", "gateway": "198.18.1.254"}])
    assert "Gateway=198.18.1.254" in networkd_config("host0", routed)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32), st.integers(1, 9))
def test_extra_veth_names_fit_ifnamsiz(host: str, index: int) -> None:
    assert len(extra_veth_name(host, index)) <= 15


def test_nspawn_command_for_a_gateway_has_one_extra_veth_per_further_zone() -> None:
    interfaces = parse_interfaces(
        [
            {"bridge": "enp-mgmt", "address": "198.18.4.254/24"},
            {"bridge": "enp-dmz", "address": "198.18.1.254/24"},
        ]
    )
    cmd = nspawn_command("gw1", "/x/merged", interfaces)
    assert "--network-bridge=enp-mgmt" in cmd
    assert f"--network-veth-extra={extra_veth_name('gw1', 1)}:eth1" in cmd
    assert "--register=no" in cmd and "--keep-unit" in cmd and "--boot" in cmd
    assert container_ifname(0) == "host0" and container_ifname(2) == "eth2"


def test_cgroup_hierarchies_from_mounts() -> None:
    mounts = (
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
        "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
        "cgroup /elsewhere cgroup rw 0 0\n"
    )
    assert cgroup_hierarchies(mounts) == [
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/unified",
    ]


def test_process_start_time_handles_spaces_in_command_name() -> None:
    # Each field k (1-based, as in proc(5)) holds the value k, so field 22 (starttime) reads 22.
    fields = " ".join(str(k) for k in range(4, 53))
    stat = f"1234 (systemd ) nspawn) S {fields}"
    assert process_start_time(stat) == 22


def test_plan_lab_gives_the_gateway_one_interface_per_zone() -> None:
    hosts = [
        {"name": "web1", "zone": "dmz", "address": "198.18.1.11"},
        {"name": "gw1", "zone": "mgmt", "address": "198.18.4.254", "gateway_host": True},
    ]
    plan = plan_lab(hosts, ZONES)
    assert plan["problems"] == []
    by_name = {h["name"]: h for h in plan["hosts"]}
    assert [i["bridge"] for i in by_name["gw1"]["interfaces"]] == ["enp-mgmt", "enp-dmz"]
    assert by_name["gw1"]["router"] is True
    assert by_name["web1"]["interfaces"] == [
        {"bridge": "enp-dmz", "address": "198.18.1.11/24", "gateway": "198.18.1.254"}
    ]
    assert {b["bridge"]: b["address"] for b in plan["bridges"]} == {
        "enp-dmz": "198.18.1.1/24",
        "enp-mgmt": "198.18.4.1/24",
    }


@pytest.mark.parametrize(
    ("hosts", "zones", "message"),
    [
        ([{"name": "web1", "zone": "dmz", "address": "198.18.2.11"}], ZONES, "outside its zone"),
        ([{"name": "web1", "zone": "nowhere", "address": "198.18.1.11"}], ZONES, "not defined in enp_zones"),
        ([{"name": "web1", "zone": "dmz", "address": "198.18.1.1"}], ZONES, "already used by bridge"),
        (
            [
                {"name": "web1", "zone": "dmz", "address": "198.18.1.11"},
                {"name": "web2", "zone": "dmz", "address": "198.18.1.11"},
            ],
            ZONES,
            "already used by host",
        ),
        (
            [{"name": "gw1", "zone": "mgmt", "address": "198.18.4.10", "gateway_host": True}],
            ZONES,
            "must have ansible_host 198.18.4.254",
        ),
        (
            [{"name": "web1", "zone": "dmz", "address": "198.18.1.11"}],
            {"dmz": dict(ZONES["dmz"], gateway="198.18.1.1")},
            "never the controller",
        ),
        ([{"name": "web1", "zone": "dmz", "address": "198.18.1.255"}], ZONES, "broadcast"),
        (
            [{"name": "web1", "zone": "dmz", "address": "198.18.1.11"}],
            {"dmz": dict(ZONES["dmz"], gateway="198.18.1.0")},
            "network or broadcast",
        ),
        (
            [{"name": "web1", "zone": "dmz", "address": "10.0.1.11"}],
            {"dmz": dict(ZONES["dmz"], subnet="10.0.1.0/24", lab_controller="10.0.1.1")},
            "outside the lab range",
        ),
    ],
)
def test_plan_lab_reports_inventory_mistakes(hosts: list[dict], zones: dict, message: str) -> None:
    problems = plan_lab(hosts, zones)["problems"]
    assert any(message in p for p in problems), problems


def test_the_shipped_lab_inventory_plans_cleanly() -> None:
    """The real inventories/lab must satisfy the provider: zones, addresses, one gateway in every zone."""
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[2] / "inventories" / "lab"
    zones = yaml.safe_load((root / "group_vars/all/zones.yml").read_text())["enp_zones"]
    inventory = yaml.safe_load((root / "hosts.yml").read_text())

    hosts: list[dict] = []

    def walk(group: str, node: dict, zone: str | None) -> None:
        gv = root / "group_vars" / f"{group}.yml"
        extra = yaml.safe_load(gv.read_text()) if gv.exists() else {}
        zone = extra.get("enp_zone", zone)
        for name, hv in (node.get("hosts") or {}).items():
            hosts.append(
                {
                    "name": name,
                    "zone": zone,
                    "address": hv["ansible_host"],
                    "gateway_host": bool(extra.get("enp_gateway_host")),
                }
            )
        for child, sub in (node.get("children") or {}).items():
            walk(child, sub or {}, zone)

    walk("all", inventory["all"], None)
    plan = plan_lab(hosts, zones)
    assert plan["problems"] == []
    assert len(plan["hosts"]) >= 11
    [gateway] = [h for h in plan["hosts"] if h["router"]]
    assert len(gateway["interfaces"]) == len(zones)
    assert {h["zone"] for h in plan["hosts"]} == set(zones)


def test_isolation_ruleset_drops_routing_but_not_bridging_and_fences_the_controller() -> None:
    from ansible.module_utils.enp_lab import isolation_ruleset, isolation_table_name

    table = isolation_table_name("/tmp/some-lab")
    assert table.startswith("enp_lab_") and table == isolation_table_name("/tmp/some-lab")
    assert table != isolation_table_name("/tmp/other-lab")
    text = isolation_ruleset(table, ["enp-dmz", "enp-app", "enp-dmz"], [8080])
    assert 'iifname "enp-dmz" oifname != "enp-dmz"' in text and 'oifname "enp-app" iifname != "enp-app"' in text
    assert "tcp dport { 8080 } accept" in text
    assert text.count("hook forward") == 1 and text.count("hook input") == 1
    assert "dport" not in isolation_ruleset(table, ["enp-dmz"], [])


def test_isolation_ruleset_is_valid_nft(tmp_path) -> None:
    import os
    import shutil
    import subprocess

    from ansible.module_utils.enp_lab import isolation_ruleset

    if not shutil.which("nft") or os.geteuid() != 0:
        pytest.skip("nft -c needs the nftables package and root")
    path = tmp_path / "rules.nft"
    path.write_text(isolation_ruleset("enp_lab_unittest", ["enp-dmz", "enp-app"], [8080]))
    check = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
