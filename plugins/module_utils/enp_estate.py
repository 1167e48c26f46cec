# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the estate's services find each other: addresses and endpoints derived from inventory groups.

Pure functions (no Ansible imports) behind the enp_estate filters, so the wiring in
inventories/*/group_vars/all/wiring.yml is unit-tested instead of living in Jinja expressions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any


class WiringError(ValueError):
    """The inventory cannot be wired; the message names the host and what to set."""


def host_address(name: str, hostvars: Mapping[str, Any]) -> str:
    """What other hosts use to reach `name`: its ansible_host, else its inventory name (DNS)."""
    try:
        hv = hostvars[name]
    except KeyError:
        raise WiringError(f"host {name!r} is not in the inventory") from None
    address = hv.get("ansible_host") or name
    return str(address)


def addresses(names: Iterable[str], hostvars: Mapping[str, Any]) -> list[str]:
    return [host_address(n, hostvars) for n in names]


def named_addresses(names: Iterable[str], hostvars: Mapping[str, Any], **extra: str) -> list[dict[str, str]]:
    """{name, address} of each host, plus each `key=variable` given, read from that host's variables ('' if unset).

    e.g. named_addresses(groups['backup_servers'], hostvars, key='backup_public_key').
    """
    result = []
    for name in names:
        entry = {"name": name, "address": host_address(name, hostvars)}
        for key, variable in extra.items():
            entry[key] = str(hostvars.get(name, {}).get(variable, "") or "")
        result.append(entry)
    return result


def endpoints(names: Iterable[str], hostvars: Mapping[str, Any], port: int) -> list[str]:
    """HOST:PORT of each host (IPv6 literals in brackets), in inventory order."""
    if not 0 < int(port) < 65536:
        raise WiringError(f"port {port!r} is not a TCP port")
    result = []
    for address in addresses(names, hostvars):
        shown = f"[{address}]" if _is_ipv6(address) else address
        result.append(f"{shown}:{int(port)}")
    return result


def host_networks(names: Iterable[str], hostvars: Mapping[str, Any]) -> list[str]:
    """One-host CIDR networks (/32, /128) of each host, for allow-lists such as pg_hba.conf.

    A host known only by a DNS name has no address here: the inventory must give ansible_host
    (or the allow-list variable itself), since an allow-list that resolves names at connect time
    trusts DNS, which an attacker in the estate may control.
    """
    result = []
    for name in names:
        address = host_address(name, hostvars)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise WiringError(
                f"host {name} has no IP address in the inventory (ansible_host is {address!r}): set ansible_host "
                "to its address, or set the allow-list variable (e.g. postgresql_app_networks) yourself"
            ) from None
        result.append(f"{ip}/{ip.max_prefixlen}")
    return result


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False
