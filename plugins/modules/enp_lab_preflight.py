#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_preflight
short_description: Refuse to build the lab when the controller or the inventory cannot work
description:
  - Read-only checks before any lab change, each failure with what to do next
    (root, required tools, overlayfs, cgroups, the inventory plan).
options:
  plan:
    description: Output of the C(enp_lab_plan) filter.
    type: dict
    required: true
  tools:
    description: Commands that must be on PATH, mapped to the Debian package that provides each.
    type: dict
    default: {}
author: enp contributors
"""

EXAMPLES = r"""
- name: Check the controller and the inventory
  enp_lab_preflight:
    plan: "{{ groups['all'] | enp_lab_plan(hostvars, enp_zones) }}"
"""

RETURN = r"""
problems:
  description: Every problem found (the module fails when there is one).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import REQUIRED_TOOLS


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(plan=dict(type="dict", required=True), tools=dict(type="dict", default={})),
        supports_check_mode=True,
    )
    problems: list[str] = list(module.params["plan"].get("problems", []))
    if os.geteuid() != 0:
        problems.append(
            "the lab needs root (bridges, overlay mounts, systemd-nspawn): run it as root, e.g. `sudo make lab-up`."
        )
    tools = dict(REQUIRED_TOOLS, **module.params["tools"])
    missing = sorted({pkg for tool, pkg in tools.items() if not module.get_bin_path(tool)})
    if missing:
        problems.append(
            f"missing tools on the controller: install Debian packages {' '.join(missing)} (`make setup` does it)."
        )
    with open("/proc/filesystems", encoding="utf-8") as handle:
        if "overlay" not in handle.read():
            problems.append("the kernel has no overlay filesystem: run `modprobe overlay` on the controller.")
    if not module.params["plan"].get("hosts"):
        problems.append("the inventory defines no lab hosts: check -i (expected inventories/lab).")
    if problems:
        module.fail_json(msg="lab pre-flight failed:\n- " + "\n- ".join(problems), problems=problems)
    module.exit_json(changed=False, problems=[])


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
