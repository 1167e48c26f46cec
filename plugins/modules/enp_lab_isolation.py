#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_isolation
short_description: Controller firewall that keeps one lab's traffic inside the lab
description:
  - Loads one nftables table per lab (named from the lab state folder) on the controller that drops
    anything routed into or out of the lab's bridges, and lets lab hosts reach the controller only
    on the given TCP ports (the baseline mirror) and with replies to the controller's own connections.
  - Even if the controller forwards packets (C(net.ipv4.ip_forward=1), as on Docker hosts) or a lab
    host adds a route via the controller, nothing leaves the lab.
  - V(absent) deletes exactly that table. The ruleset is checked with C(nft -c) before it is loaded.
options:
  state_dir:
    description: Lab state folder; names the table and keeps the applied ruleset.
    type: path
    required: true
  bridges:
    description: The lab's bridges.
    type: list
    elements: str
    default: []
  allow_tcp_ports:
    description: TCP ports on the controller that lab hosts may connect to.
    type: list
    elements: int
    default: []
  state:
    description: Whether the table should be loaded.
    type: str
    choices: [present, absent]
    default: present
author: enp contributors
"""

EXAMPLES = r"""
- name: Keep the lab's traffic inside the lab
  enp_lab_isolation:
    state_dir: "{{ lab_state_dir }}"
    bridges: [enp-dmz, enp-app]
    allow_tcp_ports: [8080]
"""

RETURN = r"""
table:
  description: The nftables table (family inet).
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import isolation_ruleset, isolation_table_name


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state_dir=dict(type="path", required=True),
            bridges=dict(type="list", elements="str", default=[]),
            allow_tcp_ports=dict(type="list", elements="int", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["bridges"])],
        supports_check_mode=True,
    )
    nft = module.get_bin_path("nft")
    if not nft:
        module.fail_json(msg="nft is not installed on the controller: run `make setup` (Debian package nftables).")
    table = isolation_table_name(module.params["state_dir"])
    record = os.path.join(module.params["state_dir"], "isolation.nft")
    loaded = module.run_command([nft, "list", "table", "inet", table])[0] == 0

    if module.params["state"] == "absent":
        if loaded and not module.check_mode:
            rc, _out, err = module.run_command([nft, "delete", "table", "inet", table])
            if rc != 0:
                module.fail_json(msg=f"could not delete nftables table inet {table}: {err.strip()}")
        if os.path.exists(record) and not module.check_mode:
            os.unlink(record)
        module.exit_json(changed=loaded, table=table)

    wanted = isolation_ruleset(table, module.params["bridges"], module.params["allow_tcp_ports"])
    have = ""
    if os.path.exists(record):
        with open(record, encoding="utf-8") as handle:
            have = handle.read()
    changed = not loaded or have != wanted
    diff = {"before": have if loaded else "", "after": wanted}
    if changed and not module.check_mode:
        # Replace atomically: one nft transaction creates (if needed), flushes by deletion, and reloads.
        script = f"table inet {table}\ndelete table inet {table}\n{wanted}"
        os.makedirs(module.params["state_dir"], exist_ok=True)
        tmp = record + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(script)
        rc, _out, err = module.run_command([nft, "-c", "-f", tmp])
        if rc == 0:
            rc, _out, err = module.run_command([nft, "-f", tmp])
        os.unlink(tmp)
        if rc != 0:
            module.fail_json(msg=f"loading the lab isolation ruleset failed: {err.strip()}", ruleset=wanted)
        with open(record, "w", encoding="utf-8") as handle:
            handle.write(wanted)
    module.exit_json(changed=changed, table=table, diff=diff)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
