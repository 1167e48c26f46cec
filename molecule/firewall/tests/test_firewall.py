"""The zone matrix holds on live hosts: default deny, the allowed flows work, the others are dropped and
logged, the ruleset survives a restart, and a ruleset that cut the controller off was rolled back by the host.

Flows are probed from the hosts (a small Python client on the source host) and from the controller. All three
hosts share one subnet here, so every block below is the host firewall's doing, not routing."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import time
import uuid

import pytest
import testinfra

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
CONTROLLER = "198.18.240.1"
WEB, APP, DB = "198.18.240.11", "198.18.240.21", "198.18.240.31"
ROLLBACK_SECONDS = 20  # firewall_rollback_seconds in side_effect.yml
HOSTS = ("mol-fw-web", "mol-fw-app", "mol-fw-db")

# Runs on a source host: connect to each (address, port) at once; "open" (the connection was accepted; not
# every server speaks first, the mirror's HTTP server waits for a request), "refused" (reached, nothing
# listens), "dropped" (no answer: dropped by this host's output chain, on the way, or by the destination's
# input chain; the kernel log says which), "blocked-out" (EPERM, which some kernels return for a locally
# generated packet their output chain dropped).
PROBE = r"""
import concurrent.futures, json, socket, sys
def probe(target):
    address, port = target
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    s.settimeout(2.0)
    try:
        s.connect((address, int(port)))
        return "open"
    except socket.timeout:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    except PermissionError:
        return "blocked-out"
    except OSError as exc:
        return "error %s" % exc.errno
    finally:
        s.close()
targets = json.loads(sys.argv[1])
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""


def host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def probe_from(name: str, targets: list[tuple[str, int]]) -> list[str]:
    out = host(name).check_output("python3 -c %s %s", PROBE, json.dumps(targets))
    return json.loads(out)


def probe_from_controller(address: str, port: int, timeout: float = 2.0) -> str:
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.recv(64)
        return "open"
    except TimeoutError:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"


@pytest.fixture(scope="module")
def kernel_log():
    """Drops inside a container's network namespace reach the kernel log only with the controller's
    net.netfilter.nf_log_all_netns=1 (a real host logs them anyway): on for this module, then restored."""
    path = pathlib.Path("/proc/sys/net/netfilter/nf_log_all_netns")
    old = path.read_text().strip()
    path.write_text("1\n")
    try:
        yield
    finally:
        path.write_text(old + "\n")


def dmesg() -> list[str]:
    return subprocess.run(["/usr/bin/dmesg"], capture_output=True, text=True, check=True).stdout.splitlines()


def mark_kernel_log() -> str:
    """Write a unique marker into the kernel log; the lines after it are this test's. (Counting lines does not
    work: once the ring buffer is full, other labs' logged drops push old lines out as fast as new ones come.)"""
    marker = f"enp-molecule-firewall-mark {uuid.uuid4()}"
    pathlib.Path("/dev/kmsg").write_text(marker + "\n")
    return marker


def after(marker: str, lines: list[str]) -> list[str]:
    for index in range(len(lines) - 1, -1, -1):
        if marker in lines[index]:
            return lines[index + 1 :]
    return []


def logged(marker: str, *needles: str, wait: float = 3.0) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        lines = [line for line in after(marker, dmesg()) if all(n in line for n in needles)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


@pytest.mark.parametrize("name", HOSTS)
def test_every_chain_denies_by_default(name: str) -> None:
    table = host(name).check_output("nft list table inet enp_filter")
    for chain in ("input", "forward", "output"):
        assert f"type filter hook {chain} priority filter; policy drop;" in table, (name, chain)
    assert "anything goes" not in table, "the previous admin's wide-open rule must be gone"


def test_allowed_flows_work() -> None:
    # web -> app: the application port; app -> db: PostgreSQL; every host -> the mirror on the controller.
    assert probe_from("mol-fw-web", [(APP, 8000), (CONTROLLER, 8080)]) == ["open", "open"]
    assert probe_from("mol-fw-app", [(DB, 5432), (CONTROLLER, 8080)]) == ["open", "open"]


def test_management_reaches_ssh_on_every_host() -> None:
    for address in (WEB, APP, DB):
        with socket.create_connection((address, 22), timeout=3) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-"), address


BLOCKED = ("dropped", "blocked-out")


def test_forbidden_flow_is_blocked_at_the_source_and_logged(kernel_log: None) -> None:
    before = mark_kernel_log()
    # db may not open connections to the app tier, web may not reach the database: their own output drops
    # it (the log line with SRC = the source host and "drop out" proves where).
    assert probe_from("mol-fw-db", [(APP, 8000)])[0] in BLOCKED
    assert probe_from("mol-fw-web", [(DB, 5432)])[0] in BLOCKED
    assert logged(before, "enp-fw drop out ", f"SRC={DB}", f"DST={APP}", "DPT=8000")
    assert logged(before, "enp-fw drop out ", f"SRC={WEB}", f"DST={DB}", "DPT=5432")


def test_forbidden_flow_is_dropped_at_the_destination_and_logged(kernel_log: None) -> None:
    before = mark_kernel_log()
    # The controller is a management source: SSH only. The app port is dropped by the app server's input chain.
    assert probe_from_controller(APP, 8000) == "dropped"
    assert probe_from_controller(DB, 5432) == "dropped"
    assert logged(before, "enp-fw drop in ", f"SRC={CONTROLLER}", f"DST={APP}", "DPT=8000")
    assert logged(before, "enp-fw drop in ", f"SRC={CONTROLLER}", f"DST={DB}", "DPT=5432")


def test_another_tools_table_is_left_alone() -> None:
    for name in HOSTS:
        assert "addr-set-sshd" in host(name).check_output("nft list table inet f2b-table"), name


def test_ruleset_is_permanent_and_comes_back_with_the_service() -> None:
    db = host("mol-fw-db")
    assert db.service("nftables").is_enabled
    live = db.check_output("nft -s list table inet enp_filter")
    # What a boot does: nftables.service flushes everything and loads /etc/nftables.conf.
    db.check_output("systemctl restart nftables")
    assert db.check_output("nft -s list table inet enp_filter") == live
    assert probe_from("mol-fw-db", [(APP, 8000)])[0] in BLOCKED


def test_local_fact_and_compliance_record() -> None:
    app = host("mol-fw-app")
    fact = json.loads(app.file("/etc/ansible/facts.d/enp_firewall.fact").content_string)
    assert fact["policy"] == {"input": "drop", "output": "drop", "forward": "drop"}
    assert "web servers to the application" in fact["flows"]["input"]
    assert "application to PostgreSQL" in fact["flows"]["output"]
    report = json.loads(app.file("/var/lib/enp/compliance/firewall.json").content_string)
    failed = [r for r in report["controls"] if r["status"] == "fail"]
    assert not failed, failed
    assert {r["id"] for r in report["controls"] if r["status"] == "pass"} >= {f"FW-{n:03d}" for n in range(1, 15)}


def test_lockout_was_rolled_back_by_the_host_itself() -> None:
    result = json.loads((EPHEMERAL / "lockout.json").read_text())
    assert "FIREWALL ROLLED BACK on mol-fw-app" in result["message"], result
    app = host("mol-fw-app")
    status = json.loads(app.check_output("/usr/local/sbin/enp-firewall-guard status"))
    # The controller got back in soon after the host's rollback: counted from when the guard armed it (the
    # containers share the controller's clock), so a slow pre-flight on a busy machine does not count.
    assert result["reachable_at"] - status["armed_at"] <= ROLLBACK_SECONDS + 20, (result, status)
    assert status["rolled_back_at"] is not None and status["confirmed_at"] is None, status
    assert ROLLBACK_SECONDS <= status["rollback_after_seconds"] <= ROLLBACK_SECONDS + 3, status
    assert status["timer"] != "active"
    # The old (good) ruleset is live again, the rejected one is kept for the post-mortem, nothing persisted.
    live = app.check_output("nft -s list table inet enp_filter")
    assert "TEST ONLY" not in live and "web servers to the application" in live
    assert live.strip() == app.file("/var/lib/enp/firewall/applied.list").content_string.strip()
    assert "TEST ONLY" in app.file("/var/lib/enp/firewall/rejected.nft").content_string
    assert "TEST ONLY" not in app.file("/etc/nftables.conf").content_string
    journal = app.check_output("journalctl -t enp-firewall --no-pager -o cat")
    assert "no confirmation from the controller: previous ruleset restored" in journal
    with contextlib.closing(socket.create_connection((APP, 22), timeout=3)) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")
