"""WSGI entry point: ``gunicorn --chdir <release> civic_services.wsgi:application``.

Settings come from CIVIC_CONFIG / CIVIC_* (see civic_services.config); a bad setting raises here, so
the worker fails to boot with the reason in the journal instead of serving errors.
"""

from __future__ import annotations

from civic_services.web import create_app

application = create_app()
