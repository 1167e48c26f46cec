"""The four variants, the anchors' documented variable overrides, and the reference figures.

The anchors are never edited and never copied into the project: the benchmark takes a checkout of each
(--devsec, --lockdown), links it into a temporary collections path / roles path outside the repository,
and writes a two-line playbook that applies it the way its README does. Where an anchor cannot run on a
systemd-nspawn lab host or offline from the project's baseline mirror, a minimal override of one of its
own public variables lets it run; every override is printed with its reason and recorded in the JSON.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

VARIANTS = ("untouched", "devsec", "lockdown", "ours")
HOSTS = {name: f"bh-{name}" for name in VARIANTS}
HARDEN_PLAYBOOK = "playbooks/harden.yml"


@dataclass(frozen=True)
class Override:
    name: str
    value: object
    reason: str


@dataclass(frozen=True)
class Reference:
    """A figure measured earlier on identical lab hosts; printed when the variant is not measured in this run."""

    hardening_index: int
    label: str


REFERENCE = {
    "untouched": Reference(58, "untouched (apt_baseline + postgresql primary, no hardening)"),
    "devsec": Reference(74, "devsec.hardening 10.6.0 (os + ssh roles)"),
    "lockdown": Reference(58, "ansible-lockdown DEBIAN12-CIS (May 2026 release, container mode, ~120 rules skipped)"),
}

# kernel.*, fs.* and vm.* live in the host kernel and are read-only inside a container; net.* is per network
# namespace and stays writable. Evaluated on the host, at the role's sysctl task, over the same dicts the role
# combines (defaults, its OS vars file, the user's overwrite), so a new key in a later release is covered too.
_DEVSEC_READ_ONLY_SYSCTLS = (
    "{{ (sysctl_config | combine(sysctl_custom_config | default({})) | combine(sysctl_rhel_config | default({}))"
    " | combine(sysctl_overwrite | default({}))) | dict2items | map(attribute='key')"
    " | reject('match', 'net[.]') | list }}"
)

DEVSEC_OVERRIDES = (
    Override(
        "sysctl_unsupported_entries",
        _DEVSEC_READ_ONLY_SYSCTLS,
        "kernel.*/fs.*/vm.* sysctls are read-only in a systemd-nspawn container and the role's container check "
        "knows docker/lxc/openvz only, so it aborts at 'Change various sysctl-settings' (fs.protected_fifos: "
        "permission denied); every net.* key is still applied",
    ),
    Override(
        "os_auditd_enabled",
        False,
        "auditd cannot run in a container (the kernel's audit subsystem is not namespaced; lockdown's container "
        "mode skips its auditd rules for the same reason): the play fails at the handler 'Restart auditd via "
        "systemd', so the handlers after it (sshd restart) never run",
    ),
    Override(
        "os_auth_pam_passwdqc_enable",
        False,
        "libpam-passwdqc is not in the project's baseline mirror (hosts are offline): the role aborts at "
        "'Install the package for strong password checking'",
    ),
    Override(
        "os_modprobe_enabled",
        False,
        "kmod (and with it /etc/modprobe.d) is not in the baseline mirror: the role aborts at 'Install modprobe "
        "to disable filesystems'; kernel modules are not applicable in a container anyway",
    ),
)

_CRON = (
    "cron is not in the baseline mirror: no cron daemon, /etc/crontab or cron.hourly/daily/weekly/monthly/d to "
    "start or chmod (the role aborts at 'PRELIM | PATCH | Install cron'); 2.4.1.8 (cron.allow) still applies"
)
LOCKDOWN_OVERRIDES = (
    Override(
        "deb12cis_rule_5_2_4",
        False,
        "sudo would require a password: the role refuses to run because the key-only operator account (enp) has "
        "a locked password, and enforcing it would lock Ansible out of every host",
    ),
    Override(
        "deb12cis_rule_5_4_2_4",
        False,
        "the role refuses to run without a root password; lab hosts have none (root logs in by key only)",
    ),
    Override(
        "deb12cis_rule_1_3_1_1",
        False,
        "apparmor and apparmor-utils are not in the baseline mirror (container mode already skips 1.3.1.2-1.3.1.4)",
    ),
    *(Override(f"deb12cis_rule_2_4_1_{n}", False, _CRON) for n in range(1, 8)),
    Override(
        "deb12cis_rule_4_2_7",
        False,
        "ufw is not in the baseline mirror; container mode skips 4.2.1-4.2.6 but not 4.2.7 (ufw default deny), "
        "which aborts with 'Failed to find required executable ufw'",
    ),
    Override(
        "deb12cis_syslog_type",
        "rsyslog",
        "systemd-journal-remote is not in the baseline mirror (6.1.2.1.x would install, configure and mask it); "
        "the estate logs with rsyslog, which is in the mirror (the role's other documented choice)",
    ),
)


@dataclass
class Anchor:
    """A checkout of an anchor given on the command line."""

    variant: str
    path: Path
    version: str
    commit: str
    date: str

    def to_dict(self) -> dict[str, str]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _git(path: Path, *args: str) -> str:
    proc = subprocess.run(  # noqa: S603 - fixed git arguments on a path the operator gave
        ["git", "-C", str(path), *args],  # noqa: S607 - git from PATH, like every other tool here
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def check_anchor(variant: str, path: Path) -> Anchor:
    """Refuse a path that is not a checkout of the expected anchor (ValueError says what to do)."""
    path = path.expanduser().resolve()
    if variant == "devsec":
        galaxy = path / "galaxy.yml"
        meta = yaml.safe_load(galaxy.read_text()) if galaxy.is_file() else None
        if not meta or meta.get("namespace") != "devsec" or meta.get("name") != "hardening":
            raise ValueError(
                f"--devsec {path}: no galaxy.yml of devsec.hardening there. Give a checkout of "
                "https://github.com/dev-sec/ansible-collection-hardening (the folder that holds galaxy.yml and roles/)."
            )
        for role in ("os_hardening", "ssh_hardening"):
            if not (path / "roles" / role / "tasks" / "main.yml").is_file():
                raise ValueError(f"--devsec {path}: roles/{role}/tasks/main.yml is missing; is the checkout complete?")
        version = str(meta.get("version", "?"))
    elif variant == "lockdown":
        for needed in ("tasks/main.yml", "defaults/main.yml", "vars/is_container.yml"):
            if not (path / needed).is_file():
                raise ValueError(
                    f"--lockdown {path}: {needed} is missing. Give a checkout of "
                    "https://github.com/ansible-lockdown/DEBIAN12-CIS (the role's top folder)."
                )
        defaults = (path / "defaults" / "main.yml").read_text()
        if "deb12cis_" not in defaults:
            raise ValueError(f"--lockdown {path}: defaults/main.yml has no deb12cis_ variables; not DEBIAN12-CIS?")
        version = _git(path, "describe", "--tags", "--always") or "?"
    else:
        raise ValueError(f"{variant} is not an anchor")
    return Anchor(variant, path, version, _git(path, "rev-parse", "HEAD"), _git(path, "log", "-1", "--format=%cs"))


def lockdown_container_skips(path: Path) -> int:
    """How many rules the role's own container mode switches off (vars/is_container.yml)."""
    data = yaml.safe_load((path / "vars" / "is_container.yml").read_text()) or {}
    return sum(1 for key, value in data.items() if key.startswith("deb12cis_rule_") and value is False)


def label(variant: str, anchor: Anchor | None, container_skips: int | None = None) -> str:
    if variant == "untouched":
        return REFERENCE["untouched"].label
    if variant == "ours":
        return f"this project: ansible-playbook {HARDEN_PLAYBOOK} -l {HOSTS['ours']}"
    if anchor is None:
        return REFERENCE[variant].label
    if variant == "devsec":
        return f"devsec.hardening {anchor.version} (os_hardening + ssh_hardening), {anchor.commit[:8]} {anchor.date}"
    skipped = f", container mode skips {container_skips} rules" if container_skips is not None else ""
    return f"ansible-lockdown DEBIAN12-CIS {anchor.version} ({anchor.date}, {anchor.commit[:8]}{skipped})"


def overrides_for(variant: str, enabled: bool = True) -> tuple[Override, ...]:
    if not enabled:
        return ()
    return {"devsec": DEVSEC_OVERRIDES, "lockdown": LOCKDOWN_OVERRIDES}.get(variant, ())


def anchor_playbook(variant: str, overrides: tuple[Override, ...]) -> str:
    """The playbook that applies an anchor as its README shows (become, facts, the roles), overrides as play vars.

    Play vars sit above role defaults and below the role's own include_vars, so lockdown's container mode
    (vars/is_container.yml) still wins over anything set here.
    """
    roles = {
        "devsec": ["devsec.hardening.os_hardening", "devsec.hardening.ssh_hardening"],
        "lockdown": ["deb12_cis"],
    }[variant]
    play: dict[str, object] = {
        "name": f"Hardening bench | {variant} as shipped (written by bench/hardening_compare.py)",
        "hosts": "estate",
        "become": True,
        "gather_facts": True,
    }
    if overrides:
        play["vars"] = {o.name: o.value for o in overrides}
    play["roles"] = [{"role": role} for role in roles]
    header = f"# {variant}: generated for one benchmark run; the anchor's code is used unchanged.\n"
    return header + yaml.safe_dump([play], sort_keys=False, width=200)


def link_anchors(tmp: Path, anchors: dict[str, Anchor]) -> dict[str, Path]:
    """Temporary collections path / roles path (outside the repository) pointing at the checkouts."""
    paths: dict[str, Path] = {}
    if "devsec" in anchors:
        namespace = tmp / "collections" / "ansible_collections" / "devsec"
        namespace.mkdir(parents=True)
        (namespace / "hardening").symlink_to(anchors["devsec"].path, target_is_directory=True)
        paths["collections"] = tmp / "collections"
    if "lockdown" in anchors:
        roles = tmp / "roles"
        roles.mkdir(parents=True)
        (roles / "deb12_cis").symlink_to(anchors["lockdown"].path, target_is_directory=True)
        paths["roles"] = roles
    return paths


def group_overrides(overrides: tuple[Override, ...]) -> list[tuple[list[str], object, str]]:
    """Consecutive overrides with the same reason and value, as one printed line."""
    groups: list[tuple[list[str], object, str]] = []
    for item in overrides:
        if groups and groups[-1][2] == item.reason and groups[-1][1] == item.value:
            groups[-1][0].append(item.name)
        else:
            groups.append(([item.name], item.value, item.reason))
    return groups
