#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_image
short_description: Build and cache the golden Debian root filesystem that lab hosts boot from
description:
  - Runs C(debootstrap) once per suite and package list and caches the result under O(cache_dir).
  - The cached tree is read-only by convention; every lab host is an overlay on top of it.
  - Host SSH keys, machine id, apt lists and apt sources are removed from the image so each host
    gets its own identity and trusts only the project's baseline mirror.
options:
  cache_dir:
    description: Folder holding cached images (one sub-folder per cache key).
    type: path
    required: true
  suite:
    description: Debian suite of the estate's hosts.
    type: str
    default: bookworm
  variant:
    description: debootstrap variant.
    type: str
    default: minbase
  packages:
    description: Extra packages baked into the image (python3-apt is needed by the apt module offline).
    type: list
    elements: str
    default: [systemd, systemd-sysv, openssh-server, python3, python3-apt, iproute2, dbus, sudo]
  mirror:
    description:
      - Debian archive URL for debootstrap. Default is the archive the controller's own apt sources use.
    type: str
  security_updates:
    description:
      - Apply the suite's security and stable updates inside the new image before caching it, so
        hosts start patched and the first package run does not upgrade the whole base system.
    type: bool
    default: true
  state:
    description: V(present) builds the image if it is not cached; V(absent) deletes every cached image.
    type: str
    choices: [present, absent]
    default: present
author: enp contributors
"""

EXAMPLES = r"""
- name: Build the golden image
  enp_lab_image:
    cache_dir: "{{ enp_lab_cache_dir }}/images"
  register: golden

- name: Show where it is
  ansible.builtin.debug:
    msg: "{{ golden.rootfs }}"
"""

RETURN = r"""
rootfs:
  description: Path of the cached root filesystem.
  returned: when state=present
  type: str
key:
  description: Cache key derived from suite, variant and package list.
  returned: when state=present
  type: str
built_seconds:
  description: Time debootstrap took, 0 when the cache was used.
  returned: when state=present
  type: float
"""

import fcntl
import glob
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import (
    LabError,
    debian_mirrors,
    image_cache_key,
    parse_deb822_sources,
    parse_one_line_sources,
)

DEFAULT_PACKAGES = ["systemd", "systemd-sysv", "openssh-server", "python3", "python3-apt", "iproute2", "dbus", "sudo"]


def controller_debian_mirrors() -> tuple[str | None, str | None]:
    stanzas = []
    for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
        with open(path, encoding="utf-8") as handle:
            stanzas += parse_deb822_sources(handle.read())
    for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                stanzas += parse_one_line_sources(handle.read())
    return debian_mirrors(stanzas)


def scrub_image(rootfs: str) -> None:
    """Remove per-host identity and network trust from the image before it is cached."""
    for key in glob.glob(os.path.join(rootfs, "etc/ssh/ssh_host_*")):
        os.unlink(key)
    with open(os.path.join(rootfs, "etc/machine-id"), "w", encoding="utf-8"):
        pass  # empty: systemd makes a fresh id on each host's first boot
    dbus_id = os.path.join(rootfs, "var/lib/dbus/machine-id")
    if os.path.lexists(dbus_id):
        os.unlink(dbus_id)
    # Hosts have no DNS (no route out); the controller's resolver settings must not leak into them.
    with open(os.path.join(rootfs, "etc/resolv.conf"), "w", encoding="utf-8") as handle:
        handle.write("# lab hosts resolve names through /etc/hosts only\n")
    # Hosts must trust only the baseline mirror: no Debian archive sources in the image.
    for path in [os.path.join(rootfs, "etc/apt/sources.list")] + glob.glob(
        os.path.join(rootfs, "etc/apt/sources.list.d/*")
    ):
        if os.path.lexists(path):
            os.unlink(path)
    lists = os.path.join(rootfs, "var/lib/apt/lists")
    for entry in glob.glob(os.path.join(lists, "*")):
        if os.path.isfile(entry):
            os.unlink(entry)
    # An old mtime makes apt's cache_valid_time treat the empty cache as stale.
    os.utime(lists, (0, 0))
    shutil.rmtree(os.path.join(rootfs, "var/cache/apt/archives"), ignore_errors=True)
    os.makedirs(os.path.join(rootfs, "var/cache/apt/archives/partial"), exist_ok=True)


def apply_updates(module: AnsibleModule, rootfs: str, suite: str, mirror: str, security: str | None) -> str | None:
    """Upgrade the fresh image from SUITE-updates and SUITE-security; return an error text or None."""
    lines = [f"deb {mirror} {suite} {suite}-updates main"]
    if security:
        lines.append(f"deb {security} {suite}-security main")
    with open(os.path.join(rootfs, "etc/apt/sources.list"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    shutil.copy("/etc/resolv.conf", os.path.join(rootfs, "etc/resolv.conf"))
    env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    for cmd in (
        ["chroot", rootfs, "apt-get", "-q", "update"],
        ["chroot", rootfs, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade"],
        ["chroot", rootfs, "apt-get", "clean"],
    ):
        rc, out, err = module.run_command(cmd, environ_update=env)
        if rc != 0:
            return f"`{' '.join(cmd[2:])}` rc={rc}: " + "\n".join((out + err).splitlines()[-10:])
    return None


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            cache_dir=dict(type="path", required=True),
            suite=dict(type="str", default="bookworm"),
            variant=dict(type="str", default="minbase"),
            packages=dict(type="list", elements="str", default=DEFAULT_PACKAGES),
            mirror=dict(type="str"),
            security_updates=dict(type="bool", default=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    cache_dir = params["cache_dir"]

    if params["state"] == "absent":
        present = os.path.isdir(cache_dir) and bool(os.listdir(cache_dir))
        if present and not module.check_mode:
            shutil.rmtree(cache_dir)
        module.exit_json(changed=present)

    # revision 2: security updates applied at build time.
    key = image_cache_key(
        params["suite"], params["variant"], params["packages"], revision=2 if params["security_updates"] else 1
    )
    image_dir = os.path.join(cache_dir, f"{params['suite']}-{key}")
    rootfs = os.path.join(image_dir, "rootfs")
    result = dict(changed=False, rootfs=rootfs, key=key, built_seconds=0.0)
    if os.path.exists(os.path.join(image_dir, "COMPLETE")):
        module.exit_json(**result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)

    if os.geteuid() != 0:
        module.fail_json(msg="building the golden image needs root (debootstrap). Run as root, e.g. sudo make lab-up.")
    debootstrap = module.get_bin_path("debootstrap")
    if not debootstrap:
        module.fail_json(msg="debootstrap is not installed: run `make setup` (or apt-get install debootstrap).")
    default_main, default_security = controller_debian_mirrors()
    mirror = params["mirror"] or default_main
    if not mirror:
        module.fail_json(
            msg="no Debian mirror configured on this controller (no deb822 or sources.list entry "
            "for the Debian archive). Set enp_lab_debian_mirror in the inventory."
        )

    # Two labs (or a lab and a benchmark) may want the same image at once: one builds, the
    # other waits on the lock and then finds it cached.
    os.makedirs(cache_dir, exist_ok=True)
    lock = open(image_dir + ".lock", "w", encoding="utf-8")  # noqa: SIM115 - held until the module exits
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(os.path.join(image_dir, "COMPLETE")):
        module.exit_json(**result)
    # Build beside the final path and rename, so an interrupted build never looks cached.
    building = image_dir + ".building"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    started = time.monotonic()
    cmd = [
        debootstrap,
        f"--variant={params['variant']}",
        f"--include={','.join(params['packages'])}",
        params["suite"],
        os.path.join(building, "rootfs"),
        mirror,
    ]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        tail = "\n".join((out + err).splitlines()[-20:])
        shutil.rmtree(building, ignore_errors=True)
        module.fail_json(
            msg=f"debootstrap of {params['suite']} from {mirror} failed (rc={rc}). "
            "Check that the controller reaches its Debian mirror, then rerun.",
            stderr=tail,
        )
    if params["security_updates"]:
        error = apply_updates(module, os.path.join(building, "rootfs"), params["suite"], mirror, default_security)
        if error:
            shutil.rmtree(building, ignore_errors=True)
            module.fail_json(
                msg=f"updating the new {params['suite']} image failed: {error}. "
                "Check the controller reaches its Debian mirrors, or set security_updates=false."
            )
    try:
        scrub_image(os.path.join(building, "rootfs"))
    except (OSError, LabError) as exc:
        shutil.rmtree(building, ignore_errors=True)
        module.fail_json(msg=f"cleaning the new image failed: {exc}")
    with open(os.path.join(building, "COMPLETE"), "w", encoding="utf-8") as handle:
        handle.write(f"suite={params['suite']}\nmirror={mirror}\npackages={','.join(sorted(params['packages']))}\n")
    shutil.rmtree(image_dir, ignore_errors=True)
    os.rename(building, image_dir)
    result["built_seconds"] = round(time.monotonic() - started, 1)
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
