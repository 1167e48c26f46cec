# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers for the lab provider (systemd-nspawn hosts on Linux bridges).

Everything here is side-effect free or touches only paths it is given, so the
unit tests in tests/unit/ can drive it without root, bridges or containers.
The Ansible modules in plugins/modules/enp_lab_*.py stay thin wrappers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field

# The lab may only ever use the benchmarking range (RFC 2544), which is never routed elsewhere.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")

# Linux caps interface names at 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")
USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Tools the provider calls, with the Debian package that ships each one, so the
# error can say exactly what to install.
REQUIRED_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "mount": "mount",
    "useradd": "passwd",
    "ssh-keygen": "openssh-client",
}


class LabError(Exception):
    """A refusal with a message written for the operator: what is wrong and what to do."""


@dataclass(frozen=True)
class Interface:
    """One container interface: the bridge it joins and its static address."""

    bridge: str
    address: str  # CIDR, e.g. 198.18.1.11/24
    gateway: str | None = None

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return ipaddress.ip_interface(self.address).ip  # type: ignore[return-value]


@dataclass
class HostSpec:
    name: str
    interfaces: list[Interface] = field(default_factory=list)

    @property
    def primary_ip(self) -> str:
        return str(self.interfaces[0].ip)


def check_lab_address(address: str, what: str = "address") -> ipaddress.IPv4Interface:
    """Parse a CIDR address and refuse anything outside 198.18.0.0/15."""
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise LabError(
            f"{what} '{address}' is not a valid address with prefix length (expected e.g. 198.18.1.11/24): {exc}"
        ) from exc
    if iface.version != 4 or iface.network.prefixlen == 32 and "/" not in address:
        raise LabError(f"{what} '{address}' needs a prefix length, e.g. 198.18.1.11/24")
    if not iface.network.subnet_of(LAB_RANGE):  # type: ignore[arg-type]
        raise LabError(
            f"{what} '{address}' is outside the lab range {LAB_RANGE}. The lab only uses "
            "198.18.0.0/15 so that no traffic can reach a real network: pick an address "
            "from that range in the inventory (inventories/lab/)."
        )
    return iface  # type: ignore[return-value]


def check_name(name: str, kind: str = "host") -> str:
    if not HOSTNAME_RE.match(name):
        raise LabError(
            f"{kind} name '{name}' is not usable: use 1-32 lower-case letters, digits "
            "and '-', starting and ending with a letter or digit."
        )
    return name


def check_ifname(name: str) -> str:
    if not IFNAME_RE.match(name):
        raise LabError(
            f"interface name '{name}' is not usable: at most {IFNAME_MAX} characters of letters, digits, '_', '.', '-'."
        )
    return name


def check_username(name: str) -> str:
    if not USERNAME_RE.match(name) or name == "root":
        raise LabError(
            f"operator user '{name}' is not usable: choose a lower-case login name other "
            "than root (hardening forbids root logins over SSH)."
        )
    return name


def parse_interfaces(raw: list[dict]) -> list[Interface]:
    """Validate the interface list of a host: lab addresses, known gateway, sane names."""
    if not raw:
        raise LabError("a lab host needs at least one interface (bridge and address)")
    result: list[Interface] = []
    for item in raw:
        bridge = check_ifname(str(item.get("bridge", "")))
        iface = check_lab_address(str(item.get("address", "")), "host address")
        gateway = item.get("gateway") or None
        if gateway is not None:
            gw = check_lab_address(f"{gateway}/32", "gateway")
            if gw.ip not in iface.network:
                raise LabError(
                    f"gateway {gateway} is not inside {iface.network} (interface on {bridge}); "
                    "a zone's gateway must be on the zone's own subnet."
                )
            gateway = str(gw.ip)
        result.append(Interface(bridge=bridge, address=str(iface), gateway=gateway))
    return result


def find_clashes(hosts: list[HostSpec], bridge_addresses: dict[str, str] | None = None) -> list[str]:
    """Return one message per duplicated name or address across the whole lab."""
    problems: list[str] = []
    seen_names: dict[str, int] = {}
    seen_ips: dict[str, str] = {}
    for name, cidr in (bridge_addresses or {}).items():
        seen_ips[str(ipaddress.ip_interface(cidr).ip)] = f"bridge {name}"
    for host in hosts:
        seen_names[host.name] = seen_names.get(host.name, 0) + 1
        for iface in host.interfaces:
            ip = str(iface.ip)
            owner = seen_ips.get(ip)
            if owner is not None and owner != f"host {host.name}":
                problems.append(
                    f"address {ip} of host {host.name} is already used by {owner}: "
                    "give each host and bridge its own address in the inventory."
                )
            seen_ips[ip] = f"host {host.name}"
    for name, count in sorted(seen_names.items()):
        if count > 1:
            problems.append(f"host name {name} is defined {count} times: host names must be unique.")
    return problems


def image_cache_key(suite: str, variant: str, packages: list[str], revision: int = 1) -> str:
    """A short stable key for a golden image: same suite + packages -> same cached image."""
    canonical = json.dumps(
        {"suite": suite, "variant": variant, "packages": sorted(set(packages)), "revision": revision},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_deb822_sources(text: str) -> list[dict[str, str]]:
    """Stanzas of deb822 text (apt .sources, dpkg status, Packages); comments dropped, continuations joined."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last_key = {}, None
            continue
        if line[0] in " \t":
            if last_key:  # a continuation line; one before any field is malformed and skipped
                current[last_key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        last_key = key.strip()
        current[last_key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_one_line_sources(text: str) -> list[dict[str, str]]:
    """Parse classic one-line sources.list entries into deb822-like dicts."""
    stanzas = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        parts = line.split()[1:]
        if parts and parts[0].startswith("["):
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts.pop(0)
        if len(parts) >= 2:
            stanzas.append({"Types": "deb", "URIs": parts[0], "Suites": parts[1], "Components": " ".join(parts[2:])})
    return stanzas


def debian_mirrors(stanzas: list[dict[str, str]]) -> tuple[str | None, str | None]:
    """Pick the controller's Debian archive and security URIs from its apt sources.

    Why: the lab must use whatever Debian mirror the controller is configured for
    (a proxy, an internal mirror), not a host name written into this project.
    """
    main = security = None
    for stanza in stanzas:
        if "deb" not in stanza.get("Types", "").split() or stanza.get("Enabled", "yes") == "no":
            continue
        suites = stanza.get("Suites", "").split()
        for uri in stanza.get("URIs", "").split():
            if any(s.endswith("-security") for s in suites):
                security = security or uri.rstrip("/")
            elif any(s in ("bookworm", "trixie", "stable", "testing", "sid") for s in suites):
                main = main or uri.rstrip("/")
    return main, security


def networkd_config(ifname: str, iface: Interface) -> str:
    """systemd-networkd unit for one container interface (no gateway = no route out)."""
    lines = [
        "# Written by enp lab provider.",
        "[Match]",
        f"Name={ifname}",
        "",
        "[Network]",
        f"Address={iface.address}",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
    ]
    if iface.gateway:
        lines.append(f"Gateway={iface.gateway}")
    return "\n".join(lines) + "\n"


def extra_veth_name(host: str, index: int) -> str:
    """Host-side name of a host's extra veth; deterministic and <= 15 chars."""
    digest = hashlib.sha1(host.encode()).hexdigest()[:6]
    name = f"vx{digest}-{index}"
    return check_ifname(name)


def container_ifname(index: int) -> str:
    """Name of the index-th interface inside the container (host0 for the first)."""
    return "host0" if index == 0 else f"eth{index}"


def nspawn_command(name: str, root: str, interfaces: list[Interface]) -> list[str]:
    """The systemd-nspawn command line for one lab host."""
    cmd = [
        "systemd-nspawn",
        "--directory",
        root,
        "--machine",
        name,
        "--hostname",
        name,
        # Why --register=no --keep-unit: PID 1 on the lab controllers is not systemd,
        # so nspawn cannot talk to machined; it then runs in the cgroup we put it in.
        "--register=no",
        "--keep-unit",
        "--boot",
        "--console=passive",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
        f"--network-bridge={interfaces[0].bridge}",
    ]
    for index, _iface in enumerate(interfaces[1:], start=1):
        cmd.append(f"--network-veth-extra={extra_veth_name(name, index)}:{container_ifname(index)}")
    return cmd


def cgroup_hierarchies(mounts_text: str) -> list[str]:
    """Mount points of cgroup hierarchies (v1 controllers, name=systemd, and v2)."""
    points = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("cgroup", "cgroup2") and parts[1].startswith("/sys/fs/cgroup"):
            points.append(parts[1])
    return sorted(set(points))


def process_start_time(stat_text: str) -> int:
    """Start time (clock ticks since boot) from /proc/PID/stat; guards against PID reuse."""
    # The command name is in parentheses and may contain spaces; fields resume after ')'.
    rest = stat_text.rsplit(")", 1)[1].split()
    return int(rest[19])


def sshd_hostkey_dropin() -> str:
    return (
        "# Written by enp lab provider: each lab host gets its own host keys at creation.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "HostKey /etc/ssh/ssh_host_ecdsa_key\n"
    )


def sudoers_dropin(user: str) -> str:
    return (
        "# Written by enp lab provider: the operator account Ansible connects with.\n"
        f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    )


def load_json(path: str, default):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def write_json_atomic(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def check_usable(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, what: str) -> None:
    """Refuse the network and broadcast addresses of a subnet."""
    if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        raise LabError(f"{what} {address} is the network or broadcast address of {subnet}; pick a host address.")


def plan_lab(hosts: list[dict], zones: dict[str, dict]) -> dict:
    """Turn inventory data into the provider's plan: bridges and per-host interfaces.

    hosts: [{"name", "zone", "address" (ansible_host), "gateway_host": bool}]
    zones: {zone: {"subnet", "gateway", "lab_bridge", "lab_controller"}}
    A gateway host gets one interface per zone (its own zone first) at the zone's
    gateway address; every other host gets its zone's subnet prefix and a default
    route via the zone gateway, so the gateway is the only path between zones.
    """
    problems: list[str] = []
    bridges = []
    for zone, spec in sorted(zones.items()):
        try:
            subnet = ipaddress.ip_network(str(spec.get("subnet")))
            check_lab_address(str(subnet), f"subnet of zone {zone}")
            controller = ipaddress.ip_address(str(spec.get("lab_controller")))
            if controller not in subnet:
                raise LabError(f"lab_controller {controller} of zone {zone} is not inside {subnet}")
            check_usable(controller, subnet, f"lab_controller of zone {zone}")
            if spec.get("gateway") is not None:
                gateway = ipaddress.ip_address(str(spec["gateway"]))
                check_usable(gateway, subnet, f"gateway of zone {zone}")
                if gateway == controller:
                    # Hosts would route through the controller itself, the one machine with a way out.
                    raise LabError(
                        f"zone {zone}: gateway {gateway} is the controller's own address; the zone "
                        "gateway must be the lab gateway host (e.g. .254), never the controller."
                    )
            check_ifname(str(spec.get("lab_bridge", "")))
        except (LabError, ValueError) as exc:
            problems.append(str(exc))
            continue
        bridges.append({"zone": zone, "bridge": spec["lab_bridge"], "address": f"{controller}/{subnet.prefixlen}"})
    planned = []
    for host in sorted(hosts, key=lambda h: h["name"]):
        name, zone = host["name"], host.get("zone")
        try:
            check_name(name)
            if zone not in zones:
                raise LabError(
                    f"host {name} is in zone '{zone}', which is not defined in enp_zones "
                    f"(known: {', '.join(sorted(zones))}); put it in a zone group of the inventory."
                )
            if host.get("gateway_host"):
                order = [zone] + sorted(z for z in zones if z != zone)
                raw = [
                    {
                        "bridge": zones[z]["lab_bridge"],
                        "address": f"{zones[z]['gateway']}/{ipaddress.ip_network(zones[z]['subnet']).prefixlen}",
                    }
                    for z in order
                ]
                if str(host.get("address")) != str(zones[zone]["gateway"]):
                    raise LabError(
                        f"gateway host {name} must have ansible_host {zones[zone]['gateway']} "
                        f"(the gateway address of its zone {zone}), not {host.get('address')}"
                    )
            else:
                prefix = ipaddress.ip_network(zones[zone]["subnet"]).prefixlen
                check_lab_address(f"{host.get('address')}/{prefix}", f"address of host {name} (ansible_host)")
                check_usable(
                    ipaddress.ip_address(str(host.get("address"))),
                    ipaddress.ip_network(zones[zone]["subnet"]),
                    f"address of host {name}",
                )
                raw = [
                    {
                        "bridge": zones[zone]["lab_bridge"],
                        "address": f"{host.get('address')}/{prefix}",
                        "gateway": zones[zone].get("gateway"),
                    }
                ]
                if ipaddress.ip_address(str(host.get("address"))) not in ipaddress.ip_network(zones[zone]["subnet"]):
                    raise LabError(
                        f"host {name} has address {host.get('address')} outside its zone {zone} "
                        f"({zones[zone]['subnet']}); fix ansible_host in the inventory."
                    )
            interfaces = parse_interfaces(raw)
        except (LabError, ValueError, KeyError) as exc:
            problems.append(str(exc))
            continue
        planned.append(
            {
                "name": name,
                "zone": zone,
                "router": bool(host.get("gateway_host")),
                "interfaces": [vars(i) for i in interfaces],
            }
        )
    specs = [HostSpec(h["name"], parse_interfaces(h["interfaces"])) for h in planned]
    problems += find_clashes(specs, {b["bridge"]: b["address"] for b in bridges})
    return {"bridges": bridges, "hosts": planned, "problems": problems}


def isolation_table_name(state_dir: str) -> str:
    """One nftables table per lab, so labs can come and go independently."""
    return "enp_lab_" + hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:10]


def isolation_ruleset(table: str, bridges: list[str], tcp_ports: list[int]) -> str:
    """Controller firewall for one lab: nothing is routed in or out of the lab bridges, and lab
    hosts may reach the controller only on the given TCP ports (the baseline mirror) and for
    replies to connections the controller opened (Ansible's SSH)."""
    names = ", ".join(f'"{b}"' for b in sorted(set(bridges)))
    ports = ", ".join(str(p) for p in sorted(set(tcp_ports)))
    lines = [
        f"table inet {table} {{",
        f"  # Written by the enp lab provider for bridges {names}; removed at teardown.",
        "  chain forward {",
        "    type filter hook forward priority filter - 10; policy accept;",
        # Bridged frames inside one zone may pass this hook too (br_netfilter): they keep the same
        # bridge in and out. Anything else to or from a lab bridge is routing, which never happens here.
        *(
            f'    iifname "{b}" oifname != "{b}" counter drop comment "lab hosts are never routed by the controller"'
            for b in sorted(set(bridges))
        ),
        *(
            f'    oifname "{b}" iifname != "{b}" counter drop comment "nothing is routed into the lab"'
            for b in sorted(set(bridges))
        ),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter - 10; policy accept;",
        f"    iifname {{ {names} }} ct state established,related accept",
        f"    iifname {{ {names} }} icmp type {{ echo-request, destination-unreachable, time-exceeded }} accept",
    ]
    if ports:
        lines.append(f"    iifname {{ {names} }} tcp dport {{ {ports} }} accept")
    lines += [
        f'    iifname {{ {names} }} counter drop comment "lab hosts reach only the mirror"',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
