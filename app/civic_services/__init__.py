"""civic-services: the sample e-Nagar Palika application (413 urban local bodies of Madhya Pradesh).

Runtime needs only Debian bookworm packages: python3-flask (2.2), python3-psycopg2 (2.9), gunicorn (20.1).
Modules that the web app or the database need import Flask / psycopg2 lazily, so the pure helpers
(config, ulbs, store, docgen, release, manifest diffs) import with the standard library alone.
"""

from __future__ import annotations

__version__ = "1.0.0"
NAME = "civic-services"
