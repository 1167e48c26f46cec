#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_compliance_report
short_description: Merge the hosts' compliance records into one estate report
description:
  - Reads every C(<records_dir>/<host>/<role>.json) written by M(enp_controls_check) and writes one JSON
    report with per-host results, totals, failed controls with their evidence, and every control that was
    not applicable here with its reason.
  - Runs on the controller. Rewrites O(dest) only when the content changed (the timestamp aside).
options:
  records_dir:
    description: Directory with one sub-directory per host.
    type: path
    required: true
  dest:
    description: Path of the merged JSON report.
    type: path
    required: true
author: enp contributors
"""

EXAMPLES = r"""
- name: Merge the records
  enp_compliance_report:
    records_dir: "{{ enp_compliance_dir }}/hosts"
    dest: "{{ enp_compliance_dir }}/compliance.json"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
totals:
  description: Number of control results per status over all hosts.
  returned: success
  type: dict
failed:
  description: Failed controls (host, id, evidence).
  returned: success
  type: list
  elements: dict
not_applicable:
  description: Controls not applicable here (id, title, reason, hosts).
  returned: success
  type: list
  elements: dict
lines:
  description: One summary line per host, then one per failed control.
  returned: success
  type: list
  elements: str
"""

import datetime
import glob
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_controls import merge_records, same_report, summary_lines


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(records_dir=dict(type="path", required=True), dest=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    paths = sorted(glob.glob(os.path.join(module.params["records_dir"], "*", "*.json")))
    if not paths:
        module.fail_json(
            msg=f"no compliance records under {module.params['records_dir']}: run playbooks/harden.yml first."
        )
    records, unreadable = [], []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                records.append(json.load(handle))
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path}: {exc}")
    if unreadable:
        module.fail_json(msg="unreadable compliance records (fetch them again):\n- " + "\n- ".join(unreadable))
    report = merge_records(records)
    report["generated_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    dest = module.params["dest"]
    try:
        with open(dest, encoding="utf-8") as handle:
            old = json.load(handle)
    except (OSError, ValueError):
        old = None
    changed = not same_report(old, report)
    if changed and not module.check_mode:
        tmp = dest + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, dest)
    module.exit_json(
        changed=changed,
        totals=report["totals"],
        failed=report["failed"],
        not_applicable=report["not_applicable"],
        lines=summary_lines(report),
    )


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
