#!/usr/bin/env python3
"""Build the civic-services release artifact: dist/civic-services-<version>.tar.gz and its .sha256.

    scripts/build_release.py                          # version from app/civic_services/__init__.py
    scripts/build_release.py --version 1.0.1          # same code, another version (redeploy tests)
    scripts/build_release.py --broken health          # a deliberately broken release: /health always 503
    scripts/build_release.py --broken import          # a deliberately broken release: the app fails to import

Deterministic: entries sorted, fixed mtime (SOURCE_DATE_EPOCH, default 2023-12-21), uid/gid 0, normalised
modes, gzip without name or time; the same source and options give the same bytes and checksum (with the
same zlib: Debian 12's).

Layout (no top-level directory: unpack into an empty /opt/civic-services/releases/<version>/)::

    RELEASE                     JSON: name, version, build_id, content_sha256, broken, files{path: sha256}
    bin/civic-services          CLI, runs with /usr/bin/python3 (no virtualenv)
    civic_services/             the package, with migrations/, templates/, static/ and wsgi.py

Run it with: gunicorn --chdir <release> civic_services.wsgi:application
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path
from types import ModuleType

PROJECT = Path(__file__).resolve().parents[1]
APP = PROJECT / "app"
NAME = "civic-services"
DEFAULT_EPOCH = 1703116800  # 2023-12-21T00:00:00Z, the day of the attack
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([+-][0-9A-Za-z.-]+)?$")
EXCLUDED_PARTS = {"__pycache__"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}

BROKEN_WSGI = {
    "health": '''"""DELIBERATELY BROKEN RELEASE (built with --broken health): /health always answers 503.

Everything else works, so a rollout can only notice it through the health check.
"""

from __future__ import annotations

import json

from civic_services.web import create_app

_app = create_app()


def application(environ, start_response):  # noqa: ANN001, ANN201
    if environ.get("PATH_INFO") == "/health":
        body = json.dumps(
            {"status": "fail", "failed": ["release"],
             "checks": {"release": {"ok": False, "error": "deliberately broken build (--broken health)"}}}
        ).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))])
        return [body]
    return _app(environ, start_response)
''',
    "import": '''"""DELIBERATELY BROKEN RELEASE (built with --broken import): the application cannot be imported.

gunicorn's worker fails to boot and gunicorn exits, so the service does not start.
"""

raise ImportError("civic-services: deliberately broken build (--broken import)")
''',
}


def _release_module() -> ModuleType:
    """app/civic_services/release.py: the same listing/digest code that verify-release uses."""
    sys.path.insert(0, str(APP))
    try:
        spec = importlib.util.spec_from_file_location("civic_services.release", APP / "civic_services" / "release.py")
        if spec is None or spec.loader is None:
            raise SystemExit(f"build_release: cannot load {APP / 'civic_services' / 'release.py'}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(APP))


def source_version() -> str:
    text = (APP / "civic_services" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if not match:
        raise SystemExit("build_release: no __version__ in app/civic_services/__init__.py")
    return match.group(1)


def collect(broken: str | None) -> dict[str, bytes]:
    """Release path -> content, from app/ (bin/ and civic_services/)."""
    files: dict[str, bytes] = {}
    for top in ("bin", "civic_services"):
        for path in sorted((APP / top).rglob("*")):
            rel = path.relative_to(APP)
            if path.is_dir() or EXCLUDED_PARTS.intersection(rel.parts) or path.suffix in EXCLUDED_SUFFIXES:
                continue
            files[rel.as_posix()] = path.read_bytes()
    if broken:
        files["civic_services/wsgi.py"] = BROKEN_WSGI[broken].encode()
    return files


def _dirs(paths: list[str]) -> list[str]:
    out = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return sorted(out)


def build(version: str, broken: str | None, out_dir: Path, epoch: int) -> tuple[Path, str, dict[str, object]]:
    release = _release_module()
    files = collect(broken)
    hashes = {p: hashlib.sha256(data).hexdigest() for p, data in files.items()}
    content = release.listing_digest(hashes)
    info: dict[str, object] = {
        "name": NAME,
        "version": version,
        "build_id": content[:12],
        "content_sha256": content,
        "broken": broken,
        "files": hashes,
    }
    files["RELEASE"] = (json.dumps(info, indent=1, sort_keys=True) + "\n").encode()

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entries = [(d, None) for d in _dirs(list(files))] + [(p, files[p]) for p in files]
        for name, data in sorted(entries, key=lambda e: e[0]):
            ti = tarfile.TarInfo(name)
            ti.mtime = epoch
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            else:
                ti.mode = 0o755 if name.startswith("bin/") else 0o644
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{NAME}-{version}.tar.gz"
    tmp = artifact.with_name(f".{artifact.name}.tmp")
    with tmp.open("wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, artifact)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    artifact.with_name(artifact.name + ".sha256").write_text(f"{digest}  {artifact.name}\n")
    return artifact, digest, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the deterministic civic-services release artifact.")
    parser.add_argument("--version", help="release version (default: __version__ of the source, +broken-<mode>)")
    parser.add_argument("--broken", choices=sorted(BROKEN_WSGI), help="build a deliberately broken release")
    parser.add_argument("--out", default=str(PROJECT / "dist"), help="output directory (default: dist/)")
    parser.add_argument("--json", action="store_true", help="print artifact, sha256, version and build id as JSON")
    args = parser.parse_args(argv)
    version = args.version or (source_version() + (f"+broken-{args.broken}" if args.broken else ""))
    if not VERSION_RE.match(version):
        parser.error(f"version {version!r}: use N.N.N with an optional -suffix or +suffix (letters, digits, . -)")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    artifact, digest, info = build(version, args.broken, Path(args.out), epoch)
    if args.json:
        print(json.dumps({"artifact": str(artifact), "sha256": digest, "version": version,
                          "build_id": info["build_id"], "broken": args.broken}))  # fmt: skip
    else:
        note = f" (DELIBERATELY BROKEN: {args.broken})" if args.broken else ""
        print(f"{artifact}  sha256 {digest}  version {version}  build {info['build_id']}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
