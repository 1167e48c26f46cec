#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_host
short_description: A Debian lab host as a systemd-nspawn container on an overlay of the golden image
description:
  - Creates the host's overlay (golden image read-only below, host changes above), gives it a hostname,
    static addresses on one or more lab bridges, its own SSH host keys, and an operator account with
    the controller's SSH key and passwordless sudo; then boots it with systemd-nspawn.
  - Every process it starts is recorded with PID and start time; stop and teardown end only those.
  - A host with several interfaces (the zone gateway) gets one extra veth per further zone, attached
    to that zone's bridge once the container is up.
options:
  name:
    description: Host (and machine) name.
    type: str
    required: true
  state:
    description:
      - V(started) creates the host if needed and makes sure it runs and answers SSH.
      - V(stopped) shuts it down cleanly and unmounts its overlay, keeping its changes.
      - V(absent) stops it and deletes its overlay and records.
    type: str
    choices: [started, stopped, absent]
    default: started
  image:
    description: Golden root filesystem (from M(enp_lab_image)); required to create a host.
    type: path
  state_dir:
    description: Lab state folder; this host lives in C(hosts/NAME/).
    type: path
    required: true
  interfaces:
    description: Interfaces in order; the first is C(host0), the next C(eth1), C(eth2), ...
    type: list
    elements: dict
    default: []
    suboptions:
      bridge:
        description: Lab bridge to join.
        type: str
        required: true
      address:
        description: Static address with prefix length, inside 198.18.0.0/15.
        type: str
        required: true
      gateway:
        description: Default route via this address (the zone gateway). Omit for no route at all.
        type: str
  operator_user:
    description: Account Ansible connects as (never root).
    type: str
    default: enp
  ssh_public_key:
    description: Public key allowed to log in as O(operator_user).
    type: str
  etc_hosts:
    description: Extra C(/etc/hosts) entries, name to address, so lab hosts find each other by name.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for SSH to answer after start, and for a clean shutdown on stop.
    type: int
    default: 90
  ip_forward:
    description: Route between the host's interfaces (the zone gateway); set through a C(net.*) sysctl.
    type: bool
    default: false
  wait_for_ssh:
    description:
      - Wait until SSH answers before returning. Set V(false) to boot many hosts in parallel and
        wait for them all afterwards (e.g. with M(ansible.builtin.wait_for)).
    type: bool
    default: true
author: enp contributors
"""

EXAMPLES = r"""
- name: Boot the database primary
  enp_lab_host:
    name: db1
    image: "{{ golden.rootfs }}"
    state_dir: "{{ enp_lab_state_dir }}"
    interfaces:
      - bridge: enp-data
        address: 198.18.3.11/24
        gateway: 198.18.3.254
    ssh_public_key: "{{ lookup('ansible.builtin.file', enp_lab_ssh_key ~ '.pub') }}"
"""

RETURN = r"""
pid:
  description: PID of the host's systemd-nspawn process.
  returned: when state=started
  type: int
address:
  description: Primary address of the host.
  returned: when state=started
  type: str
ssh_seconds:
  description: Seconds from start until SSH answered (0 when it was already running).
  returned: when state=started
  type: float
"""

import os
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import (
    HostSpec,
    LabError,
    check_name,
    check_username,
    container_ifname,
    extra_veth_name,
    find_clashes,
    load_json,
    networkd_config,
    nspawn_command,
    parse_interfaces,
    sshd_hostkey_dropin,
    sudoers_dropin,
    write_json_atomic,
)
from ansible.module_utils.enp_lab_runtime import (
    cgroup_dirs_for,
    is_mounted,
    is_our_process,
    launch_detached,
    make_cgroups,
    mount_overlay,
    remove_cgroups,
    ssh_answers,
    stop_process,
    tail,
    unmount,
)


class Paths:
    def __init__(self, state_dir: str, name: str) -> None:
        self.base = os.path.join(state_dir, "hosts", name)
        self.upper = os.path.join(self.base, "upper")
        self.work = os.path.join(self.base, "work")
        self.merged = os.path.join(self.base, "merged")
        self.record = os.path.join(self.base, "host.json")
        self.log = os.path.join(self.base, "console.log")


def other_hosts(state_dir: str, name: str) -> list[HostSpec]:
    hosts_dir = os.path.join(state_dir, "hosts")
    specs = []
    for other in sorted(os.listdir(hosts_dir)) if os.path.isdir(hosts_dir) else []:
        if other == name:
            continue
        record = load_json(os.path.join(hosts_dir, other, "host.json"), None)
        if record:
            specs.append(HostSpec(other, parse_interfaces(record["interfaces"])))
    return specs


def write_file(root: str, path: str, content: str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(full, mode)
    if owner:
        os.chown(full, *owner)


def etc_hosts(name: str, extra: dict) -> str:
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{name}", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{address}\t{host}" for host, address in sorted(extra.items()) if host != name]
    return "\n".join(lines) + "\n"


def provision(
    module: AnsibleModule, paths: Paths, name: str, interfaces, user: str, pubkey: str, hosts: dict, ip_forward: bool
) -> None:
    """First-boot identity and access, written into the host's overlay before it ever boots."""
    root = paths.merged
    if ip_forward:
        # net.* sysctls are per network namespace, so a container may set this one.
        write_file(
            root,
            "/etc/sysctl.d/60-enp-lab-gateway.conf",
            "# Written by enp lab provider: this host routes between the lab zones.\nnet.ipv4.ip_forward = 1\n",
        )
    write_file(root, "/etc/hostname", name + "\n")
    write_file(root, "/etc/hosts", etc_hosts(name, hosts))
    for index, iface in enumerate(interfaces):
        ifname = container_ifname(index)
        # 10- sorts before the image's 80-container-host0.network, so ours wins.
        write_file(root, f"/etc/systemd/network/10-{ifname}.network", networkd_config(ifname, iface))
    run = module.run_command
    # A create interrupted half-way is retried from the start: drop what the last attempt made.
    for key in ("ssh_host_ed25519_key", "ssh_host_ecdsa_key"):
        for suffix in ("", ".pub"):
            if os.path.exists(os.path.join(root, "etc/ssh", key + suffix)):
                os.unlink(os.path.join(root, "etc/ssh", key + suffix))
    with open(os.path.join(root, "etc/passwd"), encoding="utf-8") as handle:
        user_exists = any(line.startswith(user + ":") for line in handle)
    useradd = (
        []
        if user_exists
        else [
            [
                "useradd",
                "--root",
                root,
                "--create-home",
                "--shell",
                "/bin/bash",
                "--groups",
                "sudo",
                "--comment",
                "enp operator",
                user,
            ]
        ]
    )
    for cmd in (
        ["systemctl", f"--root={root}", "enable", "systemd-networkd.service"],
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"root@{name}",
            "-f",
            os.path.join(root, "etc/ssh/ssh_host_ed25519_key"),
        ],
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ecdsa",
            "-N",
            "",
            "-C",
            f"root@{name}",
            "-f",
            os.path.join(root, "etc/ssh/ssh_host_ecdsa_key"),
        ],
        *useradd,
    ):
        rc, out, err = run(cmd)
        if rc != 0:
            raise LabError(f"preparing host {name} failed at `{' '.join(cmd[:3])}`: {(err or out).strip()}")
    write_file(root, "/etc/ssh/sshd_config.d/00-enp-lab-hostkeys.conf", sshd_hostkey_dropin())
    write_file(root, f"/etc/sudoers.d/enp-operator-{user}", sudoers_dropin(user), mode=0o440)
    with open(os.path.join(root, "etc/passwd"), encoding="utf-8") as handle:
        entry = next(line.split(":") for line in handle if line.startswith(user + ":"))
    uid, gid = int(entry[2]), int(entry[3])
    ssh_dir = os.path.join(root, "home", user, ".ssh")
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    write_file(root, f"/home/{user}/.ssh/authorized_keys", pubkey.strip() + "\n", mode=0o600, owner=(uid, gid))


def authorized_keys_path(root: str, user: str) -> str:
    return os.path.join(root, "home", user, ".ssh", "authorized_keys")


def refresh_access(module: AnsibleModule, paths: Paths, record: dict, pubkey: str | None, hosts: dict) -> bool:
    """Rewrite the operator's key and /etc/hosts in a provisioned host when they changed."""
    changed = False
    user = record["user"]
    wanted_key = (pubkey or "").strip() + "\n"
    wanted_hosts = etc_hosts(record["name"], hosts)
    mounted = is_mounted(paths.merged)
    root = paths.merged if mounted else paths.upper
    # With the overlay unmounted, the host's own copies live in its upper layer.
    key_file = authorized_keys_path(root, user)
    current_key = open(key_file, encoding="utf-8").read() if os.path.exists(key_file) else ""  # noqa: SIM115
    if pubkey and current_key != wanted_key:
        changed = True
        if not module.check_mode:
            stat = os.stat(os.path.dirname(key_file))
            write_file(
                root, f"/home/{user}/.ssh/authorized_keys", wanted_key, mode=0o600, owner=(stat.st_uid, stat.st_gid)
            )
    hosts_file = os.path.join(root, "etc/hosts")
    current_hosts = open(hosts_file, encoding="utf-8").read() if os.path.exists(hosts_file) else ""  # noqa: SIM115
    if current_hosts != wanted_hosts:
        changed = True
        if not module.check_mode:
            write_file(root, "/etc/hosts", wanted_hosts)
    return changed


def attach_extras(module: AnsibleModule, name: str, interfaces, pid: int, start: int, timeout: float) -> None:
    for index, iface in enumerate(interfaces[1:], start=1):
        veth = extra_veth_name(name, index)
        deadline = time.monotonic() + timeout
        while not os.path.exists(f"/sys/class/net/{veth}"):
            if time.monotonic() > deadline or not is_our_process(pid, start):
                raise LabError(f"extra interface {veth} of host {name} never appeared")
            time.sleep(0.1)
        for cmd in (
            ["ip", "link", "set", "dev", veth, "master", iface.bridge],
            ["ip", "link", "set", "dev", veth, "up"],
        ):
            rc, _out, err = module.run_command(cmd)
            if rc != 0:
                raise LabError(f"attaching {veth} of host {name} to bridge {iface.bridge} failed: {err.strip()}")


def stop(paths: Paths, record: dict, timeout: float) -> bool:
    """Shut the host down and unmount its overlay. Returns whether anything changed."""
    changed = False
    if record and is_our_process(record.get("pid"), record.get("start_time")):
        stop_process(record["pid"], record["start_time"], timeout)
        changed = True
    if is_mounted(paths.merged):
        # The container's last processes may hold the mount for a moment after nspawn exits.
        for attempt in range(30):
            try:
                unmount(paths.merged)
                break
            except subprocess.CalledProcessError:
                if attempt == 29:
                    raise
                time.sleep(0.2)
        changed = True
    if record:
        busy = remove_cgroups(record.get("cgroups", []))
        if busy:
            raise LabError(
                f"cgroups still busy after stopping {record['name']}: {', '.join(busy)}. A process of the host "
                f"survived its shutdown: list it with `cat {busy[0]}/cgroup.procs`, end it, then rerun."
            )
    return changed


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["started", "stopped", "absent"], default="started"),
            image=dict(type="path"),
            state_dir=dict(type="path", required=True),
            interfaces=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    bridge=dict(type="str", required=True),
                    address=dict(type="str", required=True),
                    gateway=dict(type="str"),
                ),
            ),
            operator_user=dict(type="str", default="enp"),
            ssh_public_key=dict(type="str", no_log=False),
            etc_hosts=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=90),
            wait_for_ssh=dict(type="bool", default=True),
            ip_forward=dict(type="bool", default=False),
        ),
        required_if=[("state", "started", ["image", "interfaces", "ssh_public_key"])],
        supports_check_mode=True,
    )
    params = module.params
    name = params["name"]
    paths = Paths(params["state_dir"], name)
    record = load_json(paths.record, None)
    timeout = float(params["wait_timeout"])

    try:
        check_name(name)
        if os.geteuid() != 0:
            raise LabError("lab hosts need root (mounts, cgroups, systemd-nspawn): run as root, e.g. sudo make lab-up.")
        if params["state"] in ("stopped", "absent"):
            running = bool(record) and is_our_process(record.get("pid"), record.get("start_time"))
            exists = record is not None or os.path.exists(paths.base)
            changed = running or is_mounted(paths.merged) or (params["state"] == "absent" and exists)
            if changed and not module.check_mode:
                stop(paths, record or {}, timeout)
                if params["state"] == "absent":
                    shutil.rmtree(paths.base)
                elif record:
                    record["pid"], record["start_time"] = None, None
                    write_json_atomic(paths.record, record)
            module.exit_json(changed=changed, name=name)

        interfaces = parse_interfaces(params["interfaces"])
        user = check_username(params["operator_user"])
        problems = find_clashes(other_hosts(params["state_dir"], name) + [HostSpec(name, interfaces)])
        if problems:
            raise LabError("; ".join(problems))
        wanted = [vars(i) for i in interfaces]
        if record and record["interfaces"] != wanted:
            raise LabError(
                f"host {name} exists with other interfaces ({record['interfaces']}); "
                "destroy it first (make lab-down) to recreate it with the new addresses."
            )
        if record and record.get("image") != params["image"]:
            module.warn(
                f"host {name} was created from {record.get('image')}, not the current golden image "
                f"{params['image']}; recreate it (make lab-down lab-up) to pick up the new image."
            )
        image = record["image"] if record else params["image"]
        running = bool(record) and is_our_process(record.get("pid"), record.get("start_time"))
        result = dict(changed=False, name=name, address=str(interfaces[0].ip), ssh_seconds=0.0)
        # Access and name resolution may change after creation (a new controller key, a new host):
        # rewrite them in the overlay, live if the host runs, and say so.
        if record and record.get("provisioned"):
            result["changed"] = refresh_access(module, paths, record, params["ssh_public_key"], params["etc_hosts"])
        if running:
            result["pid"] = record["pid"]
            if not ssh_answers(result["address"]) and not module.check_mode:
                deadline = time.monotonic() + timeout
                while not ssh_answers(result["address"]):
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"host {name} runs (PID {record['pid']}) but SSH on {result['address']}:22 "
                            f"does not answer. Console: {paths.log}"
                        )
                    time.sleep(0.25)
            module.exit_json(**result)
        result["changed"] = True
        if module.check_mode:
            module.exit_json(**result)

        if not os.path.isdir(os.path.join(image or "", "etc")):
            raise LabError(f"golden image {image} is missing; `make lab-up` builds it (role lab, enp_lab_image).")
        for iface in interfaces:
            if not os.path.exists(f"/sys/class/net/{iface.bridge}"):
                raise LabError(
                    f"bridge {iface.bridge} for host {name} does not exist; create the zone first "
                    "(make lab-up creates every zone of the inventory)."
                )

        # nspawn names the bridge side of host0 "vb-NAME": another lab's host of the same name would clash.
        if len(name) <= 12 and os.path.exists(f"/sys/class/net/vb-{name}"):
            raise LabError(
                f"interface vb-{name} already exists: another lab (or a molecule scenario) runs a host "
                f"named {name}. Host names must be unique on this machine; stop the other lab first."
            )
        for tool in ("systemd-nspawn", "ssh-keygen", "useradd", "mount"):
            if not module.get_bin_path(tool):
                raise LabError(f"{tool} is not installed on the controller: run `make setup`.")
        if not record:
            # Record before anything else exists, so an interrupted create is still torn down.
            record = dict(
                name=name,
                image=image,
                interfaces=wanted,
                user=user,
                provisioned=False,
                pid=None,
                start_time=None,
                cgroups=cgroup_dirs_for(name),
            )
            write_json_atomic(paths.record, record)
        if not is_mounted(paths.merged):
            mount_overlay(image, paths.upper, paths.work, paths.merged)
        if not record.get("provisioned"):
            provision(
                module,
                paths,
                name,
                interfaces,
                user,
                params["ssh_public_key"],
                params["etc_hosts"],
                params["ip_forward"],
            )
            record["provisioned"] = True
            write_json_atomic(paths.record, record)
        make_cgroups(record["cgroups"])
        started = time.monotonic()
        pid, start = launch_detached(nspawn_command(name, paths.merged, interfaces), paths.log, record["cgroups"])
        record["pid"], record["start_time"] = pid, start
        write_json_atomic(paths.record, record)
        attach_extras(module, name, interfaces, pid, start, timeout)
        if not params["wait_for_ssh"]:
            time.sleep(0.3)
            if not is_our_process(pid, start):
                raise LabError(f"host {name} stopped at once. Last console lines:\n{tail(paths.log)}")
            result.update(pid=pid)
            module.exit_json(**result)
        deadline = started + timeout
        while not ssh_answers(result["address"]):
            if not is_our_process(pid, start):
                raise LabError(f"host {name} stopped while booting. Last console lines:\n{tail(paths.log)}")
            if time.monotonic() > deadline:
                raise LabError(
                    f"host {name} did not answer SSH on {result['address']}:22 within {timeout:.0f}s. "
                    f"Console log: {paths.log}\n{tail(paths.log)}"
                )
            time.sleep(0.2)
        result.update(pid=pid, ssh_seconds=round(time.monotonic() - started, 2))
        module.exit_json(**result)
    except (LabError, OSError, subprocess.CalledProcessError, KeyError, StopIteration) as exc:
        detail = getattr(exc, "stderr", "") or ""
        module.fail_json(msg=f"lab host {name}: {exc} {detail}".strip())


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
