# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the ssh_hardening role that YAML does badly.

* ``ssh_hardening_lockout``: would sshd, with a candidate configuration, still let Ansible's own login in?
  It reads what ``sshd -T -C user=...,addr=...`` says about that connection and applies OpenSSH's rules
  for AllowUsers/DenyUsers/AllowGroups/DenyGroups, PermitRootLogin, AuthenticationMethods, ports and
  listen addresses, and the login's own authorized keys (type, ``from=``, forced command).
* ``ssh_hardening_evaluate``: the catalogue's checks (docs/hardening-controls.md) against what the live
  host returned (``sshd -T``, stat, command probes), so the role fails when the running daemon does not
  match, with evidence per control.

Pure functions: table-driven tests in molecule/ssh_hardening/tests/test_filters.py.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import shlex
from typing import Any

EVIDENCE_LIMIT = 300

# Key type in authorized_keys -> signature algorithms that can use it.
_KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    "ssh-rsa-cert-v01@openssh.com": (
        "rsa-sha2-512-cert-v01@openssh.com",
        "rsa-sha2-256-cert-v01@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
    ),
}
_KEY_TYPE = re.compile(
    r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256))(-cert-v01)?(@openssh\.com)?$"
)
# listenaddress values that cover every address of the host (what sshd -T prints without ListenAddress).
_WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - compared with, never bound


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= EVIDENCE_LIMIT else text[: EVIDENCE_LIMIT - 1] + "…"


def ssh_hardening_sshd_options(text: str) -> dict[str, list[str]]:
    """`sshd -T` output -> {keyword: [value, ...]} (keywords such as hostkey or allowusers repeat)."""
    options: dict[str, list[str]] = {}
    for line in str(text).splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value.strip())
    return options


# --- OpenSSH pattern matching (match.c, addrmatch.c) ---------------------------------------------------


def _match_pattern_list(value: str, patterns: str, fold: bool = False) -> int:
    """1 if a positive pattern matches, -1 if a negated one does, else 0 (match_pattern_list)."""
    if fold:
        value = value.lower()
    found = 0
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if fold:
            pattern = pattern.lower()
        if fnmatch.fnmatchcase(value, pattern):
            if negated:
                return -1
            found = 1
    return found


def _addr_match_list(address: str, patterns: str) -> int:
    """1 / -1 / 0 as addr_match_list: CIDR entries, else wildcard matching of the address text."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return 0
    found = 0
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        try:
            network = ipaddress.ip_network(pattern, strict=False)
            hit = addr.version == network.version and addr in network
        except ValueError:
            hit = fnmatch.fnmatchcase(address, pattern)
        if hit:
            if negated:
                return -1
            found = 1
    return found


def _match_host_and_ip(host: str, address: str, patterns: str) -> bool:
    mip = _addr_match_list(address, patterns)
    mhost = _match_pattern_list(host, patterns, fold=True)
    if mip == -1 or mhost == -1:
        return False
    return mip == 1 or mhost == 1


def _match_user(user: str, address: str, pattern: str) -> bool:
    """AllowUsers/DenyUsers entry: USER or USER@HOST (HOST: names, addresses, CIDRs; UseDNS no)."""
    if "@" not in pattern:
        return fnmatch.fnmatchcase(user, pattern)
    user_pattern, _, host_pattern = pattern.rpartition("@")
    if not fnmatch.fnmatchcase(user, user_pattern):
        return False
    if not address:
        return False  # a source-restricted entry cannot be proven to match an unknown address
    return _match_host_and_ip(address, address, host_pattern)


def _words(values: list[str] | None) -> list[str]:
    return [word for value in values or [] for word in value.split()]


# --- Authorized keys -----------------------------------------------------------------------------------


def _parse_key_line(line: str) -> tuple[dict[str, str], str] | None:
    """(options, key type) of one authorized_keys line, or None for blank/comment/unparsable lines."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    try:
        tokens = shlex.split(line, comments=False, posix=True)
    except ValueError:
        tokens = line.split()
    for index, token in enumerate(tokens):
        if _KEY_TYPE.match(token):
            options: dict[str, str] = {}
            for part in ",".join(tokens[:index]).split(","):
                name, _, value = part.partition("=")
                if name:
                    options[name.strip().lower()] = value
            return options, token
    return None


def _key_usable(options: dict[str, str], key_type: str, accepted: set[str], address: str) -> str | None:
    """None when this key can log Ansible in, else why not."""
    algorithms = _KEY_ALGORITHMS.get(key_type, (key_type,))
    if not accepted & set(algorithms):
        return f"{key_type} keys are not in PubkeyAcceptedAlgorithms"
    if "command" in options:
        return "the key is limited to a forced command"
    if "from" in options and address:
        patterns = options["from"]
        if _match_pattern_list(address, patterns, fold=True) != 1 and _addr_match_list(address, patterns) != 1:
            return f'the key\'s from="{patterns}" does not include {address}'
    return None


# --- Lock-out check ------------------------------------------------------------------------------------


def ssh_hardening_lockout(sshd_t: str, login: dict[str, Any]) -> list[str]:
    """Reasons why the login Ansible uses now would be refused by sshd with the candidate configuration.

    ``sshd_t`` is ``sshd -T -f CANDIDATE -C user=U,host=A,addr=A[,laddr=L,lport=P]`` output (Match
    blocks applied for that connection). ``login``: ``user``, ``groups`` (list), ``address`` (client
    address as sshd sees it, "" if unknown), ``server_address``, ``server_port``, ``password`` (bool:
    Ansible logs in with a password), ``keys`` (text of the user's authorized keys files, None if none
    was readable), ``require_key`` (bool). An empty list means the login keeps working.
    """
    opts = ssh_hardening_sshd_options(sshd_t)
    user = str(login.get("user") or "")
    address = str(login.get("address") or "")
    groups = [str(g) for g in login.get("groups") or []]
    who = f"{user}@{address or 'an unknown address'}"
    first = lambda key, default="": (opts.get(key) or [default])[0].lower()  # noqa: E731
    reasons: list[str] = []

    if not user:
        return ["the login user of this connection is unknown, so a lock-out cannot be ruled out"]
    if user == "root" and first("permitrootlogin") in ("no", "forced-commands-only"):
        reasons.append(f"Ansible logs in as root and PermitRootLogin would be '{first('permitrootlogin')}'")
    if login.get("password"):
        if first("passwordauthentication") == "no":
            reasons.append(
                "Ansible logs in with a password (ansible_password is set) and PasswordAuthentication would be "
                "'no'; give Ansible a key first"
            )
    elif first("pubkeyauthentication", "yes") == "no":
        reasons.append("PubkeyAuthentication would be 'no', and Ansible logs in with a key")

    methods = first("authenticationmethods", "any")
    wanted = "password" if login.get("password") else "publickey"
    if methods != "any" and wanted not in methods.split():
        reasons.append(f"AuthenticationMethods '{methods}' has no alternative that is '{wanted}' alone")

    allow_users = _words(opts.get("allowusers"))
    if allow_users and not any(_match_user(user, address, p) for p in allow_users):
        reasons.append(f"{who} matches no AllowUsers entry ({' '.join(allow_users)})")
    deny_users = [p for p in _words(opts.get("denyusers")) if _match_user(user, address, p)]
    if deny_users:
        reasons.append(f"{who} matches DenyUsers {' '.join(deny_users)}")
    allow_groups = _words(opts.get("allowgroups"))
    if allow_groups and not any(fnmatch.fnmatchcase(g, p) for g in groups for p in allow_groups):
        reasons.append(
            f"{user} (groups: {' '.join(groups) or 'none'}) is in no AllowGroups group ({' '.join(allow_groups)})"
        )
    deny_groups = sorted({g for g in groups for p in _words(opts.get("denygroups")) if fnmatch.fnmatchcase(g, p)})
    if deny_groups:
        reasons.append(f"{user} is in DenyGroups group(s) {' '.join(deny_groups)}")

    server_port = str(login.get("server_port") or "")
    server_address = str(login.get("server_address") or "")
    listen = [v.rsplit(":", 1) for v in opts.get("listenaddress") or [] if ":" in v]
    if server_port and listen:
        on_port = [host.strip("[]") for host, port in listen if port == server_port]
        if not on_port:
            where = " ".join(opts["listenaddress"])
            reasons.append(f"Ansible connects to port {server_port}, and sshd would listen on {where} only")
        elif server_address and not ((_WILDCARDS | {server_address}) & set(on_port)):
            reasons.append(f"Ansible connects to {server_address}:{server_port}, and sshd would not listen there")

    if login.get("require_key") and not login.get("password"):
        text = login.get("keys")
        accepted = {a.lower() for v in opts.get("pubkeyacceptedalgorithms") or [] for a in v.split(",")}
        if text is None:
            reasons.append(f"{user} has no readable authorized keys file ({first('authorizedkeysfile')})")
        else:
            problems = []
            for line in str(text).splitlines():
                parsed = _parse_key_line(line)
                if parsed is None:
                    continue
                problem = _key_usable(parsed[0], parsed[1], accepted, address)
                if problem is None:
                    problems = []
                    break
                problems.append(problem)
            else:
                reasons.append(
                    f"no key in {user}'s authorized keys ({first('authorizedkeysfile')}) would be accepted"
                    + (f": {'; '.join(sorted(set(problems)))}" if problems else " (the file has no keys)")
                )
    return reasons


# --- Input checks --------------------------------------------------------------------------------------


def ssh_hardening_bad_sources(sources: list[str]) -> list[str]:
    """Entries of ssh_hardening_allow_sources that are not an IPv4/IPv6 address or CIDR."""
    bad = []
    for source in sources or []:
        try:
            ipaddress.ip_network(str(source), strict=False)
        except ValueError:
            bad.append(str(source))
    return bad


def ssh_hardening_below_regex(limit: int) -> str:
    """A regex for the decimal integers below ``limit`` (no leading zeros), e.g. the moduli sizes to drop."""
    digits = str(int(limit))
    parts = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        if digit != "0":
            lower = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
            rest = len(digits) - index - 1
            parts.append(digits[:index] + lower + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(parts) + ")" if parts else "(?!)"


# --- Catalogue checks on the live host -----------------------------------------------------------------


def _check_sshd_option(check: dict, options: dict[str, list[str]] | None) -> tuple[bool, str]:
    if options is None:
        return False, "sshd -T failed"
    name = str(check["name"]).lower()
    values = options.get(name)
    if values is None:
        return False, f"sshd -T has no '{name}'"
    value = " ".join(values)
    ok = True
    if "expect" in check:
        ok = value.lower() == str(check["expect"]).lower()
    if "expect_any" in check:
        ok = ok and value.lower() in [str(v).lower() for v in check["expect_any"]]
    items = {item for v in values for item in v.lower().split(",")}
    if "expect_not" in check:
        ok = ok and not items & {str(v).lower() for v in check["expect_not"]}
    if "contains" in check:
        ok = ok and {str(v).lower() for v in check["contains"]} <= items
    want = check.get("expect", check.get("expect_any", ""))
    return ok, f"sshd running config: {name} {_short(value)}" + ("" if ok else f" (want {_short(str(want))})")


def _check_file_mode(check: dict, stat: dict | None) -> tuple[bool, str]:
    path = check["path"]
    if not stat or not stat.get("exists"):
        return False, f"{path} is missing"
    mode = int(str(stat.get("mode", "7777")), 8)
    allowed = int(str(check["mode"]), 8)
    owner, group = stat.get("pw_name", "?"), stat.get("gr_name", "?")
    problems = []
    if mode & ~allowed:
        problems.append(f"mode {mode:04o} exceeds {allowed:04o}")
    if check.get("owner") and owner != check["owner"]:
        problems.append(f"owner {owner} (want {check['owner']})")
    if check.get("group") and group != check["group"]:
        problems.append(f"group {group} (want {check['group']})")
    return not problems, f"{path} {mode:04o} {owner}:{group}" + ("; " + ", ".join(problems) if problems else "")


def _check_command(check: dict, result: dict | None) -> tuple[bool, str]:
    argv = [str(a) for a in check["argv"]]
    shown = argv[-1] if argv[:2] == ["sh", "-c"] else " ".join(argv)
    if not result:
        return False, "the check did not run"
    rc = int(result.get("rc", -1))
    output = (str(result.get("stdout", "")) + str(result.get("stderr", ""))).strip()
    want_rc = int(check.get("rc", 0))
    regex = check.get("stdout_regex")
    found = re.search(regex, output, re.MULTILINE) if regex else None
    ok = rc == want_rc and (found is not None if regex else True)
    if ok:
        if found is not None:  # the line that proves it, not a banner printed before it
            start = output.rfind("\n", 0, found.start()) + 1
            end = output.find("\n", found.end())
            return True, _short(output[start : end if end >= 0 else None])
        return True, _short(output or f"rc={rc}")
    return False, _short(f"rc={rc} (want {want_rc}){'' if not regex else ', want /' + regex + '/'}: {output or shown}")


def ssh_hardening_evaluate(
    controls: list[dict],
    disabled: list[str],
    sshd_t: str | None,
    stats: dict[str, dict],
    commands: dict[str, dict],
) -> list[dict[str, Any]]:
    """Per control: id, title, cis, gov, status (pass, fail, disabled) and evidence."""
    options = ssh_hardening_sshd_options(sshd_t) if sshd_t else None
    results = []
    for control in controls:
        entry = {k: control.get(k) for k in ("id", "title", "cis", "gov")}
        if control["id"] in disabled:
            results.append(dict(entry, status="disabled", evidence="turned off by ssh_hardening_controls_disabled"))
            continue
        check = control["check"]
        kind = check.get("kind")
        if kind == "sshd_option":
            ok, evidence = _check_sshd_option(check, options)
        elif kind == "file_mode":
            ok, evidence = _check_file_mode(check, stats.get(check["path"]))
        elif kind == "command":
            ok, evidence = _check_command(check, commands.get(control["id"]))
        else:
            ok, evidence = False, f"check kind {kind!r} is not evaluated by this role"
        results.append(dict(entry, status="pass" if ok else "fail", evidence=evidence))
    return results


class FilterModule:
    def filters(self) -> dict:
        return {
            "ssh_hardening_sshd_options": ssh_hardening_sshd_options,
            "ssh_hardening_lockout": ssh_hardening_lockout,
            "ssh_hardening_evaluate": ssh_hardening_evaluate,
            "ssh_hardening_bad_sources": ssh_hardening_bad_sources,
            "ssh_hardening_below_regex": ssh_hardening_below_regex,
        }
