"""The live host meets every os_hardening control that applies, reports the ones a container cannot do,
keeps the connecting account working, and its integrity tools notice an attacker's change."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

ADDRESS = "198.18.249.11"
EPHEMERAL = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
PROJECT = pathlib.Path(__file__).resolve().parents[3]
IDENTITY = PROJECT / ".lab/molecule/os_hardening/ssh/id_ed25519"
# What a systemd-nspawn host cannot do, each with the reason in the record.
NOT_APPLICABLE_IN_NSPAWN = {"OS-038", "OS-040", "OS-048", "OS-050", "OS-055", "OS-061"}


def record(host) -> dict:
    with host.sudo():
        return json.loads(host.file("/var/lib/enp/compliance/os_hardening.json").content_string)


def test_compliance_record_has_no_failed_control_and_explains_every_skip(host) -> None:
    data = record(host)
    assert data["container"] == "systemd-nspawn"
    statuses = {c["id"]: c["status"] for c in data["controls"]}
    assert [cid for cid, status in statuses.items() if status == "fail"] == []
    assert {cid for cid, status in statuses.items() if status == "not_applicable"} == NOT_APPLICABLE_IN_NSPAWN
    for control in data["controls"]:
        assert control["evidence"], control
        assert control["cis"] is not None and control["gov"], control
        if control["status"] == "not_applicable":
            assert "systemd-nspawn" in control["evidence"] and len(control["evidence"]) > 60
    assert data["summary"]["pass"] == sum(1 for s in statuses.values() if s == "pass") >= 40


def test_a_fresh_ssh_login_of_the_connecting_account_still_gets_root(host) -> None:
    user = host.ansible.get_variables().get("ansible_user", "enp")
    argv = [
        "/usr/bin/ssh", "-i", str(IDENTITY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ControlMaster=no", "-o", "BatchMode=yes", f"{user}@{ADDRESS}", "sudo -n id -un",
    ]  # fmt: skip
    login = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "root"


def test_account_policy_is_in_login_defs_and_pam(host) -> None:
    defs = host.file("/etc/login.defs").content_string
    for line in ("PASS_MAX_DAYS\t365", "PASS_MIN_DAYS\t1", "UMASK\t027", "ENCRYPT_METHOD\tYESCRYPT"):
        assert line in defs
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    assert "pam_tmpdir.so" in host.file("/etc/pam.d/common-session").content_string
    shell = host.run("bash -lc 'echo $TMOUT; umask; ulimit -c'")
    assert shell.stdout.split() == ["900", "0027", "0"]


def test_sudoers_are_valid_and_log_to_their_own_file(host) -> None:
    with host.sudo():
        assert host.run("visudo -c").rc == 0
        host.run("sudo -u nobody true")
        assert host.file("/var/log/sudo.log").exists


def test_su_is_refused_to_accounts_outside_sugroup(host) -> None:
    with host.sudo():
        attempt = host.run("runuser -u nobody -- su -c true root </dev/null")
    assert attempt.rc != 0


def test_unneeded_suid_bits_are_gone_and_nothing_unreviewed_has_one(host) -> None:
    for path in ("/usr/bin/chfn", "/usr/bin/chsh", "/usr/bin/newgrp"):
        assert not host.file(path).mode & 0o6000, path
    assert host.file("/usr/bin/sudo").mode & 0o4000


def test_network_parameters_are_live(host) -> None:
    assert host.sysctl("net.ipv4.conf.all.accept_redirects") == 0
    assert host.sysctl("net.ipv4.conf.all.rp_filter") == 1
    assert host.sysctl("net.ipv4.conf.all.log_martians") == 1
    assert host.sysctl("net.ipv4.tcp_syncookies") == 1


def test_kernel_parameters_are_written_for_real_servers(host) -> None:
    conf = host.file("/etc/sysctl.d/91-enp-kernel.conf").content_string
    assert "kernel.kptr_restrict = 2" in conf and "fs.suid_dumpable = 0" in conf
    assert "install usb-storage /bin/false" in host.file("/etc/modprobe.d/enp-hardening.conf").content_string


def test_services_run_and_the_host_is_not_degraded(host) -> None:
    for unit in ("rsyslog", "fail2ban", "enp-aide-check.timer", "enp-chkrootkit.timer"):
        assert host.service(unit).is_running, unit
        assert host.service(unit).is_enabled, unit
    # auditd and acct cannot run in a container; they are left off rather than failing at every boot.
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""
    with host.sudo():
        jails = host.run("fail2ban-client status sshd")
    assert jails.rc == 0 and "Currently banned" in jails.stdout


def test_logs_are_kept_180_days_and_queued_for_the_log_server(host) -> None:
    assert "MaxRetentionSec=180day" in host.file("/etc/systemd/journald.conf.d/enp.conf").content_string
    assert "rotate 190" in host.file("/etc/logrotate.d/rsyslog").content_string
    forward = host.file("/etc/rsyslog.d/60-enp-forward.conf").content_string
    assert 'target="198.18.249.99"' in forward and 'queue.type="LinkedList"' in forward
    with host.sudo():
        assert host.run("rsyslogd -N1").rc == 0
        assert host.run("logrotate --debug /etc/logrotate.conf").rc == 0


def test_banner_warns_and_reveals_nothing(host) -> None:
    for path in ("/etc/issue", "/etc/issue.net", "/etc/motd"):
        text = host.file(path).content_string
        assert "Authorised use only" in text
        assert "Debian" not in text and "\\r" not in text


@pytest.mark.parametrize("planted", ["/usr/local/bin/.cache-helper", "/etc/cron.d/sysupdate"])
def test_aide_reports_a_planted_file(host, planted: str) -> None:
    with host.sudo():
        assert host.run(f"printf '#!/bin/sh\\n' > {planted} && chmod 755 {planted}").rc == 0
        try:
            check = host.run("aide --check --config /etc/aide/aide.conf")
        finally:
            host.run(f"rm -f {planted}")
    assert check.rc != 0
    assert planted in check.stdout


def test_an_unknown_toggle_id_fails_the_play(host) -> None:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
    argv = [
        str(PROJECT / ".venv/bin/ansible"), "all", "-i", inventory, "-m", "ansible.builtin.include_role",
        "-a", "name=os_hardening", "-e", '{"os_hardening_controls_disabled": ["OS-999"]}', "--become",
    ]  # fmt: skip
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(PROJECT / "roles"))
    run = subprocess.run(  # noqa: S603
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False, cwd=PROJECT, env=env
    )
    assert run.returncode != 0
    assert "OS-999" in run.stdout and "Fix the spelling" in run.stdout
