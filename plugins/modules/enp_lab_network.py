#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_network
short_description: Create or remove one lab network zone (a Linux bridge with a controller address)
description:
  - Creates a Linux bridge with the controller's address on that zone, inside 198.18.0.0/15 only.
  - Records what it created under O(state_dir) so teardown removes exactly that and nothing else.
  - Refuses to adopt or delete a bridge it did not create, and addresses already used on this machine.
options:
  name:
    description: Bridge name (at most 15 characters).
    type: str
    required: true
  address:
    description: Controller address on the bridge, with prefix length (e.g. V(198.18.1.1/24)).
    type: str
  state_dir:
    description: Lab state folder; bridges created are recorded in C(networks/NAME.json).
    type: path
    required: true
  state:
    description: Whether the bridge should exist.
    type: str
    choices: [present, absent]
    default: present
author: enp contributors
"""

EXAMPLES = r"""
- name: Create the DMZ bridge
  enp_lab_network:
    name: enp-dmz
    address: 198.18.1.1/24
    state_dir: "{{ enp_lab_state_dir }}"
"""

RETURN = r"""
bridge:
  description: Bridge name.
  returned: always
  type: str
address:
  description: Controller address on the bridge.
  returned: when state=present
  type: str
"""

import ipaddress
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import (
    LabError,
    check_ifname,
    check_lab_address,
    load_json,
    write_json_atomic,
)


def ip_json(module: AnsibleModule, *args: str) -> list[dict]:
    rc, out, err = module.run_command(["ip", "-json", *args])
    if rc != 0:
        return []
    return json.loads(out or "[]")


def addresses_in_use(module: AnsibleModule) -> dict[str, str]:
    """Every IPv4 address on this machine -> interface name."""
    used = {}
    for link in ip_json(module, "-4", "addr", "show"):
        for info in link.get("addr_info", []):
            used[info["local"]] = link["ifname"]
    return used


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            address=dict(type="str"),
            state_dir=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["address"])],
        supports_check_mode=True,
    )
    name = module.params["name"]
    record_path = os.path.join(module.params["state_dir"], "networks", f"{name}.json")
    record = load_json(record_path, None)
    try:
        check_ifname(name)
        if os.geteuid() != 0:
            raise LabError("creating bridges needs root: run the lab as root (e.g. sudo make lab-up).")
    except LabError as exc:
        module.fail_json(msg=str(exc))
    link = ip_json(module, "addr", "show", "dev", name) if os.path.exists(f"/sys/class/net/{name}") else []
    exists = bool(link)

    if module.params["state"] == "absent":
        if exists and record is None:
            module.fail_json(
                msg=f"bridge {name} exists but was not created by the enp lab "
                f"(no record in {record_path}); it is left alone. Remove it by hand if it is stale."
            )
        changed = exists or record is not None
        if changed and not module.check_mode:
            if exists:
                rc, _out, err = module.run_command(["ip", "link", "del", "dev", name])
                if rc != 0:
                    module.fail_json(msg=f"could not delete bridge {name}: {err.strip()}")
            if os.path.exists(record_path):
                os.unlink(record_path)
        module.exit_json(changed=changed, bridge=name)

    try:
        iface = check_lab_address(module.params["address"], f"address of bridge {name}")
    except LabError as exc:
        module.fail_json(msg=str(exc))
    want_ip = str(iface.ip)
    used = addresses_in_use(module)
    if exists and record is None:
        module.fail_json(
            msg=f"a network interface named {name} already exists and was not created by the enp "
            "lab. Choose another bridge name for this zone in the inventory, or remove the old one."
        )
    if want_ip in used and used[want_ip] != name:
        module.fail_json(
            msg=f"address {want_ip} is already in use on interface {used[want_ip]} of this machine; "
            f"choose another address for bridge {name} in the inventory."
        )
    for other_ip, other_if in used.items():
        if other_if != name and ipaddress.ip_address(other_ip) in iface.network:
            module.fail_json(
                msg=f"subnet {iface.network} of bridge {name} overlaps interface {other_if} "
                f"({other_ip}); each zone needs its own subnet."
            )

    changed = False
    commands: list[list[str]] = []
    if not exists:
        commands += [["ip", "link", "add", name, "type", "bridge"]]
    have = [
        f"{a['local']}/{a['prefixlen']}"
        for a in (link[0].get("addr_info", []) if link else [])
        if a.get("family") == "inet"
    ]
    if str(iface) not in have:
        commands += [["ip", "addr", "add", str(iface), "dev", name]]
    if not link or "UP" not in link[0].get("flags", []):
        commands += [["ip", "link", "set", name, "up"]]
    changed = bool(commands)
    if changed and not module.check_mode:
        if not exists:
            # Record first: a crash between creating and recording must not orphan the bridge.
            write_json_atomic(record_path, {"bridge": name, "address": str(iface)})
        for cmd in commands:
            rc, _out, err = module.run_command(cmd)
            if rc != 0:
                module.fail_json(msg=f"`{' '.join(cmd)}` failed: {err.strip()}")
        write_json_atomic(record_path, {"bridge": name, "address": str(iface)})
    module.exit_json(changed=changed, bridge=name, address=str(iface))


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
