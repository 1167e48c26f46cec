"""Every module and filter documents itself in a form ansible-doc can read (a YAML slip breaks it)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_DOC = pathlib.Path(sys.executable).parent / "ansible-doc"
MODULES = sorted(p.stem for p in (PROJECT / "plugins/modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_parses(module: str) -> None:
    proc = subprocess.run(
        [str(ANSIBLE_DOC), "--json", "-t", "module", module], capture_output=True, text=True, cwd=PROJECT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[module]
    assert doc["doc"]["short_description"]
    assert doc["examples"].strip() and doc["return"] is not None
    assert doc["doc"].get("options") is not None


FILTER_FILES = sorted((PROJECT / "plugins/filter").glob("*.py"))


@pytest.mark.parametrize("path", FILTER_FILES, ids=lambda p: p.stem)
def test_filter_documentation_parses(path: pathlib.Path) -> None:
    """The DOCUMENTATION of each filter file is YAML with a name (a ': ' in a plain description breaks it)."""
    import yaml

    text = path.read_text(encoding="utf-8")
    namespace: dict[str, object] = {}
    for block in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        start = text.index(f'{block} = r"""') + len(f'{block} = r"""')
        namespace[block] = text[start : text.index('"""', start)]
    doc = yaml.safe_load(str(namespace["DOCUMENTATION"]))
    assert doc["name"] and doc["short_description"]
    yaml.safe_load(str(namespace["EXAMPLES"]))
    assert yaml.safe_load(str(namespace["RETURN"]))
