"""Deployments as the redeploy runs them (deploy.yml: migrations on the primary, then the app role):
a tampered artifact changes nothing anywhere, check mode changes nothing, a new release replaces the
old one through one atomic rename of `current`, and a release that never turns healthy is rolled back
with the previous release still serving.

Runs after test_app.py (file order). Its tests build on each other (1.0.1 is in service before the
broken 1.0.2 is tried); the module fixture puts the converged release 1.0.0 back at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
import testinfra

SRV = "198.18.253.12"
BASE = "/opt/civic-services"
TOOLS = "/opt/civic-services-tools"
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
RELEASES = EPHEMERAL / "releases"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROLLBACK_TIMEOUT = 8  # app_health_timeout for the broken release: the rollback test stays short
WATCH_LOG = "/run/mol-current-watch.log"


def lab_host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def artifact(version: str) -> pathlib.Path:
    return RELEASES / f"civic-services-{version}.tar.gz"


def deploy(extra: dict | None = None, *args: str) -> tuple[int, str]:
    """Run the scenario's deploy.yml with molecule's inventory: return code and output on one line."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "deploy.yml"), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    # Fixed argv: ansible-playbook with this scenario's own playbook and inventory.
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900, env=env)  # noqa: S603
    return proc.returncode, " ".join(ANSI.sub("", proc.stdout + proc.stderr).split())


def changed(out: str, host: str) -> int:
    recap = re.search(rf"{host} : ok=\d+ changed=(\d+)", out)
    assert recap, out[-1500:]
    return int(recap.group(1))


def fetch(path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{SRV}:8000{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def serving(version: str) -> None:
    """The app server answers /health green and /version with `version`."""
    status, health = fetch("/health")
    assert status == 200 and health["status"] == "ok", health
    assert health["version"] == version
    status, body = fetch("/version")
    assert status == 200 and body["version"] == version, body


def snapshot(host, *paths: str) -> str:
    """Every file under paths with type, size, mtime, link target and content hash; plus the service's PID."""
    listing = host.check_output(
        "find "
        + " ".join(paths)
        + r" -printf '%p %y %s %T@ %l\n' 2>/dev/null | sort; "
        + "find "
        + " ".join(paths)
        + " -type f -exec sha256sum {} + 2>/dev/null | sort; "
        + "systemctl show -p MainPID -p ActiveEnterTimestamp civic-services 2>/dev/null || true"
    )
    return listing


def current(host) -> str:
    return host.check_output(f"readlink {BASE}/current")


@pytest.fixture(scope="module")
def db():
    return lab_host("mol-app-db")


@pytest.fixture(scope="module")
def srv() -> Iterator:
    host = lab_host("mol-app-srv")
    yield host
    # Back to what converge deployed, for a rerun of the verify: an older kept release, switched back.
    rc, out = deploy({"app_release_artifact": str(artifact("1.0.0"))})
    assert rc == 0, out[-3000:]
    assert current(host) == f"{BASE}/releases/1.0.0"
    serving("1.0.0")


def test_a_tampered_artifact_is_refused_and_nothing_changes(db, srv, tmp_path: pathlib.Path) -> None:
    good = artifact("1.0.0")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the compressed payload
    tampered = tmp_path / good.name  # same name: only the checksum can tell
    tampered.write_bytes(bytes(data))
    real_sha = (RELEASES / f"{good.name}.sha256").read_text().split()[0]
    before = (snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system"), snapshot(db, TOOLS))

    # The whole deployment (the migrate entry point goes first), then the app role alone on its host.
    for args in ((), ("--limit", "appservers")):
        rc, out = deploy({"app_release_artifact": str(tampered), "app_release_sha256": real_sha}, *args)
        assert rc != 0, out[-3000:]
        assert f"Refusing to deploy {tampered}: its sha256" in out, out[-3000:]
        assert f"is not the expected {real_sha}" in out
        assert "never deploy an artifact that fails this check" in out

    assert (snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system"), snapshot(db, TOOLS)) == before
    serving("1.0.0")


def test_new_bytes_under_a_version_already_installed_are_refused(srv, tmp_path: pathlib.Path) -> None:
    # 1.0.1's bytes renamed as 1.0.0 (with a matching .sha256): the artifact is intact, but 1.0.0 is installed.
    relabelled = tmp_path / "civic-services-1.0.0.tar.gz"
    relabelled.write_bytes(artifact("1.0.1").read_bytes())
    (tmp_path / f"{relabelled.name}.sha256").write_text(
        (RELEASES / "civic-services-1.0.1.tar.gz.sha256").read_text().split()[0] + f"  {relabelled.name}\n"
    )
    before = snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system")
    rc, out = deploy({"app_release_artifact": str(relabelled)}, "--limit", "appservers")
    assert rc != 0, out[-3000:]
    assert "Version 1.0.0 is already installed on mol-app-srv from an artifact with sha256" in out, out[-3000:]
    assert snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system") == before
    serving("1.0.0")


def test_check_mode_reports_the_new_release_without_deploying_it(db, srv) -> None:
    before = (snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system"), snapshot(db, TOOLS))
    rc, out = deploy({"app_release_artifact": str(artifact("1.0.1"))}, "--check")
    assert rc == 0, out[-3000:]
    assert changed(out, "mol-app-srv") > 0
    assert (snapshot(srv, BASE, "/etc/civic-services", "/etc/systemd/system"), snapshot(db, TOOLS)) == before
    serving("1.0.0")


def test_a_new_release_replaces_the_old_one_atomically(srv) -> None:
    # Watch `current` on the host for the whole deployment: it must always name a release, never be missing.
    srv.run("systemctl stop mol-current-watch.service; systemctl reset-failed mol-current-watch.service")
    srv.check_output(f"rm -f {WATCH_LOG}")
    srv.check_output(
        "systemd-run --unit=mol-current-watch --property=Restart=no /bin/sh -c "
        f"'while :; do readlink {BASE}/current || echo MISSING; sleep 0.01; done >> {WATCH_LOG} 2>&1'"
    )
    try:
        rc, out = deploy({"app_release_artifact": str(artifact("1.0.1"))})
    finally:
        srv.run("systemctl stop mol-current-watch.service")
    assert rc == 0, out[-3000:]
    seen = Counter(srv.check_output(f"cat {WATCH_LOG}").split())
    assert set(seen) == {f"{BASE}/releases/1.0.0", f"{BASE}/releases/1.0.1"}, seen
    assert seen[f"{BASE}/releases/1.0.0"] > 10 and seen[f"{BASE}/releases/1.0.1"] > 10, seen

    assert current(srv) == f"{BASE}/releases/1.0.1"
    serving("1.0.1")
    assert srv.file(f"{BASE}/releases/1.0.0/RELEASE").exists, "the previous release is kept for rollback"
    fact = json.loads(srv.file("/etc/ansible/facts.d/enp_app.fact").content_string)
    assert fact["version"] == "1.0.1"
    # Deploying the same release again changes nothing.
    rc, out = deploy({"app_release_artifact": str(artifact("1.0.1"))})
    assert rc == 0 and changed(out, "mol-app-srv") == 0 and changed(out, "mol-app-db") == 0, out[-3000:]


def test_a_release_that_never_turns_healthy_is_rolled_back(srv) -> None:
    if current(srv) != f"{BASE}/releases/1.0.1":  # run alone: put 1.0.1 in service first
        rc, out = deploy({"app_release_artifact": str(artifact("1.0.1"))})
        assert rc == 0, out[-3000:]
    rc, out = deploy({"app_release_artifact": str(artifact("1.0.2")), "app_health_timeout": ROLLBACK_TIMEOUT})
    assert rc != 0, out[-3000:]
    assert "Release 1.0.2 did not become healthy on mol-app-srv" in out, out[-3000:]
    assert "deliberately broken build (--broken health)" in out  # the reason /health gave
    assert "Rolled back to 1.0.1; the host serves the previous release." in out

    assert current(srv) == f"{BASE}/releases/1.0.1"
    assert not srv.file(f"{BASE}/releases/1.0.2").exists, "a failed release must not take a rollback slot"
    assert srv.service("civic-services").is_running
    # What the on-call engineer reads must not name the release that was refused.
    assert "1.0.2" not in srv.check_output("systemctl status --no-pager -n 0 civic-services")
    serving("1.0.1")
    fact = json.loads(srv.file("/etc/ansible/facts.d/enp_app.fact").content_string)
    assert fact["version"] == "1.0.1", "the fact records the release in service, not the one refused"
