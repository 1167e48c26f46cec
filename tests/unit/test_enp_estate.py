"""Wiring of the estate's services from inventory groups (plugins/module_utils/enp_estate.py)."""

from __future__ import annotations

import pytest
from ansible.module_utils.enp_estate import WiringError, addresses, endpoints, host_networks, named_addresses

HOSTVARS = {
    "app1": {"ansible_host": "198.18.2.11"},
    "app2": {"ansible_host": "198.18.2.12"},
    "v6": {"ansible_host": "2001:db8::5"},
    "app3.enagar.example": {},
    "backup1": {"ansible_host": "198.18.4.11", "backup_public_key": "ssh-ed25519 AAAAC3 enp-backup@backup1"},
}


def test_addresses_use_ansible_host_else_the_inventory_name() -> None:
    assert addresses(["app2", "app1", "app3.enagar.example"], HOSTVARS) == [
        "198.18.2.12",
        "198.18.2.11",
        "app3.enagar.example",
    ]


def test_endpoints_bracket_ipv6_and_refuse_bad_ports() -> None:
    assert endpoints(["app1", "v6"], HOSTVARS, 8000) == ["198.18.2.11:8000", "[2001:db8::5]:8000"]
    with pytest.raises(WiringError, match="not a TCP port"):
        endpoints(["app1"], HOSTVARS, 70000)


def test_host_networks_need_ip_addresses() -> None:
    assert host_networks(["app1", "v6"], HOSTVARS) == ["198.18.2.11/32", "2001:db8::5/128"]
    with pytest.raises(WiringError, match=r"app3\.enagar\.example has no IP address.*postgresql_app_networks"):
        host_networks(["app3.enagar.example"], HOSTVARS)


def test_unknown_host_is_named() -> None:
    with pytest.raises(WiringError, match="'nosuch' is not in the inventory"):
        addresses(["nosuch"], HOSTVARS)


def test_named_addresses_carry_the_name_and_the_variables_asked_for() -> None:
    assert named_addresses(["backup1", "app1"], HOSTVARS, key="backup_public_key") == [
        {"name": "backup1", "address": "198.18.4.11", "key": "ssh-ed25519 AAAAC3 enp-backup@backup1"},
        {"name": "app1", "address": "198.18.2.11", "key": ""},
    ]
    assert named_addresses(["app2"], HOSTVARS) == [{"name": "app2", "address": "198.18.2.12"}]
    with pytest.raises(WiringError, match="'nosuch' is not in the inventory"):
        named_addresses(["nosuch"], HOSTVARS)
