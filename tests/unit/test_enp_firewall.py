"""The zone matrix turned into nftables rules (plugins/module_utils/enp_firewall.py, filters enp_firewall_*).

Small synthetic estates pin each rule of the planner; the last tests load the REAL lab inventory (templated by
Ansible, as a play sees it) and check the segmentation docs/firewall.md promises.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import pathlib
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.module_utils.enp_firewall import (
    NAME_PATTERN,
    Estate,
    FirewallError,
    Flow,
    _unique,
    forward_plan,
    host_plan,
    management_gaps,
    parse_flows,
    plan,
    render_rule,
)
from hypothesis import given, settings
from hypothesis import strategies as st

PROJECT = pathlib.Path(__file__).resolve().parents[2]

# --- a four-zone estate like the lab's, on other addresses ---------------------------------------------------
ZONES = {
    "dmz": {"subnet": "10.1.0.0/24", "gateway": "10.1.0.254"},
    "app": {"subnet": "10.2.0.0/24", "gateway": "10.2.0.254"},
    "data": {"subnet": "10.3.0.0/24", "gateway": "10.3.0.254"},
    "mgmt": {"subnet": "10.4.0.0/24", "gateway": "10.4.0.254"},
}
HOSTS = {
    "lb1": ("10.1.0.10", "dmz"),
    "web1": ("10.1.0.11", "dmz"),
    "web2": ("10.1.0.12", "dmz"),
    "app1": ("10.2.0.11", "app"),
    "app2": ("10.2.0.12", "app"),
    "db1": ("10.3.0.11", "data"),
    "db2": ("10.3.0.12", "data"),
    "log1": ("10.4.0.12", "mgmt"),
    "bastion1": ("10.4.0.13", "mgmt"),
    "gw1": ("10.4.0.1", "mgmt"),
}
HOSTVARS = {name: {"ansible_host": addr, "enp_zone": zone} for name, (addr, zone) in HOSTS.items()}
HOSTVARS["gw1"]["enp_gateway_host"] = True
GROUPS = {
    "all": list(HOSTS),
    "estate": list(HOSTS),
    "dmz": ["lb1", "web1", "web2"],
    "loadbalancers": ["lb1"],
    "web": ["web1", "web2"],
    "app": ["app1", "app2"],
    "appservers": ["app1", "app2"],
    "data": ["db1", "db2"],
    "postgresql": ["db1", "db2"],
    "db_primary": ["db1"],
    "db_standby": ["db2"],
    "mgmt": ["log1", "bastion1"],  # as in the lab, the gateway is in zone mgmt but not in group mgmt
    "log_servers": ["log1"],
    "bastions": ["bastion1"],
    "gateways": ["gw1"],
}
MANAGEMENT = ["10.4.0.13", "192.0.2.7"]  # the bastion and a controller outside every zone
SETS = {"management": MANAGEMENT, "ntp_servers": ["192.0.2.123", "2001:db8:123::1"], "empty": []}
FLOWS = [
    {"name": "citizens", "from": "internet", "to": "loadbalancers", "tcp": [443, 80]},
    {"name": "lb to web", "from": "loadbalancers", "to": "web", "tcp": [443]},
    {"name": "web to app", "from": "web", "to": "appservers", "tcp": ["8000"]},
    {"name": "app to db", "from": "appservers", "to": "postgresql", "tcp": [5432]},
    {"name": "replication", "from": "db_standby", "to": "db_primary", "tcp": [5432]},
    {"name": "ssh", "from": ["mgmt", "management"], "to": "estate", "tcp": [22]},
    {"name": "logs", "from": "estate", "to": "log_servers", "tcp": [514, 6514]},
    {"name": "time", "from": "estate", "to": "ntp_servers", "udp": [123]},
]


def estate(**changes: object) -> Estate:
    args = {"groups": GROUPS, "hostvars": HOSTVARS, "zones": ZONES, "address_sets": SETS}
    args.update(changes)
    return Estate(**args)  # type: ignore[arg-type]


def plan_of(host: str, flows: list[dict] | None = None, **changes: object) -> dict:
    args = {"groups": GROUPS, "hostvars": HOSTVARS, "zones": ZONES, "address_sets": SETS, "gateway": False}
    args.update(changes)
    return plan(FLOWS if flows is None else flows, host, **args)  # type: ignore[arg-type]


def accepted_by(rules: list[dict], proto: str, port: int, saddr: str | None = None, daddr: str | None = None) -> set:
    """Names of the flows whose rules accept a new connection (None: the rule has no such match)."""

    def matches(nets: list[str] | None, addr: str | None) -> bool:
        if nets is None:
            return True
        return addr is not None and any(ipaddress.ip_address(addr) in ipaddress.ip_network(n) for n in nets)

    return {
        r["flow"]
        for r in rules
        if r["proto"] == proto and port in r["ports"] and matches(r["saddr"], saddr) and matches(r["daddr"], daddr)
    }


def rules_of(rules: list[dict], flow: str) -> list[dict]:
    return [r for r in rules if r["flow"] == flow]


# --- the matrix is validated, and every message says what to fix -------------------------------------------
OK = {"name": "ok", "from": "web", "to": "appservers", "tcp": [8000]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"a": OK}, r"must be a list of flows, not dict"),
        (["web -> app"], r"flow 1 must be a mapping with name, from, to and tcp/udp"),
        ([{k: v for k, v in OK.items() if k != "from"}], r"flow 'ok': missing 'from'"),
        ([{k: v for k, v in OK.items() if k != "to"}], r"flow 'ok': missing 'to'"),
        ([{**OK, "tcp": [70000]}], r"flow 'ok' tcp: 70000 is not a port \(1-65535\)"),
        ([{**OK, "tcp": [0]}], r"flow 'ok' tcp: 0 is not a port \(1-65535\)"),
        ([{**OK, "udp": ["domain"]}], r"flow 'ok' udp: 'domain' is not a port number"),
        ([{**OK, "tcp": "80,443"}], r"flow 'ok' tcp: '80,443' is not a port number"),
        ([{**OK, "tcp": [True]}], r"flow 'ok' tcp: True is not a port number"),
        ([OK, {**OK, "tcp": [443]}], r"flow 'ok': the name is used twice; each flow needs its own"),
        ([{**OK, "port": 22}], r"flow 'ok': unknown key\(s\) port \(known: from, name, tcp, to, udp\)"),
        ([{**OK, 443: "https", "proto": "tcp"}], r"unknown key\(s\) 443, proto \(known: "),  # YAML number keys
        ([{**OK, "name": 'say "hi"'}], r"flow 1: name 'say \"hi\"' must be 1-64 plain characters"),
        ([{**OK, "name": "a#b"}], r"flow 1: name 'a#b' must be 1-64 plain characters .*it becomes the rule's comment"),
        ([{**OK, "name": "x" * 65}], r"flow 1: name 'x{65}' must be 1-64 plain characters"),
        ([{**OK, "name": ""}], r"flow 1: name '' must be 1-64"),
        ([{k: v for k, v in OK.items() if k != "name"}], r"flow 1: name '' must be 1-64"),
        ([{**OK, "name": None}], r"flow 1: name '' must be 1-64"),  # `name:` left empty in YAML
        ([{**OK, "tcp": None}], r"flow 'ok': give at least one port in tcp or udp"),
        ([{**OK, "tcp": [], "udp": []}], r"flow 'ok': give at least one port in tcp or udp"),
        ([{**OK, "from": []}], r"flow 'ok' from must be a name or a non-empty list of names \(got \[\]\)"),
        ([{**OK, "to": ["web", " "]}], r"flow 'ok' to must be a name or a non-empty list of names"),
        ([{**OK, "to": {"group": "web"}}], r"flow 'ok' to must be a name or a non-empty list of names"),
    ],
)
def test_parse_flows_refuses_a_bad_matrix_saying_what_to_fix(raw: object, message: str) -> None:
    with pytest.raises(FirewallError, match=message):
        parse_flows(raw)


def test_parse_flows_normalises_names_and_ports() -> None:
    flows = parse_flows(
        [
            {"name": " web to app ", "from": " web ", "to": ["appservers", "10.9.0.0/16"], "tcp": ["8000", 80, 80]},
            {"name": "dns", "from": "estate", "to": "internet", "udp": 53},
        ]
    )
    assert flows == [
        Flow("web to app", ("web",), ("appservers", "10.9.0.0/16"), (80, 8000), ()),
        Flow("dns", ("estate",), ("internet",), (), (53,)),
    ]
    assert flows[0].ports() == [("tcp", (80, 8000))]
    assert flows[1].ports() == [("udp", (53,))]


# --- the inventory must give what the firewall needs ---------------------------------------------------------
def test_placeholder_in_an_address_set_is_refused() -> None:
    with pytest.raises(FirewallError, match=r"address set 'ntp_servers': 'CHANGE-ME' is not an IP.*replace"):
        estate(address_sets={"ntp_servers": ["CHANGE-ME"]})


def test_a_peer_without_an_ip_address_is_refused_never_resolved() -> None:
    hostvars = {**HOSTVARS, "app1": {"ansible_host": "app1.example", "enp_zone": "app"}}
    with pytest.raises(FirewallError, match=r"host app1 has no IP address.*never trusts DNS; set ansible_host"):
        plan_of("web1", hostvars=hostvars)


def test_a_host_outside_the_inventory_is_refused() -> None:
    with pytest.raises(FirewallError, match=r"host 'web9' is not in the inventory"):
        plan_of("web9")


def test_forward_needs_every_zone_subnet_and_every_host_in_a_zone() -> None:
    zones = {**ZONES, "data": {"subnet": "CHANGE-ME/24"}}
    with pytest.raises(
        FirewallError, match=r"flow 'app to db' \(host db1\): zone 'data' has no usable subnet.*zones.yml"
    ):
        plan_of("gw1", zones=zones, gateway=True)
    hostvars = {**HOSTVARS, "db2": {"ansible_host": "10.3.0.12"}}
    with pytest.raises(FirewallError, match=r"flow 'app to db': host db2 has no enp_zone; put it in a zone group"):
        plan_of("gw1", hostvars=hostvars, gateway=True)


# --- host rules: peers by address ---------------------------------------------------------------------------
def test_peers_are_host_addresses_not_the_shared_subnet() -> None:
    """Every zone on one subnet (the molecule scenario): db1 still accepts 5432 from the app hosts only."""
    lan = {"lan": {"subnet": "10.0.0.0/24"}}
    hostvars = {name: {"ansible_host": f"10.0.0.{i + 10}", "enp_zone": "lan"} for i, name in enumerate(HOSTS)}
    hostvars["gw1"]["enp_gateway_host"] = True
    result = plan_of("db1", zones=lan, hostvars=hostvars)
    app = rules_of(result["input"], "app to db")
    assert [r["saddr"] for r in app] == [["10.0.0.13/32", "10.0.0.14/32"]]
    assert app[0]["nft"] == 'ip saddr { 10.0.0.13, 10.0.0.14 } tcp dport 5432 accept comment "app to db"'
    assert accepted_by(result["input"], "tcp", 5432, saddr="10.0.0.11") == set()  # web1, same subnet
    assert accepted_by(result["input"], "tcp", 5432, saddr="10.0.0.16") == {"replication"}  # db2


def test_a_destination_gets_input_rules_and_a_source_output_rules() -> None:
    web1 = plan_of("web1")
    assert web1["flows"] == {
        "input": ["lb to web", "ssh"],
        "output": ["logs", "time", "web to app"],
        "forward": [],
    }
    (to_app,) = rules_of(web1["output"], "web to app")
    assert to_app == {
        "flow": "web to app",
        "proto": "tcp",
        "ports": [8000],
        "family": "ip",
        "saddr": None,
        "daddr": ["10.2.0.11/32", "10.2.0.12/32"],
        "nft": 'ip daddr { 10.2.0.11, 10.2.0.12 } tcp dport 8000 accept comment "web to app"',
    }
    (from_lb,) = rules_of(web1["input"], "lb to web")
    assert from_lb["nft"] == 'ip saddr 10.1.0.10 tcp dport 443 accept comment "lb to web"'
    assert from_lb["daddr"] is None
    assert rules_of(web1["input"], "web to app") == []  # web1 is no app server
    direct = host_plan(parse_flows(FLOWS), estate(), "web1")
    assert (direct["input"], direct["output"]) == (web1["input"], web1["output"])


def test_internet_as_source_accepts_from_any_address() -> None:
    (rule,) = plan_of("lb1")["input"][:1]
    assert rule["flow"] == "citizens"
    assert (rule["saddr"], rule["family"]) == (None, None)
    assert rule["nft"] == 'tcp dport { 80, 443 } accept comment "citizens"'


def test_internet_as_destination_never_makes_a_host_a_destination() -> None:
    flows = [{"name": "updates", "from": "web", "to": "internet", "tcp": [443]}]
    assert plan_of("web1", flows)["output"][0]["nft"] == 'tcp dport 443 accept comment "updates"'
    assert plan_of("web1", flows)["input"] == []
    assert plan_of("app1", flows)["input"] == plan_of("app1", flows)["output"] == []


def test_address_sets_and_literal_cidrs_are_peers_and_make_hosts_members() -> None:
    flows = [
        {"name": "partners", "from": ["203.0.113.0/24", "198.51.100.7"], "to": "web", "tcp": [443]},
        {"name": "to the app subnet", "from": "bastions", "to": "10.2.0.0/24", "tcp": [22]},
    ]
    (partners,) = plan_of("web1", flows)["input"]
    assert partners["saddr"] == ["198.51.100.7/32", "203.0.113.0/24"]
    assert partners["nft"] == 'ip saddr { 198.51.100.7, 203.0.113.0/24 } tcp dport 443 accept comment "partners"'
    (ssh,) = plan_of("app2", flows)["input"]  # app2 is inside the literal CIDR: it is a destination
    assert ssh["saddr"] == ["10.4.0.13/32"]
    (out,) = plan_of("bastion1", flows)["output"]
    assert out["daddr"] == ["10.2.0.0/24"]
    # a host inside a set is one of the set's ends: the bastion is a management source, so it may SSH out
    assert accepted_by(plan_of("bastion1")["output"], "tcp", 22, daddr="10.3.0.11") == {"ssh"}
    assert accepted_by(plan_of("web1")["output"], "tcp", 22, daddr="10.3.0.11") == set()


def test_ssh_input_comes_from_the_mgmt_group_and_the_management_set() -> None:
    (ssh,) = rules_of(plan_of("db1")["input"], "ssh")
    # log1, bastion1 (in the group and the set: one element), the controller
    assert ssh["saddr"] == ["10.4.0.12/32", "10.4.0.13/32", "192.0.2.7/32"]


def test_names_that_stand_for_nothing_are_collected_across_the_whole_matrix() -> None:
    flows = [*FLOWS, {"name": "typo", "from": "appserver", "to": ["postgres", "10.3.0.300"], "tcp": [5432]}]
    result = plan_of("web1", flows)  # web1 takes no part in the flow with the typos
    assert result["unknown"] == ["10.3.0.300", "appserver", "postgres"]
    assert plan_of("db1", flows)["unknown"] == ["10.3.0.300", "appserver", "postgres"]
    assert plan_of("db1")["unknown"] == []
    assert "typo" not in plan_of("db1", flows)["flows"]["input"]  # fail-closed: no rule for it


def test_a_flow_without_a_peer_leaves_a_note_and_no_rule() -> None:
    flows = [
        {"name": "self", "from": "db_primary", "to": "db_primary", "tcp": [5432]},
        {"name": "nobody", "from": "empty", "to": "web", "tcp": [443]},
    ]
    db1 = plan_of("db1", flows)
    assert db1["input"] == db1["output"] == []
    assert db1["notes"] == [
        "self: no peer for input (no host in db_primary)",
        "self: no peer for output (no host in db_primary)",
    ]
    assert plan_of("web1", flows)["notes"] == ["nobody: no peer for input (no host in empty)"]


def test_the_gateway_speaks_from_its_address_in_every_zone() -> None:
    assert estate().addresses("gw1") == [
        ipaddress.ip_address(a) for a in ("10.4.0.1", "10.1.0.254", "10.2.0.254", "10.3.0.254", "10.4.0.254")
    ]
    assert estate().addresses("web1") == [ipaddress.ip_address("10.1.0.11")]
    flows = [{"name": "metrics", "from": "gateways", "to": "web", "tcp": [9100]}]
    (rule,) = plan_of("web1", flows)["input"]
    assert rule["saddr"] == ["10.1.0.254/32", "10.2.0.254/32", "10.3.0.254/32", "10.4.0.1/32", "10.4.0.254/32"]
    # a literal gateway address makes the gateway the destination
    flows = [{"name": "dns on the gateway", "from": "dmz", "to": "10.1.0.254", "udp": [53]}]
    (dns,) = plan_of("gw1", flows)["input"]
    assert dns["saddr"] == ["10.1.0.10/32", "10.1.0.11/32", "10.1.0.12/32"]


def test_ipv4_and_ipv6_peers_get_one_rule_per_family() -> None:
    hostvars = {**HOSTVARS, "app2": {"ansible_host": "2001:db8:2::12", "enp_zone": "app"}}
    result = plan_of("db1", hostvars=hostvars)
    assert [(r["family"], r["nft"]) for r in rules_of(result["input"], "app to db")] == [
        ("ip", 'ip saddr 10.2.0.11 tcp dport 5432 accept comment "app to db"'),
        ("ip6", 'ip6 saddr 2001:db8:2::12 tcp dport 5432 accept comment "app to db"'),
    ]
    # the NTP set holds both families too
    assert [r["nft"] for r in rules_of(result["output"], "time")] == [
        'ip daddr 192.0.2.123 udp dport 123 accept comment "time"',
        'ip6 daddr 2001:db8:123::1 udp dport 123 accept comment "time"',
    ]


# --- gateway: forward rules by zone subnet ------------------------------------------------------------------
def test_forward_rules_join_the_zone_subnets_of_each_flow() -> None:
    rules = forward_plan(parse_flows(FLOWS), estate())
    by_flow = {r["flow"]: r["nft"] for r in rules if r["proto"] == "tcp"}
    assert by_flow == {
        "citizens": 'ip daddr 10.1.0.0/24 tcp dport { 80, 443 } accept comment "citizens"',
        "web to app": 'ip saddr 10.1.0.0/24 ip daddr 10.2.0.0/24 tcp dport 8000 accept comment "web to app"',
        "app to db": 'ip saddr 10.2.0.0/24 ip daddr 10.3.0.0/24 tcp dport 5432 accept comment "app to db"',
        # the management set's bastion is inside the mgmt subnet: one element, not two overlapping ones
        "ssh": "ip saddr { 10.4.0.0/24, 192.0.2.7 } ip daddr { 10.1.0.0/24, 10.2.0.0/24, 10.3.0.0/24, 10.4.0.0/24 } "
        'tcp dport 22 accept comment "ssh"',
        "logs": "ip saddr { 10.1.0.0/24, 10.2.0.0/24, 10.3.0.0/24, 10.4.0.0/24 } ip daddr 10.4.0.0/24 "
        'tcp dport { 514, 6514 } accept comment "logs"',
    }
    # intra-zone flows never cross the gateway: no rule for the load balancer (dmz -> dmz) or replication
    assert {r["flow"] for r in rules} == {"citizens", "web to app", "app to db", "ssh", "logs", "time"}
    assert accepted_by(rules, "tcp", 5432, saddr="10.1.0.11", daddr="10.3.0.11") == set()  # no dmz -> data


def test_forward_by_zone_name_and_across_families() -> None:
    flows = [{"name": "dns", "from": "internet", "to": "internet", "udp": [53]}]
    assert [r["nft"] for r in forward_plan(parse_flows(flows), estate())] == ['udp dport 53 accept comment "dns"']
    zones = {**ZONES, "app": {"subnet": "2001:db8:2::/64"}, "data": {"subnet": "10.3.0.0/24"}}
    flows = [
        {"name": "zones", "from": "dmz", "to": ["app", "data"], "tcp": [1]},
        {"name": "v6 only", "from": "app", "to": "internet", "tcp": [2]},
        {"name": "no common family", "from": "app", "to": "data", "tcp": [3]},
    ]
    rules = forward_plan(parse_flows(flows), estate(zones=zones))
    assert [r["nft"] for r in rules] == [
        'ip saddr 10.1.0.0/24 ip daddr 10.3.0.0/24 tcp dport 1 accept comment "zones"',
        'ip6 saddr 2001:db8:2::/64 tcp dport 2 accept comment "v6 only"',
    ]


def test_the_gateways_own_traffic_is_never_forwarded() -> None:
    flows = [
        {"name": "from the gateway", "from": "gateways", "to": "web", "tcp": [9100]},
        {"name": "with the gateway", "from": ["gateways", "appservers"], "to": "log_servers", "tcp": [514]},
    ]
    gw1 = plan_of("gw1", flows, gateway=True)
    assert [r["nft"] for r in gw1["forward"]] == [
        'ip saddr 10.2.0.0/24 ip daddr 10.4.0.0/24 tcp dport 514 accept comment "with the gateway"'
    ]
    assert gw1["flows"]["output"] == ["from the gateway", "with the gateway"]  # its own traffic is output
    assert plan_of("gw1", flows)["forward"] == []  # not planned unless the host is a gateway
    assert gw1["gateway"] is True


# --- _unique: nft refuses overlapping elements of one set ---------------------------------------------------
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (["10.0.0.5/32", "10.0.0.0/24", "10.0.0.0/24"], ["10.0.0.0/24"]),
        (["10.0.0.0/24", "10.0.0.0/16", "10.1.2.3/32"], ["10.0.0.0/16", "10.1.2.3/32"]),
        (["10.0.1.0/24", "10.0.0.0/24"], ["10.0.0.0/24", "10.0.1.0/24"]),  # neighbours stay, sorted
        (["2001:db8::/32", "2001:db8::1/128", "10.0.0.1/32"], ["10.0.0.1/32", "2001:db8::/32"]),
        (["::/0", "0.0.0.0/0", "10.0.0.0/8"], ["0.0.0.0/0", "::/0"]),  # families never swallow each other
        ([], []),
    ],
)
def test_unique_drops_duplicates_and_nested_networks(given: list[str], kept: list[str]) -> None:
    assert [str(n) for n in _unique(ipaddress.ip_network(g) for g in given)] == kept


networks = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=20, max_value=32),
)


@given(st.lists(networks, max_size=12))
def test_unique_keeps_what_it_covers_without_overlap(nets: list) -> None:
    kept = _unique(nets)
    assert all(any(n.subnet_of(k) for k in kept) for n in nets)
    assert not any(a != b and a.overlaps(b) for a in kept for b in kept)
    assert kept == sorted(kept)


# --- render_rule ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "nft"),
    [
        ({"flow": "a", "proto": "tcp", "ports": [22], "family": None}, 'tcp dport 22 accept comment "a"'),
        (
            {"flow": "b", "proto": "udp", "ports": [53, 5353], "family": "ip", "saddr": ["10.0.0.1/32"]},
            'ip saddr 10.0.0.1 udp dport { 53, 5353 } accept comment "b"',
        ),
        (
            {"flow": "c", "proto": "tcp", "ports": [1], "family": "ip6", "saddr": None, "daddr": ["2001:db8::/64"]},
            'ip6 daddr 2001:db8::/64 tcp dport 1 accept comment "c"',
        ),
    ],
)
def test_render_rule(rule: dict, nft: str) -> None:
    assert render_rule(rule) == nft


# --- management_gaps: the pre-flight's lockout check ---------------------------------------------------------
def test_no_gap_when_the_matrix_lets_management_in() -> None:
    for host in HOSTS:
        result = plan_of(host, gateway=host == "gw1")
        assert management_gaps(result, MANAGEMENT, 22, ZONES) == {"input": [], "forward": []}, host


def test_a_management_source_cut_off_from_ssh_input_is_found() -> None:
    flows = [{**FLOWS[5], "from": "bastions"}, *FLOWS[:5]]
    gaps = management_gaps(plan_of("db1", flows), MANAGEMENT, 22, ZONES)
    assert gaps == {"input": ["192.0.2.7/32"], "forward": []}
    # a whole management subnet needs a rule that covers all of it, not one host of it
    assert management_gaps(plan_of("db1", flows), ["10.4.0.0/24"])["input"] == ["10.4.0.0/24"]
    assert management_gaps(plan_of("db1", flows), ["10.4.0.13"])["input"] == []
    # ssh on another port, or udp/22, does not count
    assert management_gaps(plan_of("db1", flows), ["10.4.0.13"], 2222)["input"] == ["10.4.0.13/32"]
    udp = [{"name": "udp 22", "from": "management", "to": "estate", "udp": [22]}]
    assert management_gaps(plan_of("db1", udp), MANAGEMENT)["input"] == ["10.4.0.13/32", "192.0.2.7/32"]


def test_a_management_source_that_is_the_host_itself_is_no_gap() -> None:
    """Regression: the bastion listed as a management source was reported cut off from itself (it arrives over
    loopback, always accepted), so the pre-flight refused the bastion."""
    bastion1 = plan_of("bastion1")
    assert bastion1["addresses"] == ["10.4.0.13"]
    assert "10.4.0.13/32" not in rules_of(bastion1["input"], "ssh")[0]["saddr"]
    assert management_gaps(bastion1, ["10.4.0.13"]) == {"input": [], "forward": []}
    assert management_gaps(plan_of("log1"), ["10.4.0.13", "10.4.0.99"])["input"] == ["10.4.0.99/32"]


def test_ssh_from_anywhere_covers_every_source() -> None:
    flows = [{"name": "ssh", "from": "internet", "to": "estate", "tcp": [22]}]
    assert management_gaps(plan_of("web1", flows), ["0.0.0.0/0", "2001:db8::1"]) == {"input": [], "forward": []}


def test_a_gateway_that_would_not_forward_ssh_to_a_zone_is_found() -> None:
    flows = [{**FLOWS[5], "to": ["gateways", "web", "postgresql"]}]
    gaps = management_gaps(plan_of("gw1", flows, gateway=True), MANAGEMENT, 22, ZONES)
    assert gaps["input"] == []
    # the bastion (10.4.0.13) is inside mgmt and reaches it without the gateway; the controller does not
    assert gaps["forward"] == [
        "10.4.0.13/32 -> app (10.2.0.0/24)",
        "192.0.2.7/32 -> app (10.2.0.0/24)",
        "192.0.2.7/32 -> mgmt (10.4.0.0/24)",
    ]


def test_a_gateway_forwarding_nothing_cuts_every_zone_off() -> None:
    """Regression: an empty forward chain on a gateway used to be reported as no gap at all."""
    flows = [{"name": "ssh to the gateway only", "from": "management", "to": "gateways", "tcp": [22]}]
    result = plan_of("gw1", flows, gateway=True)
    assert result["forward"] == []
    gaps = management_gaps(result, ["192.0.2.7"], 22, ZONES)
    assert gaps == {
        "input": [],
        "forward": [f"192.0.2.7/32 -> {z} ({s['subnet']})" for z, s in sorted(ZONES.items())],
    }
    # the same plan on a host that routes nothing has no forward chain to check
    assert management_gaps(plan_of("gw1", flows), ["192.0.2.7"], 22, ZONES)["forward"] == []


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([], r"no management sources: the controller/bastion addresses must be given"),
        (["CHANGE-ME"], r"'CHANGE-ME' is not an IP"),
    ],
)
def test_management_sources_must_be_addresses(sources: list, message: str) -> None:
    with pytest.raises(FirewallError, match=message):
        management_gaps(plan_of("web1"), sources)


# --- properties -----------------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers(-10, 70000) | st.text(max_size=8) | st.floats(allow_nan=True)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(["name", "from", "to", "tcp", "udp"]) | st.text(max_size=5) | st.integers(0, 99)
flow_like = st.dictionaries(keys, values, max_size=6) | st.fixed_dictionaries(
    {"name": st.text(max_size=10), "from": values, "to": values},
    optional={"tcp": values, "udp": values},
)


@settings(max_examples=300)
@given(st.lists(flow_like, max_size=3) | values)
def test_parse_flows_fails_only_with_a_firewall_error(raw: object) -> None:
    try:
        flows = parse_flows(raw)
    except FirewallError as exc:
        assert str(exc)
        return
    for flow in flows:
        assert NAME_PATTERN.match(flow.name)
        assert flow.sources and flow.destinations
        assert all(0 < p < 65536 for p in flow.tcp + flow.udp) and (flow.tcp or flow.udp)


@given(
    st.from_regex(NAME_PATTERN, fullmatch=True),
    st.sampled_from(["tcp", "udp"]),
    st.lists(st.integers(1, 65535), min_size=1, max_size=4, unique=True),
    st.none() | st.lists(networks, min_size=1, max_size=3),
)
def test_render_rule_always_ends_with_the_flows_comment(name: str, proto: str, ports: list, nets: list | None) -> None:
    rule = {"flow": name, "proto": proto, "ports": sorted(ports), "family": "ip" if nets else None}
    rule["saddr"] = None if nets is None else [str(n) for n in _unique(nets)]
    nft = render_rule(rule)
    assert nft.endswith(f' accept comment "{name}"')
    assert nft.count('"') == 2
    assert nft.startswith("ip saddr " if nets else f"{proto} dport ")


# --- the filters ----------------------------------------------------------------------------------------------
def load_filters() -> dict:
    spec = importlib.util.spec_from_file_location("enp_firewall_filter", PROJECT / "plugins/filter/enp_firewall.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_filters_plan_and_report_errors_as_ansible_filter_errors() -> None:
    filters = load_filters()
    result = filters["enp_firewall_plan"](FLOWS, "gw1", GROUPS, HOSTVARS, ZONES, SETS, True)
    assert result == plan_of("gw1", gateway=True)
    assert filters["enp_firewall_gaps"](result, MANAGEMENT, 22, ZONES) == {"input": [], "forward": []}
    with pytest.raises(AnsibleFilterError, match=r"flow 1 must be a mapping"):
        filters["enp_firewall_plan"](["x"], "web1", GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match=r"no management sources"):
        filters["enp_firewall_gaps"](result, [])


# --- the REAL lab inventory, templated as a play sees it ---------------------------------------------------
def templated_inventory(name: str) -> tuple[dict, dict]:
    """(groups, {host: its templated firewall variables}) of inventories/<name>."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(PROJECT / "inventories" / name)])
    variables = VariableManager(loader=loader, inventory=inventory)
    groups = {g: [h.name for h in group.get_hosts()] for g, group in inventory.groups.items()}
    hosts = {}
    for host in inventory.get_hosts():
        hv = variables.get_vars(host=host)
        templar = Templar(loader=loader, variables=hv)
        wanted = (
            "ansible_host",
            "enp_zone",
            "enp_gateway_host",
            "firewall_flows",
            "firewall_address_sets",
            "firewall_zones",
            "firewall_gateway",
            "firewall_management_sources",
        )
        hosts[host.name] = {k: templar.template(hv[k]) for k in wanted if k in hv}
    return groups, hosts


@pytest.fixture(scope="module")
def lab() -> dict:
    groups, hosts = templated_inventory("lab")
    plans = {}
    for host, hv in hosts.items():
        plans[host] = plan(
            hv["firewall_flows"],
            host,
            groups,
            hosts,
            hv["firewall_zones"],
            hv["firewall_address_sets"],
            bool(hv["firewall_gateway"]),
        )
    return {"groups": groups, "hosts": hosts, "plans": plans}


def address(lab: dict, host: str) -> str:
    return str(lab["hosts"][host]["ansible_host"])


def test_lab_matrix_names_only_real_things_and_never_locks_management_out(lab: dict) -> None:
    assert set(lab["plans"]) == {h for h in lab["groups"]["all"]}
    for host, result in lab["plans"].items():
        assert result["unknown"] == [], host
        hv = lab["hosts"][host]
        assert management_gaps(result, hv["firewall_management_sources"], 22, hv["firewall_zones"]) == {
            "input": [],
            "forward": [],
        }, host
    assert [h for h, r in lab["plans"].items() if r["gateway"]] == ["gw1"]


def test_lab_web1_accepts_443_from_the_load_balancer_only_and_ssh_from_mgmt(lab: dict) -> None:
    web1 = lab["plans"]["web1"]
    assert web1["flows"]["input"] == [
        "SSH from the mgmt zone and the management sources",
        "load balancer to the web servers",
    ]
    (https,) = rules_of(web1["input"], "load balancer to the web servers")
    assert (https["saddr"], https["ports"]) == ([f"{address(lab, 'lb1')}/32"], [443])
    assert accepted_by(web1["input"], "tcp", 443, saddr=address(lab, "web2")) == set()
    assert accepted_by(web1["input"], "tcp", 443, saddr="203.0.113.9") == set()
    mgmt = [address(lab, h) for h in lab["groups"]["mgmt"]]
    assert mgmt and all(accepted_by(web1["input"], "tcp", 22, saddr=a) for a in mgmt)
    for other in ("lb1", "web2", "app1", "db1", "gw1"):
        assert accepted_by(web1["input"], "tcp", 22, saddr=address(lab, other)) == set(), other
    assert {p for r in web1["input"] for p in r["ports"]} == {22, 443}


def test_lab_db1_accepts_5432_from_the_app_servers_the_standby_and_the_backup_server_only(lab: dict) -> None:
    db1 = lab["plans"]["db1"]
    pg = [r for r in db1["input"] if 5432 in r["ports"]]
    saddrs = {s for r in pg for s in r["saddr"]}
    assert saddrs == {f"{address(lab, h)}/32" for h in ("app1", "app2", "db2", "backup1")}
    assert {r["flow"] for r in pg} == {
        "application to PostgreSQL",
        "standby to primary (streaming replication)",
        "WAL stream to the backup server (pg_receivewal pulls)",
    }
    assert {p for r in db1["input"] for p in r["ports"]} == {22, 5432}
    for other in ("web1", "lb1", "log1", "bastion1", "gw1"):
        assert accepted_by(db1["input"], "tcp", 5432, saddr=address(lab, other)) == set(), other
    # the standby gets the app servers only, and reaches the primary out
    db2 = lab["plans"]["db2"]
    assert {s for r in db2["input"] if 5432 in r["ports"] for s in r["saddr"]} == {
        f"{address(lab, h)}/32" for h in ("app1", "app2", "backup1")
    }
    assert accepted_by(db2["output"], "tcp", 5432, daddr=address(lab, "db1")) == {
        "standby to primary (streaming replication)"
    }


def test_lab_gateway_forwards_the_zone_flows_and_nothing_from_dmz_to_data(lab: dict) -> None:
    forward = lab["plans"]["gw1"]["forward"]
    ip = {h: address(lab, h) for h in lab["groups"]["all"]}
    app_port = next(f["tcp"][0] for f in lab["hosts"]["gw1"]["firewall_flows"] if f["from"] == "web")
    assert accepted_by(forward, "tcp", int(app_port), ip["web1"], ip["app1"]) == {"web servers to the application"}
    assert accepted_by(forward, "tcp", 5432, ip["app2"], ip["db1"]) == {"application to PostgreSQL"}
    for src in lab["groups"]["mgmt"]:
        for dst in ("lb1", "web1", "app1", "db1", "db2"):
            assert accepted_by(forward, "tcp", 22, ip[src], ip[dst]) == {
                "SSH from the mgmt zone and the management sources"
            }, (src, dst)
    ports = {p for r in forward for p in r["ports"]}
    for src in lab["groups"]["dmz"]:
        for dst in lab["groups"]["data"]:
            for port in ports:
                assert accepted_by(forward, "tcp", port, ip[src], ip[dst]) == set(), (src, dst, port)
    assert accepted_by(forward, "tcp", 8000, ip["web1"], ip["db1"]) == set()
    assert accepted_by(forward, "tcp", 5432, ip["db2"], ip["db1"]) == set()  # inside data: not routed


def test_production_example_refuses_to_plan_until_placeholders_are_replaced() -> None:
    groups, hosts = templated_inventory("production-example")
    hv = hosts["web1.enagar.example"]
    with pytest.raises(FirewallError, match=r"CHANGE-ME"):
        plan(
            hv["firewall_flows"],
            "web1.enagar.example",
            groups,
            hosts,
            hv["firewall_zones"],
            hv["firewall_address_sets"],
        )


def test_the_matrix_is_the_same_in_every_inventory() -> None:
    """firewall.yml promises: everything below its 'same in every inventory' line is identical."""
    marker = re.compile(r"^# --- The same in every inventory.*$", re.MULTILINE)
    texts = []
    for inv in ("lab", "production-example"):
        text = (PROJECT / "inventories" / inv / "group_vars/all/firewall.yml").read_text()
        found = marker.search(text)
        assert found, f"{inv}: firewall.yml lost its 'The same in every inventory' line"
        texts.append(text[found.start() :])
    assert texts[0] == texts[1]
    flows = yaml.safe_load(texts[0].split("\n", 1)[1])["enp_firewall_flows"]
    assert len(parse_flows([{**f, "tcp": [1] if "tcp" in f else None} for f in flows])) == len(flows)
