"""Evidence before the wipe (issue 8, playbooks/evidence.yml, roles/evidence, docs/evidence.md) on real lab hosts.

Its own zone (tests/integration/inventories/evidence: bridge enp-it-ev, 198.18.92.0/24), two plain hosts and a third
inventory host that does not exist (ev-gone1, given in a second inventory file), so one host is unreachable. In order:

* lab up, `enp baseline capture` into the test's own store;
* an intruder on ev-web1 plants: a cron line in /etc/cron.d, a program copied into /tmp that runs and listens on a
  port (as a transient unit), a new account with an SSH key, a changed /etc/hosts, and a `ps` that hides the
  program (a user-space rootkit's first step);
* `--check`: reports what would be collected, writes nothing;
* evidence run 1: every artefact is in the evidence - the process with its /tmp executable and its listening socket
  (read from /proc, and reported as hidden from ps), the cron line, the account and its key, the baseline finding
  for /etc/hosts, the overlay upper layer holding the changed /etc/hosts; ev-gone1 is recorded as not collected,
  with the reason; changed=0 on hosts;
* evidence run 2: the chain grows, changed=0 on hosts again, and the hosts' overlay upper layers (what the hosts
  wrote) are byte-for-byte the same before and after, but for the journal of the SSH logins themselves;
* the chain verifies (playbook and stdlib-only script); one byte of one item changed: both fail naming the item;
* lab down leaves nothing behind.

Run: pytest -q -s -m integration tests/integration/test_evidence.py (prints timings).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import time

import pytest
from ansible.module_utils.enp_lab import isolation_table_name

from .labstate import diff, snapshot
from .test_zone_firewall import other_labs_running

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
INVENTORY = str(HERE / "inventories" / "evidence")
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"
CUSTODY_SCRIPT = PROJECT / "plugins" / "module_utils" / "enp_custody.py"
ADDRESS = {"ev-web1": "198.18.92.11", "ev-app1": "198.18.92.21"}
HOSTS = tuple(ADDRESS)
GONE = "ev-gone1"
WEB = "ev-web1"
PORT = 4444
EXE = "/tmp/.ICE-unix/kworker"
CRON_FILE = "/etc/cron.d/sysstat-cache"
CRON_LINE = f'*/5 * * * * root {EXE} -c "import os" >/dev/null 2>&1'
USER = "sysmaint"
HOSTS_LINE = "198.18.92.66 deb.debian.org security.debian.org"
LISTENER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(5)\n"
    "while True: s.accept()[0].close()"
)
# What logging in over SSH writes on a host by itself (journald, wtmp, lastlog): not a change the collection makes.
LOGIN_TRACES = ("var/log/",)


def plant_script(attacker_key: str) -> str:
    return f"""set -eu
echo '{CRON_LINE}' > {CRON_FILE}
mkdir -p {os.path.dirname(EXE)} && cp /usr/bin/python3 {EXE} && chmod 0755 {EXE}
systemd-run --quiet --unit=kworker-cache --property=Restart=no {EXE} -c "{LISTENER}"
for i in $(seq 100); do ss -Hltn | grep -q ':{PORT} ' && break; sleep 0.1; done
ss -Hltn | grep -q ':{PORT} '
useradd -m -s /bin/bash {USER}
install -d -m 0700 -o {USER} -g {USER} /home/{USER}/.ssh
echo '{attacker_key}' > /home/{USER}/.ssh/authorized_keys
chown {USER}:{USER} /home/{USER}/.ssh/authorized_keys
echo '{HOSTS_LINE}' >> /etc/hosts
cp -p /usr/bin/ps /usr/lib/.ps.real
printf '#!/bin/sh\n/usr/lib/.ps.real "$@" | grep -v kworker\n' > /usr/bin/ps
chmod 0755 /usr/bin/ps
if ps -e -o args | grep -q kworker; then echo 'the trojaned ps still shows the program' >&2; exit 1; fi
"""


def environment(state_dir: pathlib.Path) -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', os.defpath)}",
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(state_dir.parent / "facts"),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )


def playbook(args: list[str], state_dir: pathlib.Path, check: bool = True, inventories: tuple[str, ...] = ()) -> str:
    argv = [str(BIN / "ansible-playbook"), "-i", INVENTORY]
    for extra in inventories:
        argv += ["-i", extra]
    proc = subprocess.run(
        [*argv, *args],
        cwd=PROJECT,
        env=environment(state_dir),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed rc={proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout if check else f"rc={proc.returncode}\n{proc.stdout}"


def ssh(state_dir: pathlib.Path, host: str, command: str, stdin: str = "") -> str:
    argv = [
        "ssh",
        "-i",
        str(state_dir / "ssh" / "id_ed25519"),
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        f"enp@{ADDRESS[host]}",
        command,
    ]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{host}: {command!r} failed rc={proc.returncode}: {proc.stderr.strip()}"
    return proc.stdout


def recap(output: str) -> dict[str, int]:
    """changed= per host of the PLAY RECAP."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def upper_state(state_dir: pathlib.Path, host: str) -> dict[str, tuple]:
    """Everything the host has written since the golden image (its overlay upper layer), path -> metadata + hash."""
    root = state_dir / "hosts" / host / "upper"
    state = {}
    for top, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            path = pathlib.Path(top, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            state[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, digest)
    return state


def changed_paths(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return sorted(
        p for p in set(before) | set(after) if before.get(p) != after.get(p) and not p.startswith(LOGIN_TRACES)
    )


def run_dir(evidence: pathlib.Path, host: str, index: int = 0) -> pathlib.Path:
    runs = sorted(p for p in (evidence / host).iterdir() if p.is_dir())
    return runs[index]


def attacker_key(tmp_path: pathlib.Path) -> tuple[str, str]:
    key = tmp_path / "attacker_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "x@kali", "-f", str(key)], check=True)
    public = key.with_name(key.name + ".pub")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    return public.read_text().strip(), fingerprint


def markers(state_dir: pathlib.Path) -> list[str]:
    return [str(state_dir), "198.18.92.", "enp-it-ev", "vb-ev-", *HOSTS, isolation_table_name(str(state_dir))]


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")


def check_artefacts(evidence: pathlib.Path, fingerprint: str) -> None:
    web = run_dir(evidence, WEB)
    # The process from /tmp, read from /proc, with its listening socket.
    processes = json.loads((web / "processes.json").read_text())["processes"]
    [process] = [p for p in processes if p["exe"] == EXE]
    assert "temporary directory" in process["suspicious"] and process["exe_sha256"], process
    assert process["args"][:2] == [EXE, "-c"], process["args"]
    sockets = json.loads((web / "sockets.json").read_text())
    [listener] = [s for s in sockets if s["local"] == f"0.0.0.0:{PORT}" and s["state"] == "LISTEN"]
    assert listener["inode"] in process["socket_inodes"], (listener, process["socket_inodes"])
    assert f"{process['comm']}/{process['pid']}" in listener["processes"], listener
    assert f":{PORT}" in (web / "ss.txt").read_text(), "ss output kept beside the /proc reading"
    # The trojaned ps hides it; /proc does not, and the binary is not dpkg's.
    assert process["hidden_from_ps"], "a process ps does not list must be reported as hidden"
    assert process["pid"] in json.loads((web / "processes.json").read_text())["hidden_from_ps"]
    assert "kworker" not in (web / "ps.txt").read_text()
    # Files: the cron line, the /tmp executable (once, also as the running program's exe), the key.
    index = json.loads((web / "files-index.json").read_text())
    members = {m["path"]: m for m in index["members"]}
    with tarfile.open(web / "files.tar.gz") as tar:
        assert CRON_LINE in tar.extractfile(CRON_FILE.lstrip("/")).read().decode()
        assert tar.extractfile(f"home/{USER}/.ssh/authorized_keys").read().decode().startswith("ssh-ed25519 ")
        names = tar.getnames()
    assert EXE in members and (EXE.lstrip("/") in names or members[EXE].get("same_as") in names), members.get(EXE)
    assert not [n for n in names if "ansible_" in n and "_payload" in n], "Ansible's own module payload is no evidence"
    # The account and its key.
    accounts = json.loads((web / "accounts.json").read_text())
    assert accounts["users"][USER]["shell"] == "/bin/bash", accounts["users"].get(USER)
    keys = accounts["authorized_keys"][f"/home/{USER}/.ssh/authorized_keys"]
    assert any(fingerprint in k for k in keys), keys
    # Baseline verify against the signed store: every artefact, including the changed /etc file.
    findings = json.loads((web / "baseline-findings.json").read_text())["findings"]
    found = {(f["kind"], f["key"]) for f in findings}
    for expected in [
        ("file-modified", "/etc/hosts"),
        ("new-persistence", CRON_FILE),
        ("new-listener", f"tcp:0.0.0.0:{PORT}"),
        ("new-account", USER),
        ("new-key", f"/home/{USER}/.ssh/authorized_keys"),
        ("file-modified", "/usr/bin/ps"),
    ]:
        assert expected in found, f"baseline finding {expected} missing: {sorted(found)}"
    flagged = json.loads((web / "flagged-index.json").read_text())
    assert "/etc/hosts" in {m["path"] for m in flagged["members"]}, "a file the baseline flags is copied"
    # The overlay upper layer: exactly what changed since the golden image, the changed /etc/hosts included.
    with tarfile.open(web / "overlay-upper.tar.gz") as tar:
        assert HOSTS_LINE in tar.extractfile("etc/hosts").read().decode()
        assert f"etc/cron.d/{os.path.basename(CRON_FILE)}" in tar.getnames()
    # The journal since the incident time (minus the margin) saw the account created.
    journal = gzip.decompress((web / "journal.txt.gz").read_bytes()).decode(errors="replace")
    assert f"new user: name={USER}" in journal, journal[-2000:]
    tools = {t["tool"]: t for t in json.loads((web / "tools.json").read_text())}
    assert tools["python3"]["sha256"] and tools["ss"]["sha256"], tools
    assert tools["ps"]["dpkg_md5_matches"] is False and tools["ss"]["dpkg_md5_matches"] is True, tools
    # The clean host stays clean: the collection itself is not a finding.
    app = run_dir(evidence, "ev-app1")
    assert json.loads((app / "baseline-findings.json").read_text())["clean"], "ev-app1 must verify clean"


def check_custody(evidence: pathlib.Path, incident: str) -> list[dict]:
    chain = [json.loads(line) for line in (evidence / "custody.jsonl").read_text().splitlines()]
    summary = json.loads((evidence / "evidence.json").read_text())
    assert summary["chain"]["head"] == chain[-1]["hash"] and summary["chain"]["records"] == len(chain)
    chained = {r["item"] for r in chain}
    for path in evidence.rglob("*"):
        if path.is_file() and path.name not in ("custody.jsonl", "evidence.json"):
            assert str(path.relative_to(evidence)) in chained, f"{path} is not in the chain of custody"
            assert path.stat().st_mode & 0o777 in (0o400, 0o440), f"{path} is not read-only"
    for record in chain:
        assert record["incident_id"] == incident and "@" in record["collected_by"], record
        assert record["collected_at_ist"].endswith("+05:30") and record["collected_at"].endswith("Z"), record
        assert record["where"], record
    gone = summary["hosts"][GONE]
    assert gone["collected"] is False and "did not answer" in gone["reason"], gone
    assert "disk image: not taken" in gone["disk"], gone
    for host in HOSTS:
        assert summary["hosts"][host]["collected"] and "overlay upper layer archived" in summary["hosts"][host]["disk"]
    return chain


def test_evidence_of_a_compromised_host_with_its_chain_of_custody(root_required: None, tmp_path: pathlib.Path) -> None:
    state_dir, store, incident_dir = tmp_path / "lab", tmp_path / "store", tmp_path / "incident"
    evidence = incident_dir / "evidence"
    incident = "INC-EV-1"
    gone_inventory = tmp_path / "gone.yml"
    gone_inventory.write_text(
        json.dumps({"all": {"children": {"estate": {"hosts": {GONE: {"ansible_host": "198.18.92.99"}}}}}})
    )
    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"[evidence] {what} at {time.monotonic() - started:.0f} s")

    key, fingerprint = attacker_key(tmp_path)
    before = snapshot()
    try:
        print()
        playbook(["playbooks/lab_up.yml"], state_dir)
        mark("lab up (2 hosts)")
        captured = subprocess.run(
            [str(BIN / "enp"), "baseline", "capture", "-i", INVENTORY, "--store", str(store)],
            cwd=PROJECT,
            env=environment(state_dir),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert captured.returncode == 0, captured.stdout[-4000:] + captured.stderr[-2000:]
        mark("baselines captured and signed")

        incident_time = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ssh(state_dir, WEB, "sudo sh -s", stdin=plant_script(key))
        mark("artefacts planted on ev-web1")

        common = [
            "playbooks/evidence.yml",
            "-e",
            f"enp_incident_id={incident}",
            "-e",
            f"enp_incident_dir={incident_dir}",
            "-e",
            f"enp_incident_time={incident_time}",
            "-e",
            f"enp_baseline_store={store}",
        ]
        uppers = {h: upper_state(state_dir, h) for h in HOSTS}
        dry = playbook([*common, "--check"], state_dir, inventories=(str(gone_inventory),))
        assert not incident_dir.exists(), "check mode must write nothing"
        assert all(recap(dry)[h] == 0 for h in HOSTS), recap(dry)
        assert f"{WEB}: " in dry and "processes (1 suspicious" in dry, dry[-3000:]
        mark("check mode: reports, writes nothing")

        first = playbook(common, state_dir, inventories=(str(gone_inventory),))
        mark("evidence run 1")
        print("\n".join(line for line in first.splitlines() if "Evidence of incident" in line or "chain of" in line))
        assert all(recap(first)[h] == 0 for h in HOSTS), f"collection changed a host: {recap(first)}"
        assert recap(first)[GONE] == 0
        check_artefacts(evidence, fingerprint)
        chain1 = check_custody(evidence, incident)
        sizes = {h: sum(p.stat().st_size for p in (evidence / h).rglob("*") if p.is_file()) for h in HOSTS}
        print(f"  records {len(chain1)}, bytes per host {sizes}")

        second = playbook(common, state_dir, inventories=(str(gone_inventory),))
        mark("evidence run 2")
        assert all(recap(second)[h] == 0 for h in HOSTS), f"second run changed a host: {recap(second)}"
        chain2 = check_custody(evidence, incident)
        assert len(chain2) > len(chain1) and chain2[len(chain1)]["prev_hash"] == chain1[-1]["hash"]
        for host in HOSTS:
            assert changed_paths(uppers[host], upper_state(state_dir, host)) == [], f"{host} changed on disk"

        verified = playbook([*common, "-e", "enp_evidence_verify_only=true"], state_dir)
        assert "chain of custody intact" in verified, verified[-3000:]
        script = subprocess.run(
            [sys.executable, str(CUSTODY_SCRIPT), "verify", str(evidence)], capture_output=True, text=True, check=False
        )
        assert script.returncode == 0 and script.stdout.startswith("OK"), script.stdout

        item = run_dir(evidence, WEB) / "processes.json"
        os.chmod(item, 0o600)
        data = bytearray(item.read_bytes())
        data[len(data) // 2] ^= 0x20
        item.write_bytes(bytes(data))
        name = str(item.relative_to(evidence))
        tampered = playbook([*common, "-e", "enp_evidence_verify_only=true"], state_dir, check=False)
        assert not tampered.startswith("rc=0"), tampered[-3000:]
        assert f"item {name}: content changed" in tampered, tampered[-3000:]
        script = subprocess.run(
            [sys.executable, str(CUSTODY_SCRIPT), "verify", str(evidence)], capture_output=True, text=True, check=False
        )
        assert script.returncode == 1 and f"FAIL item {name}: content changed" in script.stdout, script.stdout
        mark(f"one byte of {name} changed: verify fails naming it")
    finally:
        playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], state_dir, check=False)
    left = diff(before, snapshot(), markers(state_dir))
    if other_labs_running():
        left.pop("inotify", None)
    assert left == {}, f"teardown left things behind: {left}"
    mark("lab down, nothing left behind; total")
