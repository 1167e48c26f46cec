"""The collections requirements.yml names are installed (from the pinned `ansible` bundle) in range."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

PROJECT = pathlib.Path(__file__).resolve().parents[2]
REQUIREMENTS = yaml.safe_load((PROJECT / "requirements.yml").read_text())["collections"]


def installed_collections() -> dict[str, str]:
    galaxy = pathlib.Path(sys.executable).parent / "ansible-galaxy"
    out = subprocess.run(
        [str(galaxy), "collection", "list", "--format", "json"], capture_output=True, text=True, check=True, cwd=PROJECT
    ).stdout
    found: dict[str, str] = {}
    for _path, collections in json.loads(out).items():
        for name, info in collections.items():
            found.setdefault(name, info["version"])  # first path wins, as Ansible resolves it
    return found


INSTALLED = installed_collections()


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r["name"])
def test_required_collection_is_installed_in_range(requirement: dict) -> None:
    name = requirement["name"]
    assert name in INSTALLED, f"{name} is not installed: it comes from the `ansible` package (make setup)"
    wanted = SpecifierSet(requirement.get("version", ">=0").replace(" ", ""))
    assert Version(INSTALLED[name]) in wanted, f"{name} {INSTALLED[name]} does not satisfy {wanted}"


def test_every_collection_used_in_the_tree_is_listed() -> None:
    """A fully qualified name of a collection we do not list would work here by luck and break elsewhere."""
    listed = {r["name"] for r in REQUIREMENTS} | {"ansible.builtin"}
    used: set[str] = set()
    for path in [
        *PROJECT.glob("roles/**/*.yml"),
        *PROJECT.glob("playbooks/*.yml"),
        *PROJECT.glob("molecule/**/*.yml"),
        PROJECT / "ansible.cfg",
        *PROJECT.glob(".config/molecule/*.yml"),
    ]:
        for token in path.read_text().replace("'", " ").replace('"', " ").replace("(", " ").split():
            parts = token.rstrip(":,").split(".")
            if (
                len(parts) >= 3
                and parts[0] in {"ansible", "community", "ansible_collections"}
                and parts[1].isidentifier()
            ):
                used.add(".".join(parts[:2]))
    assert used <= listed, f"collections used but not in requirements.yml: {sorted(used - listed)}"
