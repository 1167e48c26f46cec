"""Every role has the documented shape, and its README's variable table matches its argument specs."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

PROJECT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (PROJECT / "roles").iterdir() if p.is_dir())


def test_readme_tables_are_generated_from_argument_specs() -> None:
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "scripts/role_docs.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_specs_readme_and_prefixed_defaults(role: pathlib.Path) -> None:
    assert (role / "meta/argument_specs.yml").exists(), "every role declares its inputs"
    assert (role / "README.md").exists()
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
    declared = set()
    for spec in specs.values():
        declared |= set((spec.get("options") or {}).keys())
    defaults_file = role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    for name in defaults or {}:
        assert name.startswith(f"{role.name}_"), f"default {name} must be prefixed {role.name}_"
        assert name in declared, f"default {name} is not declared in meta/argument_specs.yml"
