"""Shared pytest set-up.

The Ansible modules import their helpers as ``ansible.module_utils.<name>`` (how Ansible ships
project module_utils to hosts). For tests we register each file under plugins/module_utils with
that name, so tests import exactly the code the modules run.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import ansible.module_utils
from hypothesis import HealthCheck, settings

# Property tests check behaviour, not speed: a CI machine busy with lab containers made hypothesis' default
# 200 ms deadline fail at random. Speed is measured in bench/, never asserted in tests.
settings.register_profile("enp", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("enp")

PROJECT = pathlib.Path(__file__).resolve().parents[1]
MODULE_UTILS = PROJECT / "plugins" / "module_utils"

# Plain `import enp_mirror` works too, for quick experiments; tests use the ansible.module_utils names.
if str(MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(MODULE_UTILS))


def _register_module_utils() -> None:
    pending = sorted(MODULE_UTILS.glob("*.py"))
    # Load pure helpers first: others import them by their ansible.module_utils name.
    for _attempt in range(len(pending) + 1):
        failed = []
        for path in pending:
            name = f"ansible.module_utils.{path.stem}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except ImportError:
                del sys.modules[name]
                failed.append(path)
                continue
            setattr(ansible.module_utils, path.stem, module)
        if not failed:
            return
        pending = failed
    raise ImportError(f"could not load module_utils: {[p.name for p in pending]}")


_register_module_utils()
