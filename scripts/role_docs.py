#!/usr/bin/env python3
"""Render each role's variable table in its README from meta/argument_specs.yml.

    scripts/role_docs.py          rewrite the tables
    scripts/role_docs.py --check  exit 1 if a README is out of date (tests/unit/test_role_docs.py)

The table sits between the markers below, so the prose around it stays hand-written. Why our own
script: aar-doc (the dev-sec choice) is not packaged for this controller's pinned set, and this is
one small table.
"""

from __future__ import annotations

import pathlib
import sys

import yaml

BEGIN, END = "<!-- BEGIN VARIABLES (scripts/role_docs.py) -->", "<!-- END VARIABLES -->"
ROLES = pathlib.Path(__file__).resolve().parents[1] / "roles"


def cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def table(spec_path: pathlib.Path) -> str:
    specs = yaml.safe_load(spec_path.read_text())["argument_specs"]
    rows = ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            kind = option.get("type", "str")
            if kind == "list" and "elements" in option:
                kind = f"list[{option['elements']}]"
            default = (
                "**required**"
                if option.get("required")
                else f"`{cell(yaml.safe_dump(option.get('default', '')).strip().removesuffix('...').strip())}`"
            )
            if "choices" in option:
                kind += " (" + ", ".join(map(str, option["choices"])) + ")"
            description = option.get("description", "")
            if isinstance(description, list):
                description = " ".join(description)
            prefix = "" if entry == "main" else f"({entry}) "
            rows.append(f"| `{name}` | {kind} | {default} | {prefix}{cell(description)} |")
    return "\n".join(rows)


def render(readme: str, new_table: str) -> str:
    if BEGIN not in readme:
        raise SystemExit(f"README lacks the marker {BEGIN}")
    head, rest = readme.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for spec in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        readme = spec.parents[1] / "README.md"
        current = readme.read_text() if readme.exists() else ""
        wanted = render(current, table(spec))
        if wanted != current:
            stale.append(str(readme))
            if not check:
                readme.write_text(wanted)
    if check and stale:
        print("out of date (run scripts/role_docs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
