# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: fingerprint of an armored OpenPGP public key."""

from __future__ import annotations

DOCUMENTATION = r"""
name: enp_openpgp_fingerprint
short_description: Fingerprint (40 hex digits, upper case) of an armored v4 OpenPGP public key
description:
  - Reads the first key packet of the armored key, as RFC 4880 section 12.2 defines the v4 fingerprint.
options:
  _input:
    description: The armored public key.
    type: str
    required: true
"""

EXAMPLES = r"""
fingerprint: "{{ lookup('ansible.builtin.file', 'enp-baseline-keyring.asc') | enp_openpgp_fingerprint }}"
"""

RETURN = r"""
_value:
  description: The fingerprint.
  type: str
"""

import os
import sys

from ansible.errors import AnsibleFilterError

# Why the path juggling: see plugins/filter/enp_lab.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
from enp_openpgp import OpenPGPError, v4_fingerprint  # noqa: E402


def enp_openpgp_fingerprint(armored: str) -> str:
    try:
        return v4_fingerprint(str(armored))
    except (OpenPGPError, IndexError) as exc:
        raise AnsibleFilterError(f"enp_openpgp_fingerprint: {exc}") from exc


class FilterModule:
    def filters(self) -> dict:
        return {"enp_openpgp_fingerprint": enp_openpgp_fingerprint}
