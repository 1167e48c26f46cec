#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_controls_check
short_description: Check a role's hardening controls on the live host and write its compliance record
description:
  - Evaluates every control of a catalogue (docs/hardening-controls.md) against the running host
    (C(/proc/sys), file modes, C(sshd -T), systemctl, dpkg, commands), never against what a task
    believes it wrote.
  - A control marked C(not_applicable) for containers is reported C(not_applicable) with its reason when
    the host is a container; a control listed in O(disabled) is reported C(disabled). Nothing is
    skipped silently.
  - Writes the per-host record to O(report_path) as JSON; rewrites it only when a result changed, so
    a rerun on an unchanged host reports C(changed=false).
  - Read-only in check mode (the record is not written).
options:
  role:
    description: Role the catalogue belongs to (recorded in the report).
    type: str
    required: true
  controls:
    description: The role's catalogue (list of controls).
    type: list
    elements: dict
    required: true
  disabled:
    description: Control IDs turned off by the inventory. Unknown IDs fail the module.
    type: list
    elements: str
    default: []
  report_path:
    description: Where to write the JSON record on the host. Omit to only return results.
    type: path
  fail_on_failed:
    description: Fail the task when a control that applies is not met (after writing the record).
    type: bool
    default: false
author: enp contributors
"""

EXAMPLES = r"""
- name: Check the SSH controls on the running daemon
  enp_controls_check:
    role: ssh_hardening
    controls: "{{ __ssh_hardening_controls }}"
    disabled: "{{ ssh_hardening_controls_disabled }}"
    report_path: /var/lib/enp/compliance/ssh_hardening.json
    fail_on_failed: true
"""

RETURN = r"""
container:
  description: Container technology detected (C(none) on a real machine or VM).
  returned: always
  type: str
  sample: systemd-nspawn
summary:
  description: Number of controls per status.
  returned: always
  type: dict
  sample: {pass: 41, fail: 0, not_applicable: 9, disabled: 1}
results:
  description: One entry per control with id, title, cis, gov, status and evidence.
  returned: always
  type: list
  elements: dict
failed_controls:
  description: IDs of controls that apply here and are not met.
  returned: always
  type: list
  elements: str
"""

import datetime
import json
import os
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_controls import (
    ControlError,
    HostProbe,
    detect_container,
    evaluate,
    same_report,
    summarise,
    unknown_ids,
    validate_catalogue,
)


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            role=dict(type="str", required=True),
            controls=dict(type="list", elements="dict", required=True),
            disabled=dict(type="list", elements="str", default=[]),
            report_path=dict(type="path"),
            fail_on_failed=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = validate_catalogue(params["controls"])
    unknown = unknown_ids(params["disabled"], params["controls"])
    if unknown:
        problems.append(
            f"controls_disabled names {', '.join(unknown)}, which {params['role']} does not have "
            f"(known: {', '.join(c.get('id', '?') for c in params['controls'])}); fix the spelling in the inventory."
        )
    if problems:
        module.fail_json(msg=f"{params['role']} controls catalogue is not usable:\n- " + "\n- ".join(problems))
    probe = HostProbe()
    try:
        container = detect_container(probe)
    except ControlError as exc:
        module.fail_json(msg=str(exc))
    results = [evaluate(c, probe, container, set(params["disabled"])) for c in params["controls"]]
    summary = summarise(results)
    failed = [r["id"] for r in results if r["status"] == "fail"]
    record = {
        "host": socket.gethostname(),
        "role": params["role"],
        "container": container,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "summary": summary,
        "controls": results,
    }
    changed = False
    path = params["report_path"]
    if path and not same_report(read_json(path), record):
        changed = True
        if not module.check_mode:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            tmp = f"{path}.tmp"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, path)
    output = dict(changed=changed, container=container, summary=summary, results=results, failed_controls=failed)
    if params["fail_on_failed"] and failed:
        lines = [f"{r['id']} {r['title']}: {r['evidence']}" for r in results if r["status"] == "fail"]
        module.fail_json(
            msg=f"{len(failed)} {params['role']} control(s) not met on the running host:\n- " + "\n- ".join(lines),
            **output,
        )
    module.exit_json(**output)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
