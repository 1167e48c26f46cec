"""The release artifact: deterministic, checksummed, self-verifying, served by gunicorn from its own directory;
and the deliberately broken releases the rollback test deploys."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.app.civic_harness import (
    APP_ROLE,
    PROJECT,
    SYSTEM_PYTHON,
    Estate,
    Server,
    cluster,
    load_build_release,
    make_estate,
    requires_runtime,
    serving,
)

BUILD = PROJECT / "scripts" / "build_release.py"


def _build(out: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), "--json", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _unpack(artifact: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(artifact) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _build(tmp_path_factory.mktemp("dist-good"), "--version", "1.4.2")


def test_build_is_deterministic(good: dict, tmp_path: Path) -> None:
    again = _build(tmp_path, "--version", "1.4.2")
    assert again["sha256"] == good["sha256"]
    assert Path(again["artifact"]).read_bytes() == Path(good["artifact"]).read_bytes()
    other = _build(tmp_path / "v2", "--version", "1.4.3")
    assert other["sha256"] != good["sha256"] and other["build_id"] == good["build_id"], "same code, same build id"


def test_artifact_layout_checksum_file_and_normalised_entries(good: dict) -> None:
    artifact = Path(good["artifact"])
    assert artifact.name == "civic-services-1.4.2.tar.gz"
    checksum = artifact.with_name(artifact.name + ".sha256").read_text()
    assert checksum == f"{hashlib.sha256(artifact.read_bytes()).hexdigest()}  {artifact.name}\n"
    with tarfile.open(artifact) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    required = ["RELEASE", "bin/civic-services", "civic_services/wsgi.py", "civic_services/migrations/001_core.sql",
                "civic_services/templates/base.html", "civic_services/static/style.css"]  # fmt: skip
    assert not [name for name in required if name not in names]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("/", ".."))]
    assert {m.mtime for m in members} == {1703116800}
    assert {(m.uid, m.gid, m.uname) for m in members} == {(0, 0, "root")}
    modes = {m.name: m.mode for m in members}
    assert modes["bin/civic-services"] == 0o755 and modes["civic_services/wsgi.py"] == 0o644


def test_release_verifies_and_detects_tampering(good: dict, tmp_path: Path) -> None:
    root = _unpack(good["artifact"], tmp_path / "releases" / "1.4.2")
    info = json.loads((root / "RELEASE").read_text())
    assert info["version"] == "1.4.2" and info["build_id"] == info["content_sha256"][:12] and info["broken"] is None
    cli = [SYSTEM_PYTHON, str(root / "bin" / "civic-services")]
    ok = subprocess.run([*cli, "verify-release"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "verify-release: OK" in ok.stdout, ok.stdout + ok.stderr
    version = subprocess.run([*cli, "version"], capture_output=True, text=True, check=False)
    assert version.stdout.strip() == f"civic-services 1.4.2 (build {info['build_id']})"
    (root / "civic_services" / "web.py").write_text("# tampered\n", encoding="utf-8")
    (root / "civic_services" / "extra.py").write_text("", encoding="utf-8")
    bad = subprocess.run([*cli, "verify-release"], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "civic_services/web.py: content changed" in bad.stdout
    assert "civic_services/extra.py: not part of the release" in bad.stdout


def test_version_must_be_safe_for_a_directory_name(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(tmp_path), "--version", "../1.0"], capture_output=True, check=False
    )
    assert proc.returncode == 2


def test_broken_builds_are_marked(tmp_path: Path) -> None:
    module = load_build_release()
    for mode in ("health", "import"):
        result = _build(tmp_path / mode, "--broken", mode)
        assert result["version"] == f"{module.source_version()}+broken-{mode}"
        with tarfile.open(result["artifact"]) as tar:
            info = json.loads(tar.extractfile("RELEASE").read())
            wsgi = tar.extractfile("civic_services/wsgi.py").read().decode()
        assert info["broken"] == mode and "DELIBERATELY BROKEN" in wsgi


# -- served by gunicorn from the unpacked release (what the app role does) ---------------------------------


@pytest.fixture(scope="module")
def estate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Estate:
    est = make_estate(cluster(request), tmp_path_factory.mktemp("release-estate"), "civic_rel")
    assert est.cli("migrate", "--grant-to", APP_ROLE).returncode == 0
    return est


@requires_runtime
def test_good_release_serves_and_reports_its_version(good: dict, estate: Estate, tmp_path: Path) -> None:
    root = _unpack(good["artifact"], tmp_path / "1.4.2")
    with serving(root, estate.app_env(user=APP_ROLE), tmp_path) as server:
        assert server.get("/health").status == 200
        version = server.get("/version").json()
        assert version["version"] == "1.4.2" and version["build_id"] == good["build_id"]


@requires_runtime
def test_broken_health_release_starts_but_its_health_check_fails(estate: Estate, tmp_path: Path) -> None:
    result = _build(tmp_path / "dist", "--version", "1.4.3-broken", "--broken", "health")
    root = _unpack(result["artifact"], tmp_path / "1.4.3-broken")
    with serving(root, estate.app_env(user=APP_ROLE), tmp_path) as server:
        resp = server.get("/health")
        assert resp.status == 503 and resp.json()["failed"] == ["release"]
        assert server.get("/version").json()["version"] == "1.4.3-broken"
        assert server.get("/api/ulbs").status == 200


@requires_runtime
def test_broken_import_release_does_not_start(estate: Estate, tmp_path: Path) -> None:
    result = _build(tmp_path / "dist", "--broken", "import")
    root = _unpack(result["artifact"], tmp_path / "broken-import")
    server = Server(root, estate.app_env(user=APP_ROLE), tmp_path)
    server.start(expect_boot=False)
    try:
        code = server.wait_exit(timeout=30)
    finally:
        server.stop()
    assert code != 0
    assert "deliberately broken build (--broken import)" in server.logs()
