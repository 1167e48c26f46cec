# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the recovery phases (playbooks/rebuild.yml): hardening scores for the incident report."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_hardening_scores
short_description: Per-host hardening score (percent of applicable controls passing) from a compliance report
description:
  - >-
    Reads the report playbooks/harden.yml writes (C(enp_compliance_report)) and returns a mapping of host to
    percent. Not-applicable controls count neither way. Companion filters C(enp_not_applicable) return the
    report's not-applicable controls as a list of C(what)/C(why) items for the recovery report's "not applicable in
    the lab" list, and C(enp_drift_rows) turns baseline verify reports (a list) into rows with C(host), C(path),
    C(kind), C(detail) and C(severity).
options:
  _input:
    description: The compliance report (compliance.json, parsed).
    type: dict
    required: true
"""

EXAMPLES = r"""
hardening_after: "{{ lookup('ansible.builtin.file', dir ~ '/compliance.json') | from_json | enp_hardening_scores }}"
"""

RETURN = r"""
_value:
  description: Percent (one decimal) per host.
  type: dict
"""

import os
import sys

# Why the path juggling: see plugins/filter/enp_estate.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
import enp_baseline  # noqa: E402
import enp_controls  # noqa: E402


class FilterModule:
    def filters(self) -> dict:
        return {
            "enp_hardening_scores": enp_controls.hardening_scores,
            "enp_not_applicable": enp_controls.not_applicable_items,
            "enp_drift_rows": enp_baseline.drift_rows,
        }
