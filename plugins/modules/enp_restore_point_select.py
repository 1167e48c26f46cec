#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_restore_point_select
short_description: Choose the latest clean restore point (database recovery target, base backup, document snapshots)
description:
  - Runs on the controller (C(delegate_to) C(localhost)) after the evidence was gathered (scored database
    transactions (from C(pg_waldump) of the archived WAL), scored document snapshots of each app server's
    content-addressed store, verified base backups and timed host baseline findings).
  - For the database, restores to just before the first malicious committed transaction (C(recovery_target_xid),
    C(recovery_target_inclusive=off)); without one, to just before the first serious timed finding on a database
    host, else to O(incident_time), else to the end of the WAL. The base backup is the newest verified one that
    ended before that target; every newer one that was skipped is listed with the reason.
  - For the documents of each host, the newest snapshot whose repository check passed, that shows no sign of tampering
    and that was taken before the earliest malicious change (of that host's documents, of the database, or the
    incident time). Rejected snapshots are listed with their reasons.
  - An operator may override the database target or a host's snapshot; the override needs a reason, and both
    the override and the automatic choice are recorded.
  - Writes the JSON decision to O(report_path) only when it changed, so a rerun reports C(changed=false).
    Nothing is written in check mode.
options:
  incident_time:
    description: When the attack was noticed (ISO 8601, UTC if no zone). Used when no better evidence exists.
    type: str
  base_backups:
    description:
      - Base backups, each C({label, start, stop, verified, detail}) (C(verified) from C(pg_verifybackup)), as a
        list or the path of a JSON file holding the list on the controller.
    type: raw
    required: true
  transactions:
    description:
      - Database transaction verdicts (score_transactions of module_utils enp_restore_point), as a list or the path
        of a JSON file.
    type: raw
    default: []
  document_snapshots:
    description:
      - Document snapshots, each C({name, host, time, repository_ok, repository_detail, score}) where C(score) is
        the output of score_document_snapshot, as a list or the path of a JSON file.
    type: raw
    default: []
  baseline_findings:
    description:
      - Host baseline findings, each C({host, severity, kind, path, time, text}) (C(time) may be null), as a list
        or the path of a JSON file.
    type: raw
    default: []
  db_hosts:
    description: Inventory names of the database hosts (their timed findings can set the database target).
    type: list
    elements: str
    default: []
  override:
    description:
      - "Operator override C({database: {type: xid|time|latest, ...}, documents: {HOST: SNAPSHOT}, reason, by}).
        Refused without a non-empty C(reason)."
    type: dict
  report_path:
    description: Where to write the JSON decision on the controller. Omit to only return it.
    type: path
  fail_on_error:
    description: Fail the task (after writing the report) when no usable base backup or document snapshot exists.
    type: bool
    default: true
author: enp contributors
"""

EXAMPLES = r"""
- name: Choose the restore point from the gathered evidence
  enp_restore_point_select:
    incident_time: "{{ enp_incident_time | default(omit) }}"
    base_backups: "{{ enp_restore_dir }}/base_backups.json"
    transactions: "{{ enp_restore_dir }}/transactions.json"
    document_snapshots: "{{ enp_restore_dir }}/document_snapshots.json"
    baseline_findings: "{{ enp_restore_dir }}/baseline_findings.json"
    db_hosts: "{{ groups['db'] }}"
    report_path: "{{ enp_restore_dir }}/decision.json"
  delegate_to: localhost
  run_once: true
  register: __restore_point

- name: Restore an older snapshot than the automatic choice, on the operator's word
  enp_restore_point_select:
    base_backups: "{{ enp_restore_dir }}/base_backups.json"
    transactions: "{{ enp_restore_dir }}/transactions.json"
    document_snapshots: "{{ enp_restore_dir }}/document_snapshots.json"
    override:
      documents: {app1: "docs-2026-12-05T22:00"}
      reason: "the 23:00 snapshot holds uploads the call centre reported as garbled"
      by: "on-call DBA R. Sharma"
    report_path: "{{ enp_restore_dir }}/decision.json"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
ok:
  description: True when a base backup and a snapshot for every document host were found.
  returned: success
  type: bool
error:
  description: What is missing and what to do, or null.
  returned: success
  type: str
database:
  description:
    - "C({target, reason, base_backup, skipped_base_backups, lost_transactions}); C(target) is
      C({type: xid, xid, inclusive: false, time}), C({type: time, time, inclusive: false}) or C({type: latest})."
  returned: success
  type: dict
  sample: {target: {type: xid, xid: 732, inclusive: false, time: "2026-12-06T07:33:00.666691+00:00"},
           base_backup: {label: "20261206T000000F", stop: "2026-12-06T00:05:00+00:00", verified: true},
           skipped_base_backups: [], lost_transactions: 3}
documents:
  description: Per host C({snapshot, cutoff, cutoff_source, rejected, reason}).
  returned: success
  type: dict
earliest_malicious_change:
  description: ISO time of the earliest malicious change found anywhere, or null.
  returned: success
  type: str
explanation:
  description: Plain sentences for the operator, what was chosen, why, on what evidence and what is lost.
  returned: success
  type: list
  elements: str
decision:
  description: The whole decision as written to O(report_path) (also automatic, override and evidence).
  returned: success
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_restore_point import choose_restore_point


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def load_list(value: object, name: str) -> list:
    """An option given inline as a list, or as the path of a JSON file holding the list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            with open(value, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {value} ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{name}: {value} is not JSON ({exc})") from None
        if not isinstance(data, list):
            raise ValueError(f"{name}: {value} must hold a JSON list, not {type(data).__name__}")
        return data
    raise ValueError(f"{name} must be a list or the path of a JSON file holding one, not {type(value).__name__}")


def write_report(path: str, report: dict) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            incident_time=dict(type="str"),
            base_backups=dict(type="raw", required=True),
            transactions=dict(type="raw", default=[]),
            document_snapshots=dict(type="raw", default=[]),
            baseline_findings=dict(type="raw", default=[]),
            db_hosts=dict(type="list", elements="str", default=[]),
            override=dict(type="dict"),
            report_path=dict(type="path"),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        decision = choose_restore_point(
            incident_time=params["incident_time"],
            base_backups=load_list(params["base_backups"], "base_backups"),
            transactions=load_list(params["transactions"], "transactions"),
            document_snapshots=load_list(params["document_snapshots"], "document_snapshots"),
            baseline_findings=load_list(params["baseline_findings"], "baseline_findings"),
            db_hosts=params["db_hosts"],
            override=params["override"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        module.fail_json(msg=f"cannot choose a restore point: {exc}")
    # Round trip through JSON so what is returned is exactly what is written (and comparable with the file).
    decision = json.loads(json.dumps(decision, sort_keys=True))
    changed = False
    path = params["report_path"]
    if path and read_json(path) != decision:
        changed = True
        if not module.check_mode:
            write_report(path, decision)
    output = dict(
        changed=changed,
        ok=decision["ok"],
        error=decision["error"],
        database=decision["database"],
        documents=decision["documents"],
        earliest_malicious_change=decision["earliest_malicious_change"],
        explanation=decision["explanation"],
        decision=decision,
    )
    if params["fail_on_error"] and decision["error"]:
        module.fail_json(msg=decision["error"], **output)
    module.exit_json(**output)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
