#!/usr/bin/env python3
"""Benchmark (issue 5, item 6): Lynis hardening index of this project's hardening against devsec and lockdown.

One fresh, identical Debian 12 lab host per variant (untouched, devsec, lockdown, ours), each running the same
estate service; after hardening: Lynis index, warnings, suggestions, service health, a fresh SSH login,
failed units and wall time, in one table (and JSON). The code is in bench/hardening_compare/; see bench/README.md.

    sudo .venv/bin/python bench/hardening_compare.py --devsec ANCHORS/ansible-collection-hardening \
        --lockdown ANCHORS/DEBIAN12-CIS --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardening_compare.cli import main

if __name__ == "__main__":
    sys.exit(main())
