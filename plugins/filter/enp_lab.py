# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the lab inventory into the lab provider's plan."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_lab_plan
short_description: Plan lab bridges and host interfaces from the inventory
description:
  - Given inventory host names, their hostvars and C(enp_zones), returns C(bridges), C(hosts) and
    C(problems) (messages for the operator; an empty list means the inventory is consistent).
positional: hostvars, zones
options:
  _input:
    description: Inventory host names to plan (usually C(groups['all'])).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  zones:
    description: The C(enp_zones) map.
    type: dict
    required: true
"""

EXAMPLES = r"""
plan: "{{ groups['all'] | enp_lab_plan(hostvars, enp_zones) }}"
"""

RETURN = r"""
_value:
  description: Dict with C(bridges), C(hosts) and C(problems).
  type: dict
"""

import os
import sys

# Why the path juggling: controller-side plugins of a project (not a collection) cannot import
# project module_utils as ansible.module_utils.*; the pure helpers have no Ansible imports.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
from enp_lab import plan_lab  # noqa: E402


def enp_lab_plan(names: list[str], hostvars: dict, zones: dict) -> dict:
    hosts = []
    for name in names:
        hv = hostvars[name]
        hosts.append(
            {
                "name": name,
                "zone": hv.get("enp_zone"),
                "address": hv.get("ansible_host", name),
                "gateway_host": bool(hv.get("enp_gateway_host", False)),
            }
        )
    return plan_lab(hosts, dict(zones))


def enp_lab_plan_hosts(hosts: list[dict], zones: dict) -> dict:
    """Plan from plain host dicts (name, zone, address) instead of inventory hostvars."""
    return plan_lab([dict(h) for h in hosts], dict(zones))


def enp_molecule_platforms(platforms: list[dict], zone: str) -> list[dict]:
    """molecule platforms (name, address) -> host dicts for enp_lab_plan_hosts."""
    return [{"name": p["name"], "address": p["address"], "zone": zone} for p in platforms]


def enp_molecule_instances(plan: dict, state_dir: str, user: str = "enp") -> list[dict]:
    """The instance config molecule's default driver turns into its inventory."""
    return [
        {
            "instance": host["name"],
            "address": host["interfaces"][0]["address"].split("/")[0],
            "user": user,
            "port": 22,
            "identity_file": f"{state_dir}/ssh/id_ed25519",
            "connection": "ssh",
        }
        for host in plan["hosts"]
    ]


def enp_lab_etc_hosts(plan: dict) -> dict[str, str]:
    """name -> primary address of every planned host, for each host's /etc/hosts."""
    return {h["name"]: h["interfaces"][0]["address"].split("/")[0] for h in plan["hosts"]}


class FilterModule:
    def filters(self) -> dict:
        return {
            "enp_lab_plan": enp_lab_plan,
            "enp_lab_plan_hosts": enp_lab_plan_hosts,
            "enp_lab_etc_hosts": enp_lab_etc_hosts,
            "enp_molecule_platforms": enp_molecule_platforms,
            "enp_molecule_instances": enp_molecule_instances,
        }
