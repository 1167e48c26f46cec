"""bench/baseline: our baseline capture and verify (roles/baseline) against AIDE's init and check.

On the same lab hosts in the same run: a full web/DB host (nginx, PostgreSQL, nftables from the signed mirror)
and the same plus a tree of small files (default 1,000,000). See bench/README.md.

Modules: `parsing` (pure: the AIDE configuration, AIDE's and ansible-playbook's output, manifest statistics,
the table), `cli` (the benchmark: lab, measurements, teardown). Playbook runs, SSH and the leftover check come
from bench/hardening_compare/lab.py.
"""
