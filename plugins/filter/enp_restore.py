# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the restore role (see module_utils/enp_restore_point.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_seconds_between
short_description: Seconds from one time to a later one (achieved RPO, phase durations)
description:
  - Both times as ISO 8601 text (a space instead of C(T), a trailing C(Z) and PostgreSQL's C(+00) zone are
    accepted; naive means UTC) or epoch seconds. Returns C(later - earlier) in seconds, or C(None) when either is
    empty, so a report can say "unknown" instead of failing.
positional: earlier
options:
  _input:
    description: The later time.
    type: raw
    required: true
  earlier:
    description: The earlier time.
    type: raw
    required: true
"""

EXAMPLES = r"""
rpo_seconds: "{{ decision.incident_time | enp_seconds_between('2026-12-06 07:50:01.12+00') }}"
"""

RETURN = r"""
_value:
  description: Seconds (float), or None when a time is missing.
  type: float
"""

import os
import sys

from ansible.errors import AnsibleFilterError

# Why the path juggling: see plugins/filter/enp_estate.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
import enp_restore_point  # noqa: E402


def seconds_between(later: object, earlier: object) -> float | None:
    if later in (None, "") or earlier in (None, ""):
        return None
    try:
        return round((enp_restore_point.parse_time(later) - enp_restore_point.parse_time(earlier)).total_seconds(), 3)
    except ValueError as exc:
        raise AnsibleFilterError(f"enp_seconds_between: {exc}") from None


class FilterModule:
    def filters(self) -> dict:
        return {"enp_seconds_between": seconds_between}
