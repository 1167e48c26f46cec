# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that wire the estate's services together from inventory groups (see module_utils/enp_estate.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_endpoints
short_description: HOST:PORT of inventory hosts, for upstream lists
description:
  - Given inventory host names, returns C(ansible_host:PORT) of each (the inventory name when
    C(ansible_host) is not set). Companion filters C(enp_addresses) (addresses only) and
    C(enp_host_networks) (C(/32) or C(/128) networks; fails for hosts without an IP address), and
    C(enp_named_addresses) (C({name, address}) of each host, plus C(key=variable) read from each host's variables).
positional: hostvars, port
options:
  _input:
    description: Inventory host names (e.g. C(groups['appservers'])).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  port:
    description: TCP port.
    type: int
    required: true
"""

EXAMPLES = r"""
nginx_upstreams: "{{ groups['appservers'] | enp_endpoints(hostvars, 8000) }}"
postgresql_app_networks: "{{ groups['appservers'] | enp_host_networks(hostvars) }}"
"""

RETURN = r"""
_value:
  description: List of C(HOST:PORT) strings (C(enp_addresses) and C(enp_host_networks) return addresses and CIDRs).
  type: list
  elements: str
"""

import os
import sys

from ansible.errors import AnsibleFilterError

# Why the path juggling: controller-side plugins of a project (not a collection) cannot import
# project module_utils as ansible.module_utils.*; the pure helpers have no Ansible imports.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
import enp_estate  # noqa: E402


def _wrap(fn):  # type: ignore[no-untyped-def]
    def filter_(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except enp_estate.WiringError as exc:
            raise AnsibleFilterError(str(exc)) from None

    return filter_


class FilterModule:
    def filters(self) -> dict:
        return {
            "enp_addresses": _wrap(enp_estate.addresses),
            "enp_endpoints": _wrap(enp_estate.endpoints),
            "enp_host_networks": _wrap(enp_estate.host_networks),
            "enp_named_addresses": _wrap(enp_estate.named_addresses),
        }
