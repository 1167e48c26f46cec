#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_limits
short_description: Raise controller kernel limits the lab needs, and put them back at teardown
description:
  - Past about 17 containers, new ones die with "Too many open files" because
    C(fs.inotify.max_user_instances) defaults to 128. This raises such limits at runtime only
    (nothing is written to /etc), records the values it found, and restores them with V(absent).
  - The limits are machine-wide, so the record is too (C(/run/enp-lab/limits.json), gone at reboot);
    V(absent) restores them only when no lab host of any lab still runs on this controller.
  - Never lowers a limit that is already high enough.
options:
  limits:
    description: sysctl name to minimum value.
    type: dict
    default: {fs.inotify.max_user_instances: 8192, fs.inotify.max_user_watches: 1048576}
  state_dir:
    description: Lab state folder of the calling lab (kept for the interface; the record is machine-wide).
    type: path
    required: true
  record:
    description: Machine-wide record of the original values.
    type: path
    default: /run/enp-lab/limits.json
  state:
    description: V(present) raises, V(absent) restores what was recorded.
    type: str
    choices: [present, absent]
    default: present
author: enp contributors
"""

EXAMPLES = r"""
- name: Raise inotify limits for many containers
  enp_lab_limits:
    state_dir: "{{ enp_lab_state_dir }}"
"""

RETURN = r"""
original:
  description: Values found before the lab raised them.
  returned: always
  type: dict
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import load_json, write_json_atomic


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read(name: str) -> int:
    with open(sysctl_path(name), encoding="utf-8") as handle:
        return int(handle.read().split()[0])


def write(name: str, value: int) -> None:
    with open(sysctl_path(name), "w", encoding="utf-8") as handle:
        handle.write(str(value))


def other_lab_hosts_running() -> bool:
    """Any host cgroup left under enp-lab means some lab still runs hosts that need the limits."""
    return any(
        os.path.isdir(os.path.join(parent, entry))
        for parent in glob.glob("/sys/fs/cgroup/enp-lab") + glob.glob("/sys/fs/cgroup/*/enp-lab")
        for entry in os.listdir(parent)
    )


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            limits=dict(
                type="dict", default={"fs.inotify.max_user_instances": 8192, "fs.inotify.max_user_watches": 1048576}
            ),
            state_dir=dict(type="path", required=True),
            record=dict(type="path", default="/run/enp-lab/limits.json"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    record_path = module.params["record"]
    original: dict[str, int] = load_json(record_path, {})
    changed = False
    if module.params["state"] == "present":
        for name, minimum in module.params["limits"].items():
            current = read(name)
            if current < int(minimum):
                changed = True
                if not module.check_mode:
                    original.setdefault(name, current)
                    write_json_atomic(record_path, original)
                    write(name, int(minimum))
    elif other_lab_hosts_running():
        module.exit_json(changed=False, original=original, msg="other lab hosts still run; limits kept raised")
    else:
        for name, value in original.items():
            if read(name) != int(value):
                changed = True
                if not module.check_mode:
                    write(name, int(value))
        if original and not module.check_mode:
            os.unlink(record_path)
        changed = changed or bool(original)
    module.exit_json(changed=changed, original=original)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
