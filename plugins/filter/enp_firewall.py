# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the estate's zone matrix into nftables rules (see module_utils/enp_firewall.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_firewall_plan
short_description: nftables rules of one host (and of a zone gateway) from the estate's zone matrix
description:
  - Given the flow matrix (C(firewall_flows)), returns the host's C(input) and C(output) rules (peers by
    address, derived from inventory groups), the gateway's C(forward) rules (by zone subnet) when O(gateway)
    is true, the matrix names that resolve to nothing (C(unknown)) and C(notes).
  - Each rule is a dict (C(flow), C(proto), C(ports), C(family), C(saddr), C(daddr)) with its C(nft) line.
  - Companion filter C(enp_firewall_gaps) returns which management sources a plan would cut off from SSH.
positional: host, groups, hostvars, zones, address_sets, gateway
options:
  _input:
    description: The flow matrix, a list of C({name, from, to, tcp, udp}).
    type: list
    elements: dict
    required: true
  host:
    description: Inventory name of the host the rules are for (C(inventory_hostname)).
    type: str
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  zones:
    description: The C(enp_zones) map (zone subnets, gateway addresses).
    type: dict
  address_sets:
    description: Named lists of addresses/CIDRs usable as flow ends (e.g. C(management), C(ntp_servers)).
    type: dict
  gateway:
    description: Also plan the forward chain (the host routes between zones).
    type: bool
    default: false
"""

EXAMPLES = r"""
__firewall_plan: >-
  {{ firewall_flows | enp_firewall_plan(inventory_hostname, groups, hostvars, firewall_zones,
                                        firewall_address_sets, firewall_gateway) }}
__firewall_gaps: "{{ __firewall_plan | enp_firewall_gaps(firewall_management_sources, 22, firewall_zones) }}"
"""

RETURN = r"""
_value:
  description: >-
    Dict with C(input), C(output), C(forward) (lists of rules), C(gateway), C(addresses) (the host's own),
    C(unknown), C(notes) and C(flows).
  type: dict
"""

import os
import sys

from ansible.errors import AnsibleFilterError

# Why the path juggling: controller-side plugins of a project (not a collection) cannot import
# project module_utils as ansible.module_utils.*; the pure helpers have no Ansible imports.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
import enp_firewall  # noqa: E402


def _wrap(fn):  # type: ignore[no-untyped-def]
    def filter_(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except enp_firewall.FirewallError as exc:
            raise AnsibleFilterError(str(exc)) from None

    return filter_


class FilterModule:
    def filters(self) -> dict:
        return {
            "enp_firewall_plan": _wrap(enp_firewall.plan),
            "enp_firewall_gaps": _wrap(enp_firewall.management_gaps),
        }
