#!/usr/bin/env python3
"""Benchmark (issue 6, item 6): our baseline capture and verify against AIDE's init and check.

On the same lab hosts in the same run: a full web/DB host (nginx, PostgreSQL, nftables from the signed mirror)
and the same plus 1,000,000 small files. Capture cold and warm (hash cache), verify on the unchanged host and
after changing 1% of the files, AIDE init and check over the same paths; one table with seconds, files/s, the
speed ratio and the kinds of evidence each covers. The code is in bench/baseline/; see bench/README.md.

    sudo .venv/bin/python bench/baseline.py [--files 1000000] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline.cli import main

if __name__ == "__main__":
    sys.exit(main())
