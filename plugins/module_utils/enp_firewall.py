# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The estate's zone matrix turned into nftables rules: per host by peer addresses, per gateway by zone subnets.

Pure functions (no Ansible imports) behind the enp_firewall filters (plugins/filter/enp_firewall.py), so the
matrix in inventories/*/group_vars/all/firewall.yml is unit-tested instead of living in Jinja.

A flow names its ends by inventory group (``web``), zone (``dmz``), named address set (``management``),
literal address or CIDR, or ``internet`` (any address). On a host:

* the host is a *destination* of a flow when it is in one of the flow's ``to`` groups/zones/sets: its input
  chain accepts the ports from the *addresses of the source hosts* (never a whole subnet for a group, so the
  rules hold when every zone shares one subnet); ``internet`` as source accepts from anywhere;
* the host is a *source* when it is in one of the ``from`` groups/zones/sets (never by ``internet``): its
  output chain accepts new connections to the destinations' addresses.

On a gateway the forward chain accepts the flow between the *zone subnets* of the groups' hosts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INTERNET = "internet"
FLOW_KEYS = {"name", "from", "to", "tcp", "udp"}
# A flow's name becomes an nft comment: printable, no quotes, short.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ,.;:()/+_>-]{0,63}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FirewallError(ValueError):
    """The matrix or the inventory cannot be turned into rules; the message says what to fix."""


@dataclass(frozen=True)
class Flow:
    name: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    tcp: tuple[int, ...]
    udp: tuple[int, ...]

    def ports(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(proto, ports) for proto, ports in (("tcp", self.tcp), ("udp", self.udp)) if ports]


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        raise FirewallError(f"{where} must be a name or a non-empty list of names (got {value!r})")
    return tuple(i.strip() for i in items)


def _ports(value: Any, where: str) -> tuple[int, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    result = set()
    for item in items:
        try:
            port = int(str(item).strip())
        except ValueError:
            raise FirewallError(f"{where}: {item!r} is not a port number") from None
        if not 0 < port < 65536:
            raise FirewallError(f"{where}: {port} is not a port (1-65535)")
        result.add(port)
    return tuple(sorted(result))


def parse_flows(raw: Any) -> list[Flow]:
    """Validate the matrix: every flow has a unique name, ``from``, ``to`` and ports, and no unknown key."""
    if not isinstance(raw, list):
        raise FirewallError(f"the flow matrix must be a list of flows, not {type(raw).__name__}")
    flows, seen = [], set()
    for index, item in enumerate(raw):
        where = f"flow {index + 1}"
        if not isinstance(item, Mapping):
            raise FirewallError(f"{where} must be a mapping with name, from, to and tcp/udp")
        name = "" if item.get("name") is None else str(item["name"]).strip()  # `name:` left empty is None
        if not NAME_PATTERN.match(name):
            raise FirewallError(
                f"{where}: name {name!r} must be 1-64 plain characters (letters, digits, spaces, ,.;:()/+_->), "
                "it becomes the rule's comment"
            )
        where = f"flow '{name}'"
        unknown = sorted(str(k) for k in set(item) - FLOW_KEYS)  # YAML keys may be numbers
        if unknown:
            raise FirewallError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(FLOW_KEYS))})")
        if name in seen:
            raise FirewallError(f"{where}: the name is used twice; each flow needs its own")
        seen.add(name)
        for key in ("from", "to"):
            if key not in item:
                raise FirewallError(f"{where}: missing '{key}'")
        tcp, udp = _ports(item.get("tcp"), f"{where} tcp"), _ports(item.get("udp"), f"{where} udp")
        if not tcp and not udp:
            raise FirewallError(f"{where}: give at least one port in tcp or udp")
        flows.append(Flow(name, _names(item["from"], f"{where} from"), _names(item["to"], f"{where} to"), tcp, udp))
    return flows


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        return None


class Estate:
    """The inventory as the firewall sees it: groups, each host's address(es) and zone, zones, address sets."""

    def __init__(
        self,
        groups: Mapping[str, Iterable[str]],
        hostvars: Mapping[str, Any],
        zones: Mapping[str, Mapping[str, Any]] | None = None,
        address_sets: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.groups = {k: list(v) for k, v in groups.items()}
        self.hostvars = hostvars
        self.zones = dict(zones or {})
        self.sets: dict[str, list[Network]] = {}
        for name, values in (address_sets or {}).items():
            items = [values] if isinstance(values, str) else list(values or [])
            nets = []
            for value in items:
                net = _network(value)
                if net is None:
                    raise FirewallError(
                        f"address set '{name}': {value!r} is not an IP address or CIDR (replace placeholders such "
                        "as CHANGE-ME in group_vars/all/firewall.yml with the real addresses)"
                    )
                nets.append(net)
            self.sets[name] = nets
        self.unknown: set[str] = set()

    # --- hosts -------------------------------------------------------------------------------------
    def _vars(self, host: str) -> Mapping[str, Any]:
        try:
            return self.hostvars[host]
        except KeyError:
            raise FirewallError(f"host {host!r} is not in the inventory") from None

    def is_gateway(self, host: str) -> bool:
        return bool(self._vars(host).get("enp_gateway_host", False))

    def zone_of(self, host: str) -> str | None:
        zone = self._vars(host).get("enp_zone")
        return str(zone) if zone else None

    def addresses(self, host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The host's address (ansible_host); a gateway also speaks from its address in every zone."""
        raw = self._vars(host).get("ansible_host") or host
        try:
            found = [ipaddress.ip_address(str(raw))]
        except ValueError:
            raise FirewallError(
                f"host {host} has no IP address in the inventory (ansible_host is {raw!r}): the firewall allows "
                "peers by address and never trusts DNS; set ansible_host in hosts.yml"
            ) from None
        if self.is_gateway(host):
            for spec in self.zones.values():
                net = _network(str((spec or {}).get("gateway", "")))
                if net is not None and net.num_addresses == 1 and net.network_address not in found:
                    found.append(net.network_address)
        return found

    def subnet(self, zone: str, why: str) -> Network:
        spec = self.zones.get(zone)
        net = _network(str((spec or {}).get("subnet", ""))) if spec is not None else None
        if net is None:
            raise FirewallError(
                f"{why}: zone '{zone}' has no usable subnet in enp_zones (got {(spec or {}).get('subnet')!r}); "
                "set it in group_vars/all/zones.yml"
            )
        return net

    # --- names -------------------------------------------------------------------------------------
    def kind(self, name: str) -> str:
        if name == INTERNET:
            return "internet"
        if name in self.sets:
            return "set"
        if name in self.groups:
            return "group"
        if name in self.zones:
            return "zone"
        if _network(name) is not None:
            return "literal"
        self.unknown.add(name)
        return "unknown"

    def members(self, name: str) -> list[str]:
        """Inventory hosts a group or zone name stands for (empty for sets, literals, internet, unknown)."""
        kind = self.kind(name)
        if kind == "group":
            return list(self.groups[name])
        if kind == "zone":
            every = self.groups.get("all") or list(self.hostvars)
            return [h for h in every if self.zone_of(h) == name]
        return []

    def nets_of(self, name: str) -> list[Network]:
        kind = self.kind(name)
        if kind == "set":
            return list(self.sets[name])
        if kind == "literal":
            return [ipaddress.ip_network(name, strict=False)]
        return []

    def contains(self, name: str, host: str) -> bool:
        """Is `host` one of the ends `name` stands for? Never by `internet`."""
        kind = self.kind(name)
        if kind in ("group", "zone"):
            return host in self.members(name)
        if kind in ("set", "literal"):
            return any(a in n for a in self.addresses(host) for n in self.nets_of(name))
        return False

    def host_peers(self, names: Iterable[str]) -> list[Network] | None:
        """Addresses (as /32, /128) the names stand for; None means any address."""
        nets: list[Network] = []
        for name in names:
            if self.kind(name) == "internet":
                return None
            nets += self.nets_of(name)
            for host in self.members(name):
                nets += [ipaddress.ip_network(a) for a in self.addresses(host)]
        return _unique(nets)

    def zone_peers(self, names: Iterable[str], why: str) -> list[Network] | None:
        """Zone subnets the names stand for (for the gateway's forward chain); None means any address."""
        nets: list[Network] = []
        for name in names:
            kind = self.kind(name)
            if kind == "internet":
                return None
            if kind == "zone":
                nets.append(self.subnet(name, why))
                continue
            nets += self.nets_of(name)
            for host in self.members(name):
                if self.is_gateway(host):
                    continue  # the gateway's own traffic is input/output, never forwarded
                zone = self.zone_of(host)
                if zone is None:
                    raise FirewallError(f"{why}: host {host} has no enp_zone; put it in a zone group")
                nets.append(self.subnet(zone, f"{why} (host {host})"))
        return _unique(nets)


def _unique(nets: Iterable[Network]) -> list[Network]:
    """Sorted, without duplicates or networks inside another one (nft refuses overlapping set elements)."""
    given = set(nets)
    kept = [n for n in given if not any(o != n and o.version == n.version and n.subnet_of(o) for o in given)]  # type: ignore[arg-type]
    return sorted(kept, key=lambda n: (n.version, n.network_address, n.prefixlen))


def _shown(nets: list[Network]) -> str:
    text = [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in nets]
    return text[0] if len(text) == 1 else "{ " + ", ".join(text) + " }"


def _by_family(nets: list[Network] | None) -> dict[str | None, list[Network] | None]:
    if nets is None:
        return {None: None}
    families: dict[str | None, list[Network] | None] = {}
    for family, version in (("ip", 4), ("ip6", 6)):
        chosen = [n for n in nets if n.version == version]
        if chosen:
            families[family] = chosen
    return families


def render_rule(rule: dict[str, Any]) -> str:
    """One nft rule line: [family saddr/daddr] proto dport ports accept comment."""
    parts = []
    for key in ("saddr", "daddr"):
        if rule.get(key) is not None:
            parts.append(f"{rule['family']} {key} {_shown([ipaddress.ip_network(n) for n in rule[key]])}")
    ports = rule["ports"]
    parts.append(f"{rule['proto']} dport {ports[0] if len(ports) == 1 else '{ ' + ', '.join(map(str, ports)) + ' }'}")
    parts.append(f'accept comment "{rule["flow"]}"')
    return " ".join(parts)


def _rule(flow: Flow, proto: str, ports: tuple[int, ...], family: str | None, **addrs: list[Network] | None) -> dict:
    rule: dict[str, Any] = {"flow": flow.name, "proto": proto, "ports": list(ports), "family": family}
    for key in ("saddr", "daddr"):
        nets = addrs.get(key)
        rule[key] = None if nets is None else [str(n) for n in nets]
    rule["nft"] = render_rule(rule)
    return rule


def host_plan(flows: list[Flow], estate: Estate, host: str) -> dict[str, Any]:
    """Input and output rules of one host, from the flows it takes part in."""
    own = {ipaddress.ip_network(a) for a in estate.addresses(host)}
    result: dict[str, Any] = {"input": [], "output": [], "notes": []}
    for flow in flows:
        for direction, mine, others, key in (
            ("input", flow.destinations, flow.sources, "saddr"),
            ("output", flow.sources, flow.destinations, "daddr"),
        ):
            if not any(estate.contains(name, host) for name in mine):
                continue
            peers = estate.host_peers(others)
            if peers is not None:
                peers = [n for n in peers if n not in own]
                if not peers:
                    result["notes"].append(f"{flow.name}: no peer for {direction} (no host in {', '.join(others)})")
                    continue
            for family, nets in _by_family(peers).items():
                for proto, ports in flow.ports():
                    result[direction].append(_rule(flow, proto, ports, family, **{key: nets}))
    return result


def forward_plan(flows: list[Flow], estate: Estate) -> list[dict[str, Any]]:
    """The gateway's forward rules: each flow between the zone subnets of its ends."""
    rules = []
    for flow in flows:
        why = f"flow '{flow.name}'"
        sources, destinations = estate.zone_peers(flow.sources, why), estate.zone_peers(flow.destinations, why)
        if sources == [] or destinations == []:
            continue
        if sources is not None and sources == destinations and len(sources) == 1:
            continue  # inside one zone: never crosses the gateway
        src, dst = _by_family(sources), _by_family(destinations)
        families = (
            [None]
            if sources is None and destinations is None
            else [f for f in ("ip", "ip6") if (f in src or None in src) and (f in dst or None in dst)]
        )
        for family in families:
            for proto, ports in flow.ports():
                rules.append(
                    _rule(flow, proto, ports, family, saddr=src.get(family), daddr=dst.get(family))  # type: ignore[arg-type]
                )
    return rules


def plan(
    raw_flows: Any,
    host: str,
    groups: Mapping[str, Iterable[str]],
    hostvars: Mapping[str, Any],
    zones: Mapping[str, Mapping[str, Any]] | None = None,
    address_sets: Mapping[str, Iterable[str]] | None = None,
    gateway: bool = False,
) -> dict[str, Any]:
    """Everything the role renders for one host: input, output, forward (gateway only), unknown names."""
    flows = parse_flows(raw_flows)
    estate = Estate(groups, hostvars, zones, address_sets)
    result = host_plan(flows, estate, host)
    result["forward"] = forward_plan(flows, estate) if gateway else []
    result["gateway"] = bool(gateway)
    result["addresses"] = [str(a) for a in estate.addresses(host)]
    for flow in flows:  # every name of the matrix is looked at, not only those this host takes part in
        for name in flow.sources + flow.destinations:
            estate.kind(name)
    result["unknown"] = sorted(estate.unknown)
    result["flows"] = {
        direction: sorted({r["flow"] for r in result[direction]}) for direction in ("input", "output", "forward")
    }
    return result


def _covers(nets: list[str] | None, wanted: Network) -> bool:
    if nets is None:
        return True
    for text in nets:
        net = ipaddress.ip_network(text)
        if net.version == wanted.version and wanted.subnet_of(net):  # type: ignore[arg-type]
            return True
    return False


def _sources(sources: Iterable[str]) -> list[Network]:
    nets = []
    for source in sources:
        net = _network(source)
        if net is None:
            raise FirewallError(f"management source {source!r} is not an IP address or CIDR")
        nets.append(net)
    if not nets:
        raise FirewallError("no management sources: the controller/bastion addresses must be given")
    return nets


def management_gaps(
    result: Mapping[str, Any], sources: Iterable[str], port: int = 22, zones: Mapping[str, Mapping] | None = None
) -> dict[str, list[str]]:
    """What the planned rules would cut off: management sources that could not open SSH to this host
    (``input``), and, on a gateway, source -> zone pairs whose SSH would not be forwarded (``forward``)."""
    nets = _sources(sources)
    ssh = [r for r in result["input"] if r["proto"] == "tcp" and int(port) in r["ports"]]
    # The host's own address reaches it over loopback (always accepted), and host_plan leaves it out of peers.
    own = {ipaddress.ip_network(a) for a in result.get("addresses", [])}
    gaps: dict[str, list[str]] = {
        "input": [str(n) for n in nets if n not in own and not any(_covers(r["saddr"], n) for r in ssh)]
    }
    gaps["forward"] = []
    if result.get("gateway") or result.get("forward"):  # a gateway forwarding nothing cuts every zone off
        fwd = [r for r in result["forward"] if r["proto"] == "tcp" and int(port) in r["ports"]]
        for zone, spec in sorted((zones or {}).items()):
            subnet = _network(str((spec or {}).get("subnet", "")))
            if subnet is None:
                continue
            for net in nets:
                if net.version != subnet.version or net.subnet_of(subnet):  # type: ignore[arg-type]
                    continue  # a source inside the zone reaches it without the gateway
                if not any(_covers(r["saddr"], net) and _covers(r["daddr"], subnet) for r in fwd):
                    gaps["forward"].append(f"{net} -> {zone} ({subnet})")
    return gaps
