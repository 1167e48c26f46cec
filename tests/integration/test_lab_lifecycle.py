"""A whole lab lifecycle on real nspawn hosts: up, reach, route, idempotent, down, nothing left.

Uses its own two-zone inventory (tests/integration/inventories/mini) and state folder, so it can
run beside a developer's `make lab-up` estate without touching it.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest
from ansible.module_utils.enp_lab import extra_veth_name, isolation_table_name

from .labstate import diff, snapshot

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = pathlib.Path(__file__).resolve().parent / "inventories"
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"


def run(args: list[str], state_dir: pathlib.Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def markers(state_dir: pathlib.Path) -> list[str]:
    """Names of everything the mini lab can create: its hosts, bridges, addresses, table, state folder."""
    return [
        str(state_dir),
        "198.18.60.",
        "198.18.61.",
        "enp-it-",
        "vb-it-",
        "it-web1",
        "it-db1",
        "it-gw1",
        extra_veth_name("it-gw1", 1),
        isolation_table_name(str(state_dir)),
    ]


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP line for {host}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")


def test_lab_refuses_addresses_outside_the_lab_range(root_required: None, tmp_path: pathlib.Path) -> None:
    before = snapshot()
    proc = run(["ansible-playbook", "-i", str(INVENTORIES / "bad"), "playbooks/lab_up.yml"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "outside the lab range 198.18.0.0/15" in proc.stdout
    assert diff(before, snapshot(), markers(tmp_path)) == {}, "a refused lab-up must not create anything"


def test_lab_lifecycle_leaves_nothing_behind(root_required: None, tmp_path: pathlib.Path) -> None:
    inventory = str(INVENTORIES / "mini")
    state_dir = tmp_path / "lab"
    before = snapshot()
    try:
        dry_up = run(["ansible-playbook", "-i", inventory, "playbooks/lab_up.yml", "--check"], state_dir)
        assert recap(dry_up.stdout, "localhost")["changed"] > 0, "check mode must report what lab-up would do"
        assert diff(before, snapshot(), markers(state_dir)) == {}, "check-mode lab-up must not create anything"

        up = run(["ansible-playbook", "-i", inventory, "playbooks/lab_up.yml"], state_dir)
        assert recap(up.stdout, "localhost")["failed"] == 0

        ping = run(["ansible", "-i", inventory, "estate", "-m", "ansible.builtin.ping", "-o"], state_dir)
        assert ping.stdout.count("SUCCESS") == 3

        # The gateway is the only path between zones: the front host reaches the back host's sshd through it.
        cross = run(
            [
                "ansible",
                "-i",
                inventory,
                "it-web1",
                "-m",
                "ansible.builtin.shell",
                "-a",
                "timeout 5 bash -c '</dev/tcp/198.18.61.11/22' && ip route",
            ],
            state_dir,
        )
        assert "default via 198.18.60.254" in cross.stdout
        # The controller answers lab hosts only on the mirror port: its sshd on the lab address is dropped.
        fenced = run(
            [
                "ansible",
                "-i",
                inventory,
                "it-db1",
                "-m",
                "ansible.builtin.shell",
                "-a",
                "timeout 3 bash -c '</dev/tcp/198.18.61.1/8080' && ! timeout 3 bash -c '</dev/tcp/198.18.61.1/22'",
            ],
            state_dir,
        )
        assert "CHANGED" in fenced.stdout
        gw_routes = run(
            ["ansible", "-i", inventory, "it-gw1", "-m", "ansible.builtin.command", "-a", "ip route"], state_dir
        )
        assert "default" not in gw_routes.stdout, "the gateway must have no route out of the lab"

        again = run(["ansible-playbook", "-i", inventory, "playbooks/lab_up.yml"], state_dir)
        for host in ("localhost", "it-web1", "it-db1", "it-gw1"):
            assert recap(again.stdout, host)["changed"] == 0, f"second lab-up must change nothing on {host}"

        dry = run(["ansible-playbook", "-i", inventory, "playbooks/lab_down.yml", "--check"], state_dir)
        assert recap(dry.stdout, "localhost")["changed"] > 0, "check mode must report what teardown would do"
        still = run(["ansible", "-i", inventory, "estate", "-m", "ansible.builtin.ping", "-o"], state_dir)
        assert still.stdout.count("SUCCESS") == 3, "check-mode teardown must not stop anything"
        refused = run(["ansible-playbook", "-i", inventory, "playbooks/lab_down.yml"], state_dir, check=False)
        assert refused.returncode != 0 and "without confirmation" in refused.stdout
    finally:
        run(
            ["ansible-playbook", "-i", inventory, "playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"],
            state_dir,
            check=False,
        )
    left = diff(before, snapshot(), markers(state_dir))
    assert left == {}, f"teardown left things behind: {left}"
