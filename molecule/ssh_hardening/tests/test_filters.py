"""Table-driven tests of the role's decisions (roles/ssh_hardening/filter_plugins), no host needed.

The lock-out check reads `sshd -T -C` output the way sshd applies it; each row is one login and one
configuration, and the reasons the check must (or must not) give.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest
import yaml

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles/ssh_hardening"
_spec = importlib.util.spec_from_file_location("ssh_hardening_filters", ROLE / "filter_plugins/ssh_hardening.py")
f = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(f)

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v enp lab operator"
BASE = """port 22
listenaddress 0.0.0.0:22
listenaddress [::]:22
permitrootlogin without-password
pubkeyauthentication yes
passwordauthentication no
authenticationmethods publickey
authorizedkeysfile .ssh/authorized_keys
pubkeyacceptedalgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256
"""
LOGIN = {
    "user": "enp",
    "groups": ["enp", "sudo"],
    "address": "198.18.254.1",
    "server_address": "198.18.254.10",
    "server_port": "22",
    "password": False,
    "keys": ED25519,
    "require_key": True,
}


@pytest.mark.parametrize(
    ("extra", "login", "reason"),
    [
        ("", {}, None),
        ("allowusers *@198.18.254.1\nallowusers *@198.18.254.10\n", {}, None),
        ("allowusers *@198.18.254.0/24\n", {}, None),
        ("allowusers *@198.18.254.10\n", {}, "matches no AllowUsers entry"),
        ("allowusers enp@198.18.254.1\n", {"user": "root"}, "matches no AllowUsers entry"),
        ("allowusers *@198.18.0.0/15,!198.18.254.1\n", {}, "matches no AllowUsers entry"),
        ("allowusers en?\n", {}, None),
        ("allowusers *@198.18.254.1\n", {"address": ""}, "matches no AllowUsers entry"),
        ("denyusers enp\n", {}, "matches DenyUsers"),
        ("allowgroups sudo\n", {}, None),
        ("allowgroups sshusers\n", {}, "is in no AllowGroups group"),
        ("denygroups sudo\n", {}, "DenyGroups"),
        ("", {"user": "root"}, None),
        ("permitrootlogin no\n", {"user": "root"}, "PermitRootLogin would be 'no'"),
        ("permitrootlogin forced-commands-only\n", {"user": "root"}, "PermitRootLogin"),
        ("permitrootlogin no\n", {}, None),
        ("pubkeyauthentication no\n", {}, "PubkeyAuthentication would be 'no'"),
        ("", {"password": True}, "logs in with a password"),
        ("authenticationmethods publickey,password\n", {}, "no alternative that is 'publickey' alone"),
        ("authenticationmethods publickey,password publickey\n", {}, None),
        ("", {"server_port": "2222"}, "connects to port 2222"),
        ("", {"keys": None}, "no readable authorized keys file"),
        ("", {"keys": "# nothing here\n"}, "the file has no keys"),
        ("", {"keys": "ssh-dss AAAAB3NzaC1kc3M= old"}, "ssh-dss keys are not in PubkeyAcceptedAlgorithms"),
        ("", {"keys": "ssh-rsa AAAAB3NzaC1yc2E= rsa"}, None),
        ("", {"keys": 'command="/bin/backup" ' + ED25519}, "forced command"),
        ("", {"keys": 'from="10.0.0.0/8" ' + ED25519}, 'from="10.0.0.0/8" does not include'),
        ("", {"keys": 'from="198.18.254.0/24",no-pty ' + ED25519}, None),
        ("", {"keys": 'command="/bin/backup" ' + ED25519 + "\n" + ED25519}, None),
        ("", {"keys": None, "require_key": False}, None),
    ],
)
def test_lockout(extra: str, login: dict, reason: str | None) -> None:
    # Options given in `extra` replace the base ones: sshd -T prints each keyword once (or repeats it).
    keys = {line.split()[0] for line in extra.splitlines()}
    base = "".join(line + "\n" for line in BASE.splitlines() if line.split()[0] not in keys)
    reasons = f.ssh_hardening_lockout(base + extra, {**LOGIN, **login})
    if reason is None:
        assert reasons == []
    else:
        assert any(reason in r for r in reasons), reasons


def test_listen_address_must_cover_the_connection() -> None:
    sshd_t = BASE.replace("listenaddress 0.0.0.0:22\nlistenaddress [::]:22\n", "listenaddress 198.18.254.99:22\n")
    assert any("would not listen there" in r for r in f.ssh_hardening_lockout(sshd_t, LOGIN))


@pytest.mark.parametrize("limit", [1, 10, 1000, 2048, 3071, 3072, 8191])
def test_below_regex_matches_exactly_the_smaller_numbers(limit: int) -> None:
    pattern = re.compile("^" + f.ssh_hardening_below_regex(limit) + "$")
    assert [n for n in range(10000) if bool(pattern.match(str(n))) != (n < limit)] == []


def test_bad_sources() -> None:
    assert f.ssh_hardening_bad_sources(["198.18.4.0/24", "198.18.254.1", "2001:db8::/32", "lb1", "10.0.0.0/33"]) == [
        "lb1",
        "10.0.0.0/33",
    ]


def _control(cid: str, **check: object) -> dict:
    return {"id": cid, "title": "t", "cis": "", "gov": [], "check": check}


def test_evaluate_reports_pass_fail_and_disabled() -> None:
    controls = [
        _control("SSH-901", kind="sshd_option", name="x11forwarding", expect="no"),
        _control(
            "SSH-902", kind="sshd_option", name="permitrootlogin", expect_any=["prohibit-password", "without-password"]
        ),
        _control("SSH-903", kind="file_mode", path="/etc/ssh/sshd_config", mode="0600", owner="root"),
        _control("SSH-904", kind="command", argv=["ssh"], rc=255, stdout_regex="no matching cipher"),
        _control("SSH-905", kind="sshd_option", name="ciphers", expect_not=["aes128-cbc"]),
    ]
    negotiation = "*** banner ***\nUnable to negotiate: no matching cipher found. Their offer: x\n"
    results = f.ssh_hardening_evaluate(
        controls,
        ["SSH-905"],
        "x11forwarding yes\npermitrootlogin without-password\nciphers aes128-cbc\n",
        {"/etc/ssh/sshd_config": {"exists": True, "mode": "0644", "pw_name": "root", "gr_name": "root"}},
        {"SSH-904": {"rc": 255, "stdout": negotiation}},
    )
    status = {r["id"]: r["status"] for r in results}
    assert status == {"SSH-901": "fail", "SSH-902": "pass", "SSH-903": "fail", "SSH-904": "pass", "SSH-905": "disabled"}
    evidence = {r["id"]: r["evidence"] for r in results}
    assert "mode 0644 exceeds 0600" in evidence["SSH-903"]
    assert evidence["SSH-904"].startswith("Unable to negotiate")  # the proving line, not the banner


def test_catalogue_follows_the_documented_format() -> None:
    catalogue = yaml.safe_load((ROLE / "vars/controls.yml").read_text())["__ssh_hardening_controls"]
    ids = [c["id"] for c in catalogue]
    assert ids == [f"SSH-{n:03d}" for n in range(1, len(ids) + 1)]
    for control in catalogue:
        assert set(control) == {"id", "title", "cis", "gov", "tags", "container", "check"}, control["id"]
        assert control["container"] == "applies"
        assert re.fullmatch(r"(5\.1\.\d+)?", control["cis"]), control["id"]
        assert set(control["gov"]) <= {"G1", "G6", "D2"} and control["gov"], control["id"]
        assert control["tags"][0] == "ssh"
        assert control["check"]["kind"] in {"sshd_option", "file_mode", "command"}
    # The project's own validator, when the engineer writing enp_controls_check has it in the tree.
    validator = ROLE.parents[1] / "plugins/module_utils/enp_controls.py"
    if validator.exists():
        spec = importlib.util.spec_from_file_location("enp_controls", validator)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.validate_catalogue(catalogue) == []


def test_every_control_has_a_task_named_and_tagged_with_its_id() -> None:
    catalogue = yaml.safe_load((ROLE / "vars/controls.yml").read_text())["__ssh_hardening_controls"]
    tasks = "\n".join(p.read_text() for p in (ROLE / "tasks").glob("*.yml"))
    names = " ".join(re.findall(r"- name: (SSH-[^\n]*)", tasks))
    live_only = {c["id"] for c in catalogue if "ssh_live" in c["tags"]}  # enforced by checking the running daemon
    for control in catalogue:
        cid = control["id"]
        number = int(cid.split("-")[1])
        ranged = any(int(a) <= number <= int(b) for a, b in re.findall(r"SSH-(\d{3})\.\.(\d{3})", names))
        assert cid in names or ranged or cid in live_only, f"{cid}: no task named '{cid} | ...'"
        assert cid in live_only or cid.lower() in tasks, f"{cid}: no task tagged {cid.lower()}"


def test_readme_lists_every_control() -> None:
    catalogue = yaml.safe_load((ROLE / "vars/controls.yml").read_text())["__ssh_hardening_controls"]
    readme = (ROLE / "README.md").read_text()
    missing = [c["id"] for c in catalogue if f"| {c['id']} |" not in readme]
    assert missing == []
    for control in catalogue:  # the README's CIS column agrees with the catalogue
        row = next(line for line in readme.splitlines() if line.startswith(f"| {control['id']} |"))
        assert (control["cis"] or "\u2013") in row.split("|")[3], control["id"]
