"""The RELEASE file: what a release directory contains, and the check that it still does.

``scripts/build_release.py`` writes RELEASE (JSON) at the root of the artifact::

    {"name": "civic-services", "version": "1.0.0", "build_id": "<first 12 of content_sha256>",
     "content_sha256": "<sha256 of the sha256sum-style listing below>", "broken": null,
     "files": {"bin/civic-services": "<sha256>", "civic_services/__init__.py": "<sha256>", ...}}

The build id depends only on the contents (no git, no clock), so the same source gives the same id.
In a source checkout there is no RELEASE: version comes from ``__version__`` and the build id is "dev".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from civic_services import NAME, __version__

RELEASE_FILE = "RELEASE"
RELEASE_ROOT = Path(__file__).resolve().parent.parent
IGNORED_DIRS = {"__pycache__"}


def listing_digest(files: Mapping[str, str]) -> str:
    """sha256 of the sorted ``<sha256>  <path>`` lines (the format of sha256sum)."""
    text = "".join(f"{files[path]}  {path}\n" for path in sorted(files))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative POSIX paths), skipping RELEASE and __pycache__."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or rel.as_posix() == RELEASE_FILE or IGNORED_DIRS.intersection(rel.parts):
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def read_release(root: Path = RELEASE_ROOT) -> dict[str, object] | None:
    path = root / RELEASE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def version_info(root: Path = RELEASE_ROOT) -> dict[str, object]:
    """What /version and `civic-services version` report."""
    info = read_release(root)
    if info is None:
        return {"name": NAME, "version": __version__, "build_id": "dev", "content_sha256": None}
    return {k: info.get(k) for k in ("name", "version", "build_id", "content_sha256")}


def verify_release(root: Path = RELEASE_ROOT) -> list[str]:
    """Problems of a release directory against its RELEASE file ([] = intact)."""
    info = read_release(root)
    if info is None:
        return [f"{root}: no {RELEASE_FILE} file (not a release directory)"]
    expected = info.get("files")
    if not isinstance(expected, dict):
        return [f"{root / RELEASE_FILE}: no file list"]
    problems: list[str] = []
    if listing_digest(expected) != info.get("content_sha256"):
        problems.append(f"{RELEASE_FILE}: file list does not match its content_sha256 (RELEASE edited?)")
    actual = hash_tree(root)
    for path in sorted(set(expected) | set(actual)):
        if path not in actual:
            problems.append(f"{path}: missing")
        elif path not in expected:
            problems.append(f"{path}: not part of the release")
        elif actual[path] != expected[path]:
            problems.append(f"{path}: content changed (sha256 {actual[path]}, release says {expected[path]})")
    return problems
