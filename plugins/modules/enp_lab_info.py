#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_info
short_description: Report what the lab provider has created and whether it is alive
description:
  - Reads the records under O(state_dir) (hosts, bridges, services) and checks each one live - process
    running (by recorded PID and start time), SSH answering, memory in use, bridge present.
  - Teardown loops over this output, so it removes what was created even if the inventory changed since.
options:
  state_dir:
    description: Lab state folder.
    type: path
    required: true
  zones:
    description: Optional C(enp_zones) map, to name each host's zone from its bridge.
    type: dict
    default: {}
author: enp contributors
"""

EXAMPLES = r"""
- name: Read lab status
  enp_lab_info:
    state_dir: "{{ enp_lab_state_dir }}"
  register: lab
"""

RETURN = r"""
hosts:
  description: One record per lab host.
  returned: always
  type: list
  elements: dict
networks:
  description: One record per bridge the lab created.
  returned: always
  type: list
  elements: dict
services:
  description: One record per controller-side service the lab started (e.g. the mirror).
  returned: always
  type: list
  elements: dict
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import load_json
from ansible.module_utils.enp_lab_runtime import is_mounted, is_our_process, memory_bytes, ssh_answers


def host_records(state_dir: str, zones: dict) -> list[dict]:
    bridge_zone = {spec.get("lab_bridge"): zone for zone, spec in zones.items()}
    records = []
    for path in sorted(glob.glob(os.path.join(state_dir, "hosts", "*", "host.json"))):
        record = load_json(path, {})
        if not record:
            continue
        running = is_our_process(record.get("pid"), record.get("start_time"))
        address = record["interfaces"][0]["address"].split("/")[0] if record.get("interfaces") else None
        records.append(
            {
                "name": record["name"],
                "zone": bridge_zone.get(record["interfaces"][0]["bridge"]) if record.get("interfaces") else None,
                "address": address,
                "user": record.get("user", "enp"),
                "running": running,
                "ssh": bool(running and address and ssh_answers(address, timeout=0.5)),
                "pid": record.get("pid") if running else None,
                "memory_bytes": memory_bytes(record.get("cgroups", [])) if running else None,
                "mounted": is_mounted(os.path.join(os.path.dirname(path), "merged")),
                "cgroups": record.get("cgroups", []),
            }
        )
    return records


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(state_dir=dict(type="path", required=True), zones=dict(type="dict", default={})),
        supports_check_mode=True,
    )
    state_dir = module.params["state_dir"]
    networks = []
    for path in sorted(glob.glob(os.path.join(state_dir, "networks", "*.json"))):
        record = load_json(path, {})
        if record:
            networks.append(
                {
                    "bridge": record["bridge"],
                    "address": record.get("address"),
                    "present": os.path.exists(f"/sys/class/net/{record['bridge']}"),
                }
            )
    services = []
    for path in sorted(glob.glob(os.path.join(state_dir, "services", "*.json"))):
        record = load_json(path, {})
        if record:
            marker = str(record.get("marker", "")).encode() or b"python"
            running = is_our_process(record.get("pid"), record.get("start_time"), marker)
            services.append(
                {
                    "name": record.get("name", os.path.basename(path)[:-5]),
                    "running": running,
                    "pid": record.get("pid") if running else None,
                }
            )
    module.exit_json(
        changed=False, hosts=host_records(state_dir, module.params["zones"]), networks=networks, services=services
    )


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
