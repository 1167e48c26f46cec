#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_baseline_compare
short_description: Compare a host's live manifest with its signed known-good baseline and classify the findings
description:
  - Runs on the controller (C(delegate_to) C(localhost)), where the baseline store and the public half of the
    signing key are. The signing key itself is never needed here.
  - Verifies the baseline's signature with C(ssh-keygen -Y verify) (namespace C(enp-baseline)) before reading
    it, and refuses (fails) an unsigned or tampered baseline, or one whose format or host does not match the
    live manifest, saying what to do (restore the store from the mirror, or recapture from a known-good host).
  - Compares every section, drops what the declared noise rules explain (O(rules)), and classifies each
    remaining difference by kind and severity (docs/baselines.md).
  - Writes the JSON findings report to O(report_path); rewrites it only when the findings changed, so
    rerunning on an unchanged host reports C(changed=false). Nothing is written in check mode.
options:
  baseline_path:
    description: The stored baseline manifest (canonical JSON); its signature is O(baseline_path)C(.sig).
    type: path
    required: true
  signature_path:
    description: The baseline's signature, if not next to it as O(baseline_path)C(.sig).
    type: path
  live_path:
    description: The live manifest just captured on the host and fetched to the controller.
    type: path
    required: true
  allowed_signers:
    description: OpenSSH allowed_signers file naming the baseline signing key's public half (principal C(enp-baseline)).
    type: path
    required: true
  host:
    description:
      - The inventory name of the host being verified. When set, both manifests must say this host, so a
        baseline copied over another host's name in the store is refused.
    type: str
  rules:
    description:
      - Noise rules, each C({section, key, fields, reason}); see docs/baselines.md. Unknown keys or sections fail
        the module.
    type: list
    elements: dict
    default: []
  report_path:
    description: Where to write the JSON findings report on the controller. Omit to only return results.
    type: path
  fail_on_findings:
    description: Fail the task when there is any finding (after writing the report), for CI gates.
    type: bool
    default: false
author: enp contributors
"""

EXAMPLES = r"""
- name: Compare the live manifest with the signed baseline
  enp_baseline_compare:
    baseline_path: "{{ enp_baseline_store }}/{{ inventory_hostname }}.json"
    live_path: "{{ __baseline_live_dir }}/{{ inventory_hostname }}.json"
    allowed_signers: "{{ enp_baseline_allowed_signers }}"
    host: "{{ inventory_hostname }}"
    rules: "{{ baseline_noise_rules }}"
    report_path: "{{ enp_baseline_store }}/reports/{{ inventory_hostname }}.json"
  delegate_to: localhost
"""

RETURN = r"""
clean:
  description: True when no finding is left after the noise rules.
  returned: success
  type: bool
summary:
  description: Number of findings in total, per severity and per kind.
  returned: success
  type: dict
  sample: {total: 2, clean: false, by_severity: {critical: 1, high: 1, medium: 0, low: 0},
           by_kind: {new-persistence: 1, package-changed: 1}}
summary_line:
  description: One line for the incident report.
  returned: success
  type: str
  sample: "web1: 2 findings (critical 1, high 1) - new-persistence 1, package-changed 1"
findings:
  description: One entry per difference with kind, severity, section, key, change, before, after and reason.
  returned: success
  type: list
  elements: dict
text:
  description: The human report, one line per finding grouped by severity, then what to do.
  returned: success
  type: list
  elements: str
signature:
  description: ssh-keygen's confirmation that the baseline signature is good.
  returned: success
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_baseline import (
    ManifestError,
    RuleError,
    SignatureError,
    build_report,
    check_pair,
    compare,
    load_manifest,
    read_signed_manifest,
    render_text,
    validate_rules,
)


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


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
            baseline_path=dict(type="path", required=True),
            signature_path=dict(type="path"),
            live_path=dict(type="path", required=True),
            allowed_signers=dict(type="path", required=True),
            host=dict(type="str"),
            rules=dict(type="list", elements="dict", default=[]),
            report_path=dict(type="path"),
            fail_on_findings=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = validate_rules(params["rules"])
    if problems:
        module.fail_json(
            msg="baseline noise rules are not usable (fix baseline_noise_rules in the inventory or role defaults):\n- "
            + "\n- ".join(problems)
        )
    who = params["host"] or "this host"
    try:
        baseline, confirmation = read_signed_manifest(
            params["baseline_path"], params["allowed_signers"], params["signature_path"]
        )
        with open(params["live_path"], "rb") as handle:
            live = load_manifest(handle.read(), source=params["live_path"])
        check_pair(baseline, live, params["host"])
        findings = compare(baseline, live, params["rules"])
    except (SignatureError, ManifestError) as exc:
        module.fail_json(msg=f"refused to verify {who} against its baseline: {exc}", refused=True)
    except RuleError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot read the live manifest of {who} ({exc}); rerun the capture step")
    report = build_report(baseline, live, findings, len(params["rules"]))
    text = render_text(str(live["host"]), findings)
    changed = False
    path = params["report_path"]
    if path and read_json(path) != report:
        changed = True
        if not module.check_mode:
            write_report(path, report)
    output = dict(
        changed=changed,
        clean=report["clean"],
        summary=report["summary"],
        summary_line=report["summary_line"],
        findings=report["findings"],
        text=text,
        signature=confirmation,
    )
    if params["fail_on_findings"] and findings:
        module.fail_json(msg="\n".join(text), **output)
    module.exit_json(**output)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
