"""The running sshd behaves as hardened: probed from the controller (198.18.254.1, allowed), from
mol-ssh-a (allowed) and from mol-ssh-b (not in the allow-list), and the role refuses configurations
that would lock Ansible out, restarts a daemon that missed a restart, and rolls back when Ansible
cannot log in after a restart."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import testinfra

# Host-by-host tests read mol-ssh-a; mol-ssh-b is busy with the missed-restart and roll-back runs meanwhile
# and is checked once they are done.
testinfra_hosts = ["mol-ssh-a"]

A, B = "198.18.254.10", "198.18.254.11"
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
PROBE_KEY = EPHEMERAL / "probe_ed25519"  # root on both hosts accepts it (prepare.yml)
OPERATOR_KEY = PROJECT / ".lab/molecule/ssh_hardening/ssh/id_ed25519"  # the account Ansible uses: enp
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BANNER = "AUTHORISED USE ONLY"
# ssh from one lab host to the other with the probe key both hosts' root accepts.
HOP = (
    "ssh -i /root/.ssh/mol_probe -o LogLevel=ERROR -o BatchMode=yes"
    " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
)

EXPECTED = {
    "permitrootlogin": "without-password",  # sshd -T's name for prohibit-password
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitemptypasswords": "no",
    "authenticationmethods": "publickey",
    "pubkeyauthentication": "yes",
    "ciphers": "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
    "aes256-ctr,aes192-ctr,aes128-ctr",
    "kexalgorithms": "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
    "diffie-hellman-group18-sha512,diffie-hellman-group16-sha512,diffie-hellman-group-exchange-sha256",
    "macs": "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
    "hostkeyalgorithms": "ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com,"
    "rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com",
    "hostkey": "/etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_rsa_key",
    "loglevel": "VERBOSE",
    "maxauthtries": "3",
    "logingracetime": "60",
    "clientaliveinterval": "300",
    "clientalivecountmax": "3",
    "maxstartups": "10:30:60",
    "maxsessions": "10",
    "x11forwarding": "no",
    "allowtcpforwarding": "no",
    "allowagentforwarding": "no",
    "allowstreamlocalforwarding": "no",
    "permittunnel": "no",
    "permituserenvironment": "no",
    "ignorerhosts": "yes",
    "hostbasedauthentication": "no",
    "gssapiauthentication": "no",
    "usepam": "yes",
    "banner": "/etc/issue.net",
    "allowusers": "*@198.18.254.1 *@198.18.254.10",
    "authorizedkeysfile": ".ssh/authorized_keys",
}


def sshd_t(host) -> dict[str, str]:
    with host.sudo():
        out = host.check_output("/usr/sbin/sshd -T")
    options: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return {k: " ".join(v) for k, v in options.items()}


def ssh(address: str, *options: str, user: str = "root", key: pathlib.Path = PROBE_KEY, command: str = "id -un"):
    """ssh from the controller (its address on the scenario's bridge is 198.18.254.1)."""
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
        *options, f"{user}@{address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


def lab(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def playbook(limit: str, extra: dict, *args: str, name: str = "converge.yml") -> tuple[int, str]:
    """Run a scenario playbook with molecule's inventory: return code and output on one line."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / name), "--limit", limit, "-e", json.dumps(extra), *args]
    env = {
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    # Fixed argv: ansible-playbook with this scenario's own playbooks and inventory.
    # stdin from /dev/null: ansible-core refuses to start when an inherited stdin is non-blocking (seen in CI).
    proc = subprocess.run(  # noqa: S603
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=600, env=env
    )
    return proc.returncode, " ".join(ANSI.sub("", proc.stdout + proc.stderr).split())


def daemon_state(host) -> tuple[str, str]:
    with host.sudo():
        return host.check_output("sha256sum /etc/ssh/sshd_config"), host.check_output(
            "systemctl show ssh.service -P MainPID"
        )


# --- The running daemon ---------------------------------------------------------------------------------


def test_sshd_runs_the_hardened_settings(host) -> None:
    running = sshd_t(host)
    wrong = {option: running.get(option) for option, value in EXPECTED.items() if running.get(option) != value}
    assert wrong == {}, f"sshd -T differs from what the role wants: {wrong}"


def test_only_the_role_config_is_read(host) -> None:
    with host.sudo():
        assert host.run("ls -A /etc/ssh/sshd_config.d").stdout.strip() == ""  # the planted drop-in is gone
        assert not re.search(r"^\s*Include", host.file("/etc/ssh/sshd_config").content_string, re.I | re.M)
        assert re.search(r"^SSHD_OPTS=$", host.file("/etc/default/ssh").content_string, re.MULTILINE)
        pid = host.check_output("systemctl show ssh.service -P MainPID")
        title = host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    assert title.startswith("sshd: /usr/sbin/sshd -D [listener]"), title  # no -o PermitEmptyPasswords=yes any more
    config = host.file("/etc/ssh/sshd_config")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)


def test_the_main_pid_started_after_the_configuration_was_written(host) -> None:
    with host.sudo():
        started = int(host.check_output("systemctl show ssh.service -P ExecMainStartTimestamp --timestamp=unix")[1:])
        written = int(host.check_output("stat -c %Y /etc/ssh/sshd_config /etc/ssh/ssh_host_*_key | sort -n | tail -1"))
    assert started >= written


def test_host_keys_are_ed25519_and_rsa_4096_only(host) -> None:
    with host.sudo():
        keys = sorted(host.check_output("ls /etc/ssh | grep '^ssh_host_'").split())
        rsa_bits = host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub").split()[0]
        for name in ("ed25519", "rsa"):
            private, public = host.file(f"/etc/ssh/ssh_host_{name}_key"), host.file(f"/etc/ssh/ssh_host_{name}_key.pub")
            assert (private.user, private.mode, public.mode) == ("root", 0o600, 0o644)  # ed25519 was planted 0640
    assert keys == [
        "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key", "ssh_host_rsa_key.pub",
    ]  # fmt: skip  # the lab's ECDSA key and the planted DSA key are gone
    assert rsa_bits == "4096"


def test_moduli_has_only_groups_of_3072_bits_and_more(host) -> None:
    lines = host.file("/etc/ssh/moduli").content_string.splitlines()
    sizes = {int(line.split()[4]) for line in lines if line[:1].isdigit()}
    assert sizes and min(sizes) >= 3071, sorted(sizes)


def test_local_fact_records_what_was_applied(host) -> None:
    fact = json.loads(host.file("/etc/ansible/facts.d/enp_ssh.fact").content_string)
    assert fact["permit_root_login"] == "prohibit-password"
    assert fact["allow_sources"] == ["198.18.254.1", "198.18.254.10"]
    assert fact["controls_enforced"][0] == "SSH-001" and fact["controls_disabled"] == []


def test_no_backup_of_the_old_config_is_left(host) -> None:
    assert host.run("ls /etc/ssh | grep -c 'sshd_config\\..*~'").stdout.strip() == "0"


# --- Live probes from the controller ----------------------------------------------------------------------


def test_a_password_login_is_refused_with_only_publickey_offered() -> None:
    done = ssh(A, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert done.returncode == 255
    assert "Permission denied (publickey)." in done.stderr  # the daemon offers nothing else
    assert BANNER in done.stderr  # the legal notice comes before authentication


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        ("Ciphers=aes128-cbc,aes256-cbc,3des-cbc", "no matching cipher found"),
        ("KexAlgorithms=diffie-hellman-group14-sha1,diffie-hellman-group1-sha1", "no matching key exchange method"),
        ("KexAlgorithms=diffie-hellman-group14-sha256,ecdh-sha2-nistp256", "no matching key exchange method"),
        ("MACs=hmac-sha1,hmac-sha2-256,umac-128@openssh.com", "no matching MAC found"),
        ("HostKeyAlgorithms=ssh-rsa,ecdsa-sha2-nistp256,ssh-dss", "no matching host key type found"),
    ],
    ids=["cipher-cbc", "kex-sha1", "kex-2048-and-nist", "mac-non-etm", "hostkey-sha1-ecdsa"],
)
def test_weak_algorithms_are_refused(option: str, refusal: str) -> None:
    extra = ["-o", option] + (["-o", "Ciphers=aes256-ctr"] if option.startswith("MACs") else [])
    done = ssh(A, *extra)
    assert done.returncode == 255 and refusal in done.stderr, done.stderr


@pytest.mark.parametrize(
    "options",
    [
        ["-o", "KexAlgorithms=sntrup761x25519-sha512@openssh.com", "-o", "Ciphers=chacha20-poly1305@openssh.com"],
        ["-o", "KexAlgorithms=diffie-hellman-group-exchange-sha256", "-o", "Ciphers=aes256-gcm@openssh.com"],
        [
            "-o",
            "HostKeyAlgorithms=rsa-sha2-512",
            "-o",
            "Ciphers=aes128-ctr",
            "-o",
            "MACs=hmac-sha2-256-etm@openssh.com",
        ],
    ],
    ids=["pq-kex-chacha", "gex-3072+-aesgcm", "rsa-hostkey-ctr-etm"],
)
def test_root_logs_in_with_a_key_over_strong_algorithms(options: list[str]) -> None:
    done = ssh(A, *options)
    assert done.returncode == 0 and done.stdout.strip() == "root", done.stderr


def test_the_account_ansible_uses_still_logs_in_from_the_controller() -> None:
    done = ssh(A, user="enp", key=OPERATOR_KEY, command="sudo -n id -un")
    assert done.returncode == 0 and done.stdout.strip() == "root", done.stderr


# --- The allow-list: controller and mol-ssh-a allowed, mol-ssh-b not ------------------------------------------


def test_a_login_from_an_allowed_host_is_accepted() -> None:
    a = lab("mol-ssh-a")
    with a.sudo():  # from mol-ssh-a's own address, which is in the allow-list
        done = a.run(f"{HOP} -b {A} root@{A} hostname")
    assert done.rc == 0 and done.stdout.strip() == "mol-ssh-a", done.stderr


def test_a_login_from_a_source_not_in_the_allow_list_is_refused(runs) -> None:
    # The probe starts on mol-ssh-b, whose sshd the background runs restart and lock out on purpose: wait for
    # them (on a busy machine the probe's own login to mol-ssh-b otherwise meets a daemon mid-restart).
    runs["b"].result()
    b, a = lab("mol-ssh-b"), lab("mol-ssh-a")
    with b.sudo():
        # testinfra treats ssh's 255 as its own connection failing: report the inner exit code instead.
        done = b.run(f"{HOP} root@{A} hostname 2>&1; echo rc=$?")
    assert done.stdout.strip().endswith("rc=255") and "Permission denied (publickey)" in done.stdout, done.stdout
    with a.sudo():  # the same key works from A and the controller: it is the source that is refused
        log = a.check_output("journalctl -u ssh.service --no-pager -o cat --since -10min")
    assert f"User root from {B} not allowed because not listed in AllowUsers" in log


# --- The role itself: lock-out pre-flight, a missed restart, roll-back --------------------------------------
# The ansible-playbook runs start in the background with the first test (most of their time is waiting on
# SSH): the refusals and a check-mode run as root against mol-ssh-a (read-only), and on mol-ssh-b a missed
# restart followed by a roll-back. Four workers on mol-ssh-a stay under MaxStartups 10.

REFUSALS = {
    # Three reasons at once: the controller is not a source, enp is in no allowed group, port 22 goes away.
    "enp-locked-out": (
        {"ssh_hardening_allow_sources": [A], "ssh_hardening_allow_groups": ["sshusers"], "ssh_hardening_ports": [2222]},
        [
            "enp@198.18.254.1 matches no AllowUsers entry (*@198.18.254.10)",
            "enp (groups: enp sudo) is in no AllowGroups group (sshusers)",
            "Ansible connects to port 22, and sshd would listen on",
        ],
    ),
    "user-not-allowed": (
        {"ssh_hardening_allow_users": ["operator"]},
        ["enp@198.18.254.1 matches no AllowUsers entry (operator@198.18.254.1 operator@198.18.254.10)"],
    ),
    "root-login-off-as-root": (
        {"ansible_user": "root", "ssh_hardening_permit_root_login": "no"},
        ["Ansible logs in as root and PermitRootLogin would be 'no'"],
    ),
    "unknown-control": (
        {"ssh_hardening_controls_disabled": ["SSH-004", "SSH-999"]},
        ["unknown control(s) SSH-999", "Known IDs: SSH-001, SSH-002"],
    ),
    "weak-cipher": ({"ssh_hardening_ciphers": ["aes256-gcm@openssh.com", "aes128-cbc"]}, ["refused: aes128-cbc"]),
}


def _missed_restart_then_rollback() -> dict:
    """On mol-ssh-b: a config written after sshd started (dev-sec's missed restart), then a locked-out restart."""
    b = lab("mol-ssh-b")
    with b.sudo():
        b.check_output("sleep 1.1; touch /etc/ssh/sshd_config")  # newer than the running daemon
    pid_before = daemon_state(b)[1]
    stale = playbook("mol-ssh-b", {}, "--tags", "ssh_hardening_verify")  # pre-flight and verify only
    checksum_before, pid_after_stale = daemon_state(b)
    rollback = playbook("mol-ssh-b", {}, name="rollback.yml")
    return {
        "stale": stale,
        "restarted": pid_after_stale != pid_before,
        "rollback": rollback,
        "config_restored": daemon_state(b)[0] == checksum_before,
    }


def _on_a(state_before: tuple[str, str]) -> dict:
    jobs = {name: ("mol-ssh-a", extra) for name, (extra, _msgs) in REFUSALS.items()}
    jobs["root-check-mode"] = ("mol-ssh-a", {"ansible_user": "root"}, "--check", "--diff")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(playbook, *args) for name, args in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    results["a-unchanged"] = daemon_state(lab("mol-ssh-a")) == state_before
    return results


@pytest.fixture(scope="module", autouse=True)
def runs():
    """Start every playbook run now; tests that need a result wait for it."""
    state = daemon_state(lab("mol-ssh-a"))
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {"a": pool.submit(_on_a, state), "b": pool.submit(_missed_restart_then_rollback)}
    yield futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("case", REFUSALS.keys())
def test_preflight_refuses_before_anything_changes(runs, case: str) -> None:
    results = runs["a"].result()
    rc, output = results[case]
    assert rc != 0
    for message in REFUSALS[case][1]:
        assert message in output, output[-3000:]
    assert "changed=0" in output
    assert results["a-unchanged"]  # same sshd_config, same sshd process on mol-ssh-a


def test_connecting_as_root_keeps_working_and_check_mode_changes_nothing(runs) -> None:
    rc, output = runs["a"].result()["root-check-mode"]
    assert rc == 0, output[-3000:]
    assert re.search(r"mol-ssh-a\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", output), output[-2000:]


def test_a_daemon_that_missed_its_restart_is_restarted(runs) -> None:
    """dev-sec's failure: the config was written but sshd never restarted. The next run must catch it."""
    result = runs["b"].result()
    rc, output = result["stale"]
    assert rc == 0, output[-3000:]
    assert re.search(r"SSH-039 \| Restart sshd that still runs an older configuration.*?changed: \[mol-ssh-b\]", output)
    assert result["restarted"]
    assert "the running sshd meets 39 controls" in output


def test_a_restart_that_locks_ansible_out_is_rolled_back(runs) -> None:
    """/etc/nologin lets sshd run but refuses the enp login after the restart: the role puts the old file back."""
    result = runs["b"].result()
    rc, output = result["rollback"]
    assert rc == 0, output[-3000:]  # rollback.yml expects the role to fail, and says so
    assert "a new login as Ansible was refused" in output
    assert "The previous sshd_config was put back and sshd restarted (running again)" in output
    assert result["config_restored"]
    b = lab("mol-ssh-b")
    assert not b.file("/etc/nologin").exists
    assert b.run("ls /etc/ssh | grep -c 'sshd_config\\..*~'").stdout.strip() == "0"
    done = ssh(B, user="enp", key=OPERATOR_KEY, command="true")
    assert done.returncode == 0, done.stderr


def test_mol_ssh_b_runs_the_hardened_settings_after_all_that(runs) -> None:
    runs["b"].result()
    running = sshd_t(lab("mol-ssh-b"))
    wrong = {option: running.get(option) for option, value in EXPECTED.items() if running.get(option) != value}
    assert wrong == {}
    refused = ssh(B, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    assert refused.returncode == 255 and "Permission denied (publickey)." in refused.stderr
