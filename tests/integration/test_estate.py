"""The estate built by site.yml on real lab hosts, seeded, then redeployed while citizens keep using it.

One compact estate (load balancer, web server, two app servers, PostgreSQL primary) in a zone of its own
(tests/integration/inventories/estate, wired by the lab inventory's own group_vars), so it runs beside a
developer's `make lab-up`. In order, because each step needs the one before:

* site.yml builds it from bare hosts and a second run changes nothing;
* the portal answers through the load balancer over verified TLS and /health is green;
* seed.yml loads the small data set and every app server verifies its manifest;
* redeploy.yml moves both app servers to a new release while a request loop runs: zero failed requests;
* a deliberately broken release is stopped on the first server, rolled back, and the estate still serves
  the good release with zero failed requests;
* lab-down leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from ansible.module_utils.enp_lab import isolation_table_name

from enp.requestloop import LoopConfig, LoopResult, RequestLoop, fetch

from .labstate import diff, snapshot
from .test_lab_lifecycle import recap

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = str(pathlib.Path(__file__).resolve().parent / "inventories" / "estate")
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"
LB = "https://198.18.64.10"
PORTAL = "portal.enagar.lab"
HOSTS = ("rd-lb1", "rd-web1", "rd-app1", "rd-app2", "rd-db1")


def markers(state_dir: pathlib.Path) -> list[str]:
    return [str(state_dir), "198.18.64.", "enp-it-rd", "vb-rd-", *HOSTS, isolation_table_name(str(state_dir))]


def playbook(args: list[str], state_dir: pathlib.Path, releases: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ENP_RELEASE_DIR=str(releases),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", INVENTORY, *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed rc={proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def assert_continuous(loop: LoopResult) -> None:
    """The citizens' load ran through the whole rollout and the portal never stalled.

    A tick is "not sent" when every worker still waits for an answer: on a 2-core machine busy with other labs
    that happens a few times without the estate being at fault. What the test proves is that no answer was
    missing for long (the longest gap without a successful answer) and that the load really ran."""
    summary = loop.summary
    assert summary.total > 100, loop.summary_line()
    assert summary.longest_gap_s <= 5.0, f"the portal stopped answering for a while: {loop.summary_line()}"
    assert summary.skipped <= max(5, summary.total // 50), f"the load did not run as planned: {loop.summary_line()}"


def build(releases: pathlib.Path, version: str, *extra: str) -> None:
    script = str(PROJECT / "scripts/build_release.py")
    subprocess.run(
        [sys.executable, script, "--version", version, "--out", str(releases), *extra],
        check=True,
        capture_output=True,
        timeout=120,
    )


def versions_served(ca: pathlib.Path, tries: int = 8) -> set[str]:
    seen = set()
    for _ in range(tries):
        status, body = fetch(LB, ca, "/version", server_name=PORTAL)
        assert status == 200
        seen.add(json.loads(body)["version"])
    return seen


def redeploy_under_load(version: str, ca: pathlib.Path, state_dir: pathlib.Path, releases: pathlib.Path):  # noqa: ANN201
    loop = RequestLoop(LoopConfig(url=LB, ca_file=str(ca), server_name=PORTAL)).start()
    try:
        proc = playbook(["playbooks/redeploy.yml", "-e", f"enp_app_version={version}"], state_dir, releases)
    finally:
        loop.stop()
    return proc, loop.result(timeout=30)


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")


def test_site_seed_and_rolling_redeploy(root_required: None, tmp_path: pathlib.Path) -> None:
    state_dir, releases = tmp_path / "lab", tmp_path / "releases"
    ca = state_dir / "pki" / "ca" / "ca.crt"
    for version, extra in (("1.0.0", ()), ("1.0.1", ()), ("1.0.2-broken", ("--broken", "health"))):
        build(releases, version, *extra)
    before = snapshot()
    try:
        ok(playbook(["playbooks/lab_up.yml"], state_dir, releases), "lab_up.yml")

        ok(playbook(["playbooks/site.yml"], state_dir, releases), "site.yml")
        again = ok(playbook(["playbooks/site.yml"], state_dir, releases), "site.yml (second run)")
        for host in HOSTS:
            assert recap(again, host)["changed"] == 0, f"second site.yml run changed something on {host}"

        status, body = fetch(LB, ca, "/health", server_name=PORTAL)
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok", health
        assert {"database", "schema", "documents"} <= set(health["checks"])
        status, page = fetch(LB, ca, "/", server_name=PORTAL)
        assert status == 200 and b"<html" in page.lower()
        assert versions_served(ca) == {"1.0.0"}

        seeded = ok(playbook(["playbooks/seed.yml"], state_dir, releases), "seed.yml")
        assert recap(seeded, "rd-db1")["changed"] > 0 and recap(seeded, "rd-app2")["changed"] > 0
        manifest = json.loads((state_dir / "seed" / "rd-db1-manifest.json").read_text())
        assert manifest["tables"]["ulbs"]["rows"] == 413 and manifest["documents"]["count"] > 1000
        reseeded = ok(playbook(["playbooks/seed.yml"], state_dir, releases), "seed.yml (second run)")
        for host in ("rd-db1", "rd-app1", "rd-app2"):
            assert recap(reseeded, host)["changed"] == 0, f"second seed.yml run changed something on {host}"
        status, body = fetch(LB, ca, "/api/ulbs", server_name=PORTAL)
        assert status == 200 and json.loads(body)["count"] == 413

        good, loop = redeploy_under_load("1.0.1", ca, state_dir, releases)
        ok(good, "redeploy.yml 1.0.1")
        assert_continuous(loop)
        assert loop.failed == 0, f"citizen requests failed during the redeploy: {loop.to_dict()['failures']}"
        assert versions_served(ca) == {"1.0.1"}

        broken, loop = redeploy_under_load("1.0.2-broken", ca, state_dir, releases)
        assert broken.returncode != 0, "a release that never becomes healthy must fail the rollout"
        assert "ROLLOUT STOPPED at rd-app1" in broken.stdout and "Rolled back to 1.0.1" in broken.stdout
        assert recap(broken.stdout, "rd-app2")["changed"] == 0, "the rollout must stop before the second server"
        assert_continuous(loop)
        assert loop.failed == 0, f"citizen requests failed during the broken rollout: {loop.to_dict()['failures']}"
        assert versions_served(ca) == {"1.0.1"}, "the estate must still serve the good release"
    finally:
        playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], state_dir, releases)
    left = diff(before, snapshot(), markers(state_dir))
    assert left == {}, f"teardown left things behind: {left}"
