#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_baseline_capture
short_description: Capture a host's known-good baseline manifest (packages, file hashes, persistence points)
description:
  - Runs on the managed host and only reads the system. Writes one manifest in the format C(enp-baseline/1)
    (docs/baselines.md) as canonical JSON to O(dest), ready to be fetched and signed on the controller, and
    returns its statistics.
  - The sections are packages (from the dpkg status file), files (type, mode, owner, size, sha256 over O(paths)
    without O(skip_paths)), suid, units (state read from the wants/ symlinks), users, groups, sudoers,
    authorized_keys, cron (and at jobs), listeners, kernel_modules, preload (C(/etc/ld.so.preload)), pam,
    nftables, nginx, postgresql (roles, tables, functions, triggers, extensions, pg_hba.conf).
  - With O(root) set to the mount point of a disk image (read-only is enough), captures that image for
    forensics; the sections that only exist on a running system are then skipped, each with its reason in
    C(stats.skipped).
  - Incremental hashing, with a cache on the host (O(cache_path)) keyed by path with device, inode, size, mtime and
    ctime lets a second capture read only the files that changed.
  - Changed only when the manifest's content (everything but the capture time and statistics) differs from
    the one already at O(dest); an unchanged host keeps its file. In check mode it collects everything and
    reports whether the manifest would change, but writes neither the manifest nor the cache.
options:
  dest:
    description: Path on the host of the manifest to write (parent directories are created 0700).
    type: path
    required: true
  host:
    description: Name of the host in the manifest (the inventory name).
    type: str
    required: true
  roles:
    description: The host's roles (inventory groups) recorded in the manifest.
    type: list
    elements: str
    default: []
  root:
    description: Root of the system to capture; C(/) for the live host, or the mount point of a disk image.
    type: path
    default: /
  paths:
    description: Trees whose files are listed and hashed (paths inside O(root)).
    type: list
    elements: str
    default: [/usr/bin, /usr/sbin, /usr/lib, /usr/local, /etc, /boot, /opt]
  skip_paths:
    description:
      - Subtrees or files left out of the file scan. A plain path excludes itself and everything below it;
        a shell glob (C(*), C(?), C([...])) is matched against the whole path.
    type: list
    elements: str
    default: []
  suid_paths:
    description:
      - Where the C(suid) section also looks for setuid/setgid files outside O(paths), by metadata only (one
        lstat per file, nothing hashed), so a SUID shell dropped in C(/var/tmp), C(/dev/shm) or a web root is
        found even where no file is hashed.
    type: list
    elements: str
    default: [/]
  suid_skip_paths:
    description: Trees the setid sweep does not enter (besides O(paths), already scanned, and O(skip_paths)).
    type: list
    elements: str
    default: [/proc, /sys]
  sections:
    description: Sections to collect; the others are listed in C(stats.skipped) as not requested.
    type: list
    elements: str
    default: [packages, files, suid, units, users, groups, sudoers, authorized_keys, cron, listeners,
              kernel_modules, preload, pam, nftables, nginx, postgresql]
    choices: [packages, files, suid, units, users, groups, sudoers, authorized_keys, cron, listeners,
              kernel_modules, preload, pam, nftables, nginx, postgresql]
  keep_unchanged:
    description:
      - Keep the manifest already at O(dest) when its content is the same (its timestamp stays). Set it to
        false for a live capture that is compared with a baseline (the file is then always rewritten), so a
        forged file left on the host is never what the controller fetches.
    type: bool
    default: true
  cache_path:
    description:
      - sqlite3 hash cache on the host. Empty string disables the cache (every file is read).
      - Keep it outside O(paths), or its own changes show up in the manifest.
    type: str
    default: /var/lib/enp/baseline/hashcache.sqlite
  live:
    description:
      - Whether O(root) is the running system (listeners, kernel modules, nftables and PostgreSQL are then
        captured). Default is true exactly when O(root) resolves to C(/).
    type: bool
author: enp contributors
"""

EXAMPLES = r"""
- name: Capture the known-good baseline of this host
  enp_baseline_capture:
    dest: /var/lib/enp/baseline/baseline.json
    host: "{{ inventory_hostname }}"
    roles: "{{ group_names }}"
    paths: [/usr/bin, /usr/sbin, /usr/lib, /etc, /opt/civic-services]
    skip_paths: [/usr/share/doc, /usr/lib/python3/dist-packages/*/__pycache__]
  become: true

- name: Capture a suspect disk image mounted read-only on a forensics host (no cache, no live sections)
  enp_baseline_capture:
    dest: /srv/forensics/web1.json
    host: web1
    root: /mnt/web1-image
    cache_path: ""
"""

RETURN = r"""
dest:
  description: Path of the manifest on the host.
  returned: always
  type: str
captured_at:
  description: Capture time (ISO 8601 UTC) of the manifest now at O(dest); the earlier one when nothing changed.
  returned: always
  type: str
content_sha256:
  description: sha256 of the manifest's content without its capture time and statistics.
  returned: always
  type: str
stats:
  description:
    - files, hashed, reused (from the cache), bytes_hashed, seconds, files_per_second, container,
      skipped (section -> reason), notes (section -> remark), errors and error_examples when some files could
      not be read, missing_paths (configured trees that do not exist).
  returned: always
  type: dict
counts:
  description: Number of entries per captured section.
  returned: always
  type: dict
  sample: {packages: 412, files: 48211, suid: 14, units: 231, users: 27}
container:
  description: C(none) or the container manager of the live host (C(systemd-nspawn) in the lab).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_baseline_collect import (
    SECTIONS,
    HashCache,
    capture,
    save_manifest,
    section_counts,
)

DEFAULT_PATHS = ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/local", "/etc", "/boot", "/opt"]


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            host=dict(type="str", required=True),
            roles=dict(type="list", elements="str", default=[]),
            root=dict(type="path", default="/"),
            paths=dict(type="list", elements="str", default=DEFAULT_PATHS),
            skip_paths=dict(type="list", elements="str", default=[]),
            suid_paths=dict(type="list", elements="str", default=["/"]),
            suid_skip_paths=dict(type="list", elements="str", default=["/proc", "/sys"]),
            sections=dict(type="list", elements="str", default=list(SECTIONS), choices=list(SECTIONS)),
            cache_path=dict(type="str", default="/var/lib/enp/baseline/hashcache.sqlite"),
            live=dict(type="bool"),
            keep_unchanged=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    cache = None
    if params["cache_path"]:
        try:
            cache = HashCache(params["cache_path"], writable=not module.check_mode)
        except OSError as exc:
            module.fail_json(
                msg=f"cannot open the hash cache {params['cache_path']}: {exc}; set cache_path: '' to run without it"
            )
    committed = False
    try:
        manifest = capture(
            host=params["host"],
            roles=params["roles"],
            root=params["root"],
            paths=params["paths"],
            skip_paths=params["skip_paths"],
            suid_paths=params["suid_paths"],
            suid_skip_paths=params["suid_skip_paths"],
            sections=params["sections"],
            cache=cache,
            live=params["live"],
        )
        changed, digest, captured_at = save_manifest(
            manifest, params["dest"], check_mode=module.check_mode, keep_unchanged=params["keep_unchanged"]
        )
        if cache is not None:
            cache.close(commit=True)
            committed = True
    except OSError as exc:
        module.fail_json(
            msg=f"baseline capture of {params['root']} failed: {exc} (is the directory of {params['dest']} writable?)"
        )
    except ValueError as exc:
        module.fail_json(msg=f"baseline capture of {params['root']} failed on unexpected data: {exc}")
    finally:
        if cache is not None and not committed:
            cache.close(commit=False)
    module.exit_json(
        changed=changed,
        dest=params["dest"],
        captured_at=captured_at,
        content_sha256=digest,
        stats=manifest["stats"],
        counts=section_counts(manifest),
        container=manifest["stats"]["container"],
    )


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
