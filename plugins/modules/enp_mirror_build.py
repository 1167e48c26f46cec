#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_mirror_build
short_description: Lock and publish the estate's offline, signed baseline apt mirror
description:
  - V(lock) resolves the manifest's packages (plus their dependencies, and optionally updates of the golden
    image's own packages) against the golden image's dpkg status with the controller's C(apt-get), and writes
    every resolved C(.deb) with version, sha256 and size (taken from Debian's signed indexes) to the lock.
  - V(build) downloads exactly the locked C(.deb)s into O(cache_dir) (only those missing there) with
    C(apt-get download name=version) - the lock is the full closure, so nothing is resolved and the golden image has no
    say in what is fetched. Each file's sha256 and size are checked against the lock before it enters the cache.
    Then it indexes them with C(apt-ftparchive), signs the Release file (C(InRelease) and C(Release.gpg)) with a key
    in O(gnupg_home) (an ed25519 key is generated there if none carries O(key_uid)), exports the public key into
    the tree and publishes the tree at O(dest).
  - A lock is stale when a locked version must be downloaded but Debian no longer serves it (Debian keeps only
    the newest version in C(<suite>-updates) and C(<suite>-security)). O(on_stale_lock) decides what happens then.
  - apt runs with private C(Dir::) settings only (own sources, lists, cache, a copy of the image's dpkg status,
    no controller apt.conf.d except proxy settings), so the controller's and the image's apt state are never touched.
  - Idempotent; a stamp in O(dest) records a hash of lock, key fingerprint and suite plus a hash of every
    published file, so a second run is C(changed=false) and an edited or damaged tree is republished.
options:
  mode:
    description: V(lock) rewrites O(lock) from O(manifest); V(build) publishes the mirror from O(lock).
    type: str
    choices: [build, lock]
    default: build
  manifest:
    description: The top-level package manifest (C(baseline/packages.yml)).
    type: path
    required: true
  lock:
    description: The lock file (C(baseline/packages.lock)); written in V(lock) mode, read in V(build) mode.
    type: path
    required: true
  image:
    description:
      - Golden image root filesystem. Only its C(var/lib/dpkg/status) is read (a copy is used).
      - Needed in V(lock) mode and with O(on_stale_lock=relock). In V(build) mode it is otherwise only compared
        with the lock's C(image-status-sha256); a difference is a warning (RV(image_matches_lock)), not a failure.
    type: path
  cache_dir:
    description: Download cache for C(.deb)s, reused across runs; apt's private state lives in C(.apt/) below it.
    type: path
    default: ~/.cache/enp/debs
  dest:
    description: Directory the mirror is published in (C(dists/), C(pool/), public key). Required for V(build).
    type: path
  gnupg_home:
    description:
      - Controller-only GnuPG home holding the signing key. Required for V(build).
      - Never copy it to a host; hosts get only the exported public key.
    type: path
  key_uid:
    description: User id of the signing key; a key with this uid is generated if the home has none.
    type: str
    default: enp baseline mirror (lab) <mirror@enp.invalid>
  key_fingerprint:
    description: Sign with this key instead of the one found by O(key_uid).
    type: str
  suite:
    description: Suite (and codename) of the published mirror, as hosts name it in their sources.
    type: str
    default: enp-bookworm
  origin:
    description: C(Origin) field of the published Release file.
    type: str
    default: enp
  label:
    description: C(Label) field of the published Release file.
    type: str
    default: enp baseline
  debian_mirror:
    description:
      - Debian archive URI to resolve and download from.
      - Default is the URI the controller's own apt sources use for the Debian release.
    type: str
  debian_security_mirror:
    description: Debian security archive URI; default from the controller's own apt sources.
    type: str
  debian_keyring:
    description: Keyring that signs the Debian archive (the private sources use it as C(Signed-By)).
    type: path
    default: /usr/share/keyrings/debian-archive-keyring.gpg
  on_stale_lock:
    description:
      - What a V(build) does when the lock is stale (locked versions to download that Debian no longer serves).
      - V(fail) (the default, and what production uses) refuses, naming the versions and telling the operator to
        run C(make mirror-lock), review and commit the lock.
      - V(relock) (for throwaway lab builds; the lab role passes it) resolves a fresh lock of the whole manifest
        against O(image) and Debian now, writes it to O(effective_lock) - never to O(lock) - builds the mirror from
        it and returns RV(stale_lock=true), RV(relock_changes) and RV(stale_lock_warning). Later builds reuse that
        effective lock while O(lock) and the manifest are unchanged. Needs O(image) and O(effective_lock).
    type: str
    choices: [fail, relock]
    default: fail
  effective_lock:
    description:
      - Where O(on_stale_lock=relock) writes the fresh lock, e.g. C({{ lab_state_dir }}/packages.effective.lock).
        Must not be O(lock). Removed again once O(lock) builds without relocking.
    type: path
author: enp contributors
notes:
  - Needs C(apt-get), C(apt-ftparchive) (package apt-utils), C(gpg) and C(gpgv) on the controller.
  - The signing key has no passphrase so that rebuilds run unattended; protect O(gnupg_home) like any secret.
  - Check mode never writes the lock, the mirror or the key. In V(lock) mode it still refreshes the private
    Debian indexes under O(cache_dir) (resolving needs them); nothing outside O(cache_dir) is touched.
  - Runs for the same O(cache_dir) are serialised with a lock file (C(.enp-mirror.lock)).
  - A build with a warm O(cache_dir) needs no network at all, even for a lock Debian has moved past.
  - Every gpg and gpgv call names its home (O(gnupg_home), or a temporary one for gpgv), so the controller user's
    C(~/.gnupg) is never read or created.
"""

EXAMPLES = r"""
- name: Re-lock the baseline after editing baseline/packages.yml
  enp_mirror_build:
    mode: lock
    manifest: "{{ playbook_dir }}/../baseline/packages.yml"
    lock: "{{ playbook_dir }}/../baseline/packages.lock"
    image: "{{ golden.rootfs }}"

- name: Publish the signed baseline mirror, refusing a stale lock
  enp_mirror_build:
    manifest: "{{ playbook_dir }}/../baseline/packages.yml"
    lock: "{{ playbook_dir }}/../baseline/packages.lock"
    image: "{{ golden.rootfs }}"
    dest: "{{ enp_lab_state_dir }}/mirror"
    gnupg_home: "{{ enp_lab_state_dir }}/mirror-gnupg"
  register: enp_mirror

- name: Publish the lab mirror, relocking (unreviewed, outside the repository) if Debian moved past the lock
  enp_mirror_build:
    manifest: "{{ playbook_dir }}/../baseline/packages.yml"
    lock: "{{ playbook_dir }}/../baseline/packages.lock"
    image: "{{ golden.rootfs }}"
    dest: "{{ enp_lab_state_dir }}/mirror"
    gnupg_home: "{{ enp_lab_state_dir }}/mirror-gnupg"
    on_stale_lock: relock
    effective_lock: "{{ enp_lab_state_dir }}/packages.effective.lock"
  register: enp_mirror
"""

RETURN = r"""
fingerprint:
  description: Fingerprint of the signing key (None in check mode when the key does not exist yet).
  returned: mode=build
  type: str
packages:
  description: Number of C(.deb)s in the lock (and in the mirror).
  returned: always
  type: int
bytes:
  description: Total size of those C(.deb)s.
  returned: always
  type: int
mirror:
  description: Path of the published mirror tree.
  returned: mode=build
  type: str
public_key:
  description: Binary OpenPGP keyring in the mirror tree, for C(Signed-By).
  returned: mode=build
  type: str
public_key_asc:
  description: Armored public key in the mirror tree.
  returned: mode=build
  type: str
public_key_armored:
  description: The armored public key text (give it to the apt_baseline role as C(apt_baseline_key)).
  returned: mode=build, when the key exists
  type: str
downloaded:
  description: Number of C(.deb)s downloaded in this run (0 when the cache was warm).
  returned: mode=build
  type: int
lock_changes:
  description: Packages added, removed and with changed versions compared with the previous lock.
  returned: mode=lock
  type: dict
lock_used:
  description: The lock the mirror was built from (O(lock), or O(effective_lock) when the lock was stale).
  returned: mode=build
  type: str
stale_lock:
  description: Whether the mirror was built from an effective lock because O(lock) is stale.
  returned: mode=build
  type: bool
stale_packages:
  description: C(name=version) pins of O(lock) that Debian no longer serves.
  returned: mode=build, when stale_lock
  type: list
  elements: str
relock_changes:
  description: C(name old -> new) for every package the effective lock changes compared with O(lock).
  returned: mode=build, when stale_lock
  type: list
  elements: str
  sample: ["libssl3 3.0.22-1~deb12u2 -> 3.0.23-1~deb12u1", "newdep (none) -> 1.0-1"]
stale_lock_warning:
  description: Text for the operator - the repository's lock is stale; review and commit with C(make mirror-lock).
  returned: mode=build, when stale_lock
  type: str
image_matches_lock:
  description: Whether O(image) is the golden image the lock was resolved against (null when unknown).
  returned: mode=build
  type: bool
seconds:
  description: Wall-clock time of the run.
  returned: always
  type: float
"""

import fcntl
import glob
import gzip
import hashlib
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import (
    debian_mirrors,
    load_json,
    parse_deb822_sources,
    parse_one_line_sources,
    write_json_atomic,
)
from ansible.module_utils.enp_mirror import (
    EFFECTIVE_LOCK_HEADER,
    MAKE_RELOCK,
    SUITE_RE,
    LockEntry,
    Manifest,
    MirrorError,
    StaleLockError,
    apt_problems,
    check_files,
    debian_sources,
    effective_lock_applies,
    entries_from_records,
    fetch_list,
    format_lock,
    gpgv_command,
    image_matches_lock,
    inputs_digest,
    installed_packages,
    lock_changes,
    parse_control,
    parse_lock,
    parse_madison,
    parse_manifest,
    parse_secret_keys,
    parse_simulation,
    pick_signing_key,
    private_apt_conf,
    proxy_settings,
    release_options,
    relock_changes,
    sha256_file,
    stale_entries,
    stale_lock_failure,
    stale_lock_warning,
    tree_digest,
    unavailable_pins,
)

STAMP = ".enp-mirror-stamp.json"
KEY_BASENAME = "enp-baseline-keyring"
RELOCK = f"Review baseline/packages.yml and re-lock with `{MAKE_RELOCK}`, then review and commit the lock diff."
DOWNLOAD_DIR = ".download"  # below cache_dir: apt-get download lands here; only verified files move up


class Tools:
    """Runs the controller's tools with a fixed environment and turns failures into operator messages."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module

    def run(
        self,
        args: list[str],
        what: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        ok_rc: tuple[int, ...] = (0,),
        data: str | None = None,
    ) -> tuple[int, str, str]:
        environ = {"LC_ALL": "C", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
        environ.update(env or {})
        rc, out, err = self.module.run_command(
            args, environ_update=environ, cwd=cwd, data=data, binary_data=data is not None
        )
        if rc not in ok_rc:
            detail = "\n".join((err or out).strip().splitlines()[-15:])
            raise MirrorError(f"{what} failed (`{' '.join(args[:4])} ...`, exit {rc}):\n{detail}")
        return rc, out, err


class PrivateApt:
    """The controller's apt-get/apt-cache with every Dir:: in ROOT (see private_apt_conf)."""

    def __init__(
        self,
        tools: Tools,
        root: str,
        archives: str,
        image: str | None,
        manifest: Manifest,
        main_uri: str,
        security_uri: str,
        keyring: str,
    ) -> None:
        self.tools, self.root, self.archives, self.image = tools, root, archives, image
        self.manifest = manifest
        self.main_uri, self.security_uri, self.keyring = main_uri, security_uri, keyring
        self.conf = os.path.join(root, "apt.conf")
        self.status = os.path.join(root, "state", "status")

    def prepare(self) -> None:
        for sub in ("etc/empty.d", "state/lists/partial", "cache", "log"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        if self.image:
            # A copy: apt locks and may write next to Dir::State::status; the image must stay pristine.
            shutil.copyfile(image_status(self.image), self.status)
        else:
            write_text(self.status, "")  # downloading by exact pin needs no installed-package state
        sources = os.path.join(self.root, "etc", "debian.sources")
        write_text(
            sources,
            debian_sources(
                self.main_uri, self.security_uri, self.manifest.suite, self.manifest.components, self.keyring
            ),
        )
        _rc, dump, _err = self.tools.run(["apt-config", "dump"], "reading the controller's apt proxy settings")
        write_text(
            self.conf,
            private_apt_conf(
                self.root,
                self.status,
                self.archives,
                sources,
                self.manifest.architecture,
                self.manifest.install_recommends,
                proxy_settings(dump),
            ),
        )

    def run(
        self, args: list[str], what: str, ok_rc: tuple[int, ...] = (0,), cwd: str | None = None
    ) -> tuple[int, str, str]:
        return self.tools.run(args, what, env={"APT_CONFIG": self.conf}, ok_rc=ok_rc, cwd=cwd)

    def update(self) -> None:
        _rc, _out, err = self.run(["apt-get", "-q", "update"], f"apt-get update from {self.main_uri}")
        problems = apt_problems(err)
        if problems:
            raise MirrorError(
                f"apt-get update from {self.main_uri} and {self.security_uri} reported problems; "
                "the lock and the downloads must come from complete, signed indexes:\n" + "\n".join(problems)
            )

    def simulate(self, names: list[str], what: str) -> str:
        rc, out, err = self.run(["apt-get", "-s", "-q", "install", *names], what, ok_rc=(0, 100))
        if rc != 0:
            missing = unavailable_pins(out + err)
            if missing:
                raise MirrorError(
                    f"{what}: Debian no longer serves {', '.join(missing)} (a point release or a "
                    f"security update replaced it, or the name is wrong). {RELOCK}"
                )
            raise MirrorError(f"{what}: apt cannot resolve the set:\n{(err or out).strip()}")
        return out

    def records(self, pins: list[str]) -> list[dict[str, str]]:
        _rc, out, _err = self.run(["apt-cache", "show", *pins], "reading sha256 sums from the Debian indexes")
        return parse_control(out)

    def available(self, names: list[str]) -> dict[str, set[str]]:
        """name -> versions the Debian indexes serve now (madison reads only the fetched indexes)."""
        _rc, out, _err = self.run(["apt-cache", "madison", *sorted(set(names))], "listing available versions")
        return parse_madison(out)

    def download(self, entries: list[LockEntry], into: str) -> None:
        """`apt-get download name=version` of exactly these entries into INTO: no resolution, no dpkg state."""
        rc, out, err = self.run(
            ["apt-get", "-q", "download", *[e.pin for e in entries]],
            "downloading the locked .debs",
            ok_rc=(0, 100),
            cwd=into,
        )
        if rc != 0:
            missing = set(unavailable_pins(out + err))
            stale = [e for e in entries if e.pin in missing or e.name in missing]
            if stale:
                raise StaleLockError(stale)
            raise MirrorError(f"downloading the locked .debs failed:\n{(err or out).strip()[-2000:]}")


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def image_status(image: str | None) -> str:
    status = os.path.join(image or "", "var", "lib", "dpkg", "status")
    if not image or not os.path.isfile(status):
        raise MirrorError(
            f"golden image '{image}' has no var/lib/dpkg/status: build it first (`make mirror-lock` or "
            "`make lab-up` build and cache it) and pass its rootfs as `image`."
        )
    return status


def controller_mirrors(params: dict) -> tuple[str, str]:
    """Debian archive URIs: the parameters, else what the controller's own apt sources use."""
    stanzas: list[dict[str, str]] = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        stanzas += parse_one_line_sources(read_text(path) or "")
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        stanzas += parse_deb822_sources(read_text(path) or "")
    main, security = debian_mirrors(stanzas)
    main = (params["debian_mirror"] or main or "").rstrip("/")
    security = (params["debian_security_mirror"] or security or "").rstrip("/")
    if not main or not security:
        raise MirrorError(
            "cannot tell which Debian archive to use: the controller's apt sources have no "
            f"{'Debian release' if not main else 'security'} entry. Set debian_mirror and "
            "debian_security_mirror (e.g. your organisation's Debian mirror or proxy)."
        )
    return main, security


def make_apt(module: AnsibleModule, manifest: Manifest, image: str | None) -> PrivateApt:
    """A prepared, updated private apt; IMAGE's dpkg status is what resolution is relative to (None: empty)."""
    params = module.params
    main, security = controller_mirrors(params)
    if not os.path.isfile(params["debian_keyring"]):
        raise MirrorError(
            f"Debian archive keyring {params['debian_keyring']} is missing: "
            "apt-get install debian-archive-keyring on the controller."
        )
    apt = PrivateApt(
        Tools(module),
        os.path.join(params["cache_dir"], ".apt"),
        params["cache_dir"],
        image,
        manifest,
        main,
        security,
        params["debian_keyring"],
    )
    apt.prepare()
    apt.update()
    return apt


def load_manifest(path: str) -> Manifest:
    try:
        import yaml
    except ImportError as exc:
        raise MirrorError("PyYAML is missing on the controller: apt-get install python3-yaml") from exc
    text = read_text(path)
    if text is None:
        raise MirrorError(f"baseline manifest {path} does not exist")
    try:
        return parse_manifest(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise MirrorError(f"baseline manifest {path} is not valid YAML: {exc}") from exc


# ---------------------------------------------------------------- lock mode


def resolve_lock(apt: PrivateApt, manifest: Manifest, status_path: str) -> tuple[list[LockEntry], dict[str, str]]:
    """Resolve the manifest (plus image upgrades) against the image's dpkg status: entries and lock header."""
    names = list(manifest.packages)
    if manifest.include_image_upgrades:
        installed = installed_packages(read_text(status_path) or "")
        names += sorted(set(installed) - set(names))
    resolved = parse_simulation(apt.simulate(names, "resolving the baseline against the golden image"))
    entries = entries_from_records(resolved, apt.records([f"{n}={v}" for n, v, _a in resolved]))
    if not entries:
        raise MirrorError(
            "resolving the baseline gave no packages at all (the golden image already has every one at the "
            "newest version?): an empty mirror is not a baseline. Check baseline/packages.yml and the image."
        )
    meta = {
        "suite": manifest.suite,
        "architecture": manifest.architecture,
        "manifest-sha256": manifest.digest(),
        "image-status-sha256": sha256_file(status_path),
    }
    return entries, meta


def do_lock(module: AnsibleModule, manifest: Manifest) -> dict:
    params = module.params
    status_path = image_status(params["image"])
    apt = make_apt(module, manifest, params["image"])
    entries, meta = resolve_lock(apt, manifest, status_path)
    text = format_lock(entries, meta)
    old_text = read_text(params["lock"]) or ""
    try:
        old_entries = parse_lock(old_text)[1] if old_text else []
    except MirrorError as exc:
        module.warn(f"the previous lock could not be read ({exc}); it is replaced as a whole")
        old_entries = []
    changed = text != old_text
    if changed and not module.check_mode:
        write_text(params["lock"], text)
    result = dict(
        changed=changed,
        packages=len(entries),
        bytes=sum(e.size for e in entries),
        lock=params["lock"],
        lock_changes=lock_changes(old_entries, entries),
    )
    if module._diff:
        result["diff"] = dict(before=old_text, after=text, before_header=params["lock"], after_header=params["lock"])
    return result


# ---------------------------------------------------------------- build mode


def gpg_base(home: str) -> list[str]:
    return ["gpg", "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]


def find_key(tools: Tools, home: str, uid: str, fingerprint: str | None) -> str | None:
    if not os.path.isdir(home):
        if fingerprint:
            raise MirrorError(f"GnuPG home {home} does not exist, so signing key {fingerprint} is not there.")
        return None
    _rc, out, _err = tools.run(
        [*gpg_base(home), "--with-colons", "--list-secret-keys"], f"listing signing keys in {home}", ok_rc=(0, 2)
    )
    key = pick_signing_key(parse_secret_keys(out), uid, fingerprint)
    return key.fingerprint if key else None


def ensure_key(tools: Tools, home: str, uid: str, fingerprint: str | None) -> tuple[str, bool]:
    found = find_key(tools, home, uid, fingerprint)
    if found:
        return found, False
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    tools.run(
        [*gpg_base(home), "--quick-generate-key", uid, "ed25519", "sign", "never"],
        f"generating the mirror signing key in {home}",
    )
    found = find_key(tools, home, uid, None)
    if not found:
        raise MirrorError(f"generated a signing key in {home} but cannot find it again by uid '{uid}'")
    return found, True


def published_files(root: str) -> list[tuple[str, str]]:
    files = []
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(current, name)
            rel = os.path.relpath(path, root)
            if rel != STAMP:
                files.append((rel, sha256_file(path)))
    return files


def cached_files(cache_dir: str, entries: list[LockEntry]) -> dict[str, tuple[str, int]]:
    observed = {}
    for entry in entries:
        path = os.path.join(cache_dir, entry.filename)
        if os.path.isfile(path):
            size = os.path.getsize(path)
            observed[entry.filename] = (sha256_file(path) if size == entry.size else "size-differs", size)
    return observed


class AptOnDemand:
    """One private apt per run, prepared and updated (network) only when something must be fetched or resolved."""

    def __init__(self, module: AnsibleModule, manifest: Manifest, image: str | None) -> None:
        self.module, self.manifest, self.image = module, manifest, image
        self.apt: PrivateApt | None = None

    def get(self) -> PrivateApt:
        if self.apt is None:
            self.apt = make_apt(self.module, self.manifest, self.image)
        return self.apt


def fetch_debs(module: AnsibleModule, apts: AptOnDemand, entries: list[LockEntry]) -> int:
    """Make cache_dir hold exactly the locked bytes of every entry; download only what is missing.

    The lock is the full closure: each missing entry is fetched by its exact pin (`apt-get download`),
    never resolved, so what the golden image has installed cannot change what is fetched. Raises
    StaleLockError, before downloading anything, when Debian no longer serves a version to fetch.
    """
    cache_dir = module.params["cache_dir"]
    os.makedirs(cache_dir, exist_ok=True)
    observed = cached_files(cache_dir, entries)
    todo = fetch_list(entries, observed)
    if not todo:
        return 0
    for entry in todo:
        if entry.filename in observed:
            module.warn(f"cached {entry.filename} does not match the lock's sha256/size; downloading it again")
            os.unlink(os.path.join(cache_dir, entry.filename))
    apt = apts.get()
    stale = stale_entries(todo, apt.available([e.name for e in todo]))
    if stale:
        raise StaleLockError(stale)
    # Into an empty folder first: only files whose bytes match the lock ever enter the cache.
    staging = os.path.join(cache_dir, DOWNLOAD_DIR)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        apt.download(todo, staging)
        got = check_files(todo, cached_files(staging, todo))
        if got.missing:
            raise MirrorError(
                f"apt-get download finished but {len(got.missing)} locked .debs did not arrive: "
                f"{', '.join(e.filename for e in got.missing[:10])}"
            )
        if got.mismatched:
            raise MirrorError(
                "Debian served files whose sha256 or size differs from the lock for the same version: "
                f"{', '.join(e.filename for e in got.mismatched)}. That must not happen for a published "
                "version: do not publish; check the Debian mirror/proxy in use, then re-lock only if the "
                "change is explained."
            )
        for entry in got.ok:
            os.replace(os.path.join(staging, entry.filename), os.path.join(cache_dir, entry.filename))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(todo)


def load_effective_lock(params: dict, repo_sha: str, manifest: Manifest) -> tuple[str, list[LockEntry]] | None:
    """The effective lock of an earlier relock, if it was made for this very repository lock and manifest."""
    text = read_text(params["effective_lock"]) if params["effective_lock"] else None
    if text is None:
        return None
    try:
        meta, entries = parse_lock(text)
    except MirrorError:
        return None
    if not entries or not effective_lock_applies(meta, repo_sha, manifest.digest()):
        return None
    return text, entries


def relock_into_effective(
    module: AnsibleModule, manifest: Manifest, apts: AptOnDemand, repo_sha: str, stale: list[str]
) -> tuple[str, list[LockEntry]]:
    """Resolve a fresh lock of the whole manifest and write it to effective_lock (never to lock)."""
    params = module.params
    entries, meta = resolve_lock(apts.get(), manifest, image_status(params["image"]))
    meta["replaces-lock-sha256"] = repo_sha
    meta["stale-packages"] = " ".join(stale)
    text = format_lock(entries, meta, header=EFFECTIVE_LOCK_HEADER)
    write_text(params["effective_lock"], text)
    return text, entries


def drop_obsolete_effective_lock(module: AnsibleModule) -> None:
    """Once the repository lock builds as it is, an older effective lock only misleads: remove it."""
    path = module.params["effective_lock"]
    text = read_text(path) if path else None
    if text is None:
        return
    try:
        meta = parse_lock(text)[0]
    except MirrorError:
        meta = {}
    if "replaces-lock-sha256" in meta:
        os.unlink(path)
    else:
        module.warn(f"{path} is not an effective lock written by this module; left alone")


def sign_and_export(tools: Tools, home: str, fingerprint: str, stage: str, dist: str) -> None:
    release = os.path.join(dist, "Release")
    base = [*gpg_base(home), "--local-user", fingerprint, "--digest-algo", "SHA512", "--yes"]
    tools.run([*base, "--clearsign", "--output", os.path.join(dist, "InRelease"), release], "signing InRelease")
    tools.run(
        [*base, "--armor", "--detach-sign", "--output", os.path.join(dist, "Release.gpg"), release],
        "signing Release.gpg",
    )
    binary = os.path.join(stage, f"{KEY_BASENAME}.gpg")
    tools.run([*gpg_base(home), "--yes", "--output", binary, "--export", fingerprint], "exporting the public key")
    armored = os.path.join(stage, f"{KEY_BASENAME}.asc")
    tools.run(
        [*gpg_base(home), "--yes", "--armor", "--output", armored, "--export", fingerprint],
        "exporting the armored public key",
    )
    # Check what hosts will check: both signatures verify with the exported key alone. gpgv gets an empty home
    # of its own, so neither ~/.gnupg nor the signing home's keyrings take part.
    verify_home = tempfile.mkdtemp(prefix="enp-gpgv-")
    try:
        tools.run(gpgv_command(verify_home, binary, os.path.join(dist, "InRelease")), "verifying InRelease")
        tools.run(
            gpgv_command(verify_home, binary, os.path.join(dist, "Release.gpg"), release), "verifying Release.gpg"
        )
    finally:
        shutil.rmtree(verify_home, ignore_errors=True)


def publish(
    module: AnsibleModule, manifest: Manifest, entries: list[LockEntry], fingerprint: str, lock_sha: str, inputs: str
) -> None:
    params = module.params
    tools = Tools(module)
    dest, suite = params["dest"].rstrip("/"), params["suite"]
    stage = f"{dest}.new"
    shutil.rmtree(stage, ignore_errors=True)
    pool = os.path.join(stage, "pool", "main")
    os.makedirs(pool)
    for entry in entries:
        source = os.path.join(params["cache_dir"], entry.filename)
        target = os.path.join(pool, entry.filename)
        try:
            os.link(source, target)  # same filesystem: no copy; the tree digest still guards the bytes
        except OSError:
            shutil.copyfile(source, target)
    dist = os.path.join(stage, "dists", suite)
    binary_dir = os.path.join(dist, "main", f"binary-{manifest.architecture}")
    os.makedirs(binary_dir)
    _rc, packages, err = tools.run(["apt-ftparchive", "packages", "pool/main"], "indexing the .debs", cwd=stage)
    if apt_problems(err):
        raise MirrorError("apt-ftparchive packages reported problems:\n" + "\n".join(apt_problems(err)))
    indexed = {
        (s.get("Package"), s.get("Version"), s.get("Architecture")): s.get("SHA256") for s in parse_control(packages)
    }
    if indexed != {(e.name, e.version, e.arch): e.sha256 for e in entries}:
        raise MirrorError("the generated Packages index does not match the lock; nothing was published")
    write_text(os.path.join(binary_dir, "Packages"), packages)
    with (
        open(os.path.join(binary_dir, "Packages"), "rb") as src,
        gzip.GzipFile(os.path.join(binary_dir, "Packages.gz"), "wb", mtime=0) as dst,
    ):
        shutil.copyfileobj(src, dst)
    options = release_options(
        suite,
        manifest.components,
        manifest.architecture,
        params["origin"],
        params["label"],
        f"enp known-good baseline, lock sha256 {lock_sha[:16]}",
    )
    _rc, release, _err = tools.run(
        ["apt-ftparchive", *options, "release", f"dists/{suite}"], "writing the Release file", cwd=stage
    )
    # Written outside dists/ first, then moved in: Release must not hash a half-written copy of itself.
    write_text(os.path.join(stage, "Release.tmp"), release)
    os.replace(os.path.join(stage, "Release.tmp"), os.path.join(dist, "Release"))
    try:
        sign_and_export(tools, params["gnupg_home"], fingerprint, stage, dist)
    finally:
        stop_agent(module, params["gnupg_home"])
    write_json_atomic(
        os.path.join(stage, STAMP),
        {
            "inputs": inputs,
            "tree": tree_digest(published_files(stage)),
            "fingerprint": fingerprint,
            "suite": suite,
            "packages": len(entries),
            "bytes": sum(e.size for e in entries),
            "lock_sha256": lock_sha,
        },
    )
    old = f"{dest}.old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(dest):
        os.rename(dest, old)
    os.rename(stage, dest)
    shutil.rmtree(old, ignore_errors=True)


def stop_agent(module: AnsibleModule, home: str) -> None:
    """gpg starts an agent for the home; end it so no process outlives the run."""
    if os.path.isdir(home):
        module.run_command(["gpgconf", "--homedir", home, "--kill", "gpg-agent"])


def check_build_params(module: AnsibleModule) -> None:
    params = module.params
    if not SUITE_RE.match(params["suite"]):
        raise MirrorError(f"suite '{params['suite']}' is not usable: lower-case letters, digits, '.', '+', '-'")
    for tool, package in (("apt-ftparchive", "apt-utils"), ("gpg", "gpg"), ("gpgv", "gpgv"), ("gpgconf", "gpgconf")):
        if not module.get_bin_path(tool):
            raise MirrorError(f"{tool} is missing on the controller: apt-get install {package}")
    effective = params["effective_lock"]
    if effective:
        dest = os.path.realpath(params["dest"])
        if os.path.realpath(effective) == os.path.realpath(params["lock"]):
            raise MirrorError(
                "effective_lock must not be the repository lock: a build never rewrites it "
                f"(re-lock with `{MAKE_RELOCK}` instead). Use a path in the lab state folder."
            )
        if os.path.realpath(effective).startswith(dest + os.sep):
            raise MirrorError(f"effective_lock must not be inside dest ({dest}): publishing replaces that tree")


def do_build(module: AnsibleModule, manifest: Manifest) -> dict:
    """Build, then warn once about what the operator must know: a stale lock, a different golden image."""
    result, warnings = build(module, manifest)
    for text in warnings:
        module.warn(text)
    return result


def build(module: AnsibleModule, manifest: Manifest) -> tuple[dict, list[str]]:
    params = module.params
    check_build_params(module)
    repo_text = read_text(params["lock"])
    if repo_text is None:
        raise MirrorError(f"lock {params['lock']} does not exist: create it with `{MAKE_RELOCK}` and commit it.")
    repo_meta, repo_entries = parse_lock(repo_text)
    if not repo_entries:
        raise MirrorError(f"lock {params['lock']} lists no packages. {RELOCK}")
    if repo_meta.get("manifest-sha256") != manifest.digest():
        raise MirrorError(
            f"baseline/packages.yml changed since {params['lock']} was made: the mirror would not "
            f"contain what the manifest asks for. {RELOCK}"
        )
    repo_sha = hashlib.sha256(repo_text.encode()).hexdigest()
    status = os.path.join(params["image"] or "", "var/lib/dpkg/status")
    image_sha = sha256_file(status) if params["image"] and os.path.isfile(status) else None
    dest = params["dest"].rstrip("/")
    stamp = load_json(os.path.join(dest, STAMP), None)
    if os.path.isdir(dest) and os.listdir(dest) and stamp is None:
        raise MirrorError(
            f"{dest} exists, is not empty and is not an enp mirror (no {STAMP}); refusing to replace "
            "it. Choose an empty or new directory as dest."
        )
    relock = params["on_stale_lock"] == "relock"
    # The lock this build serves: the repository's, or the effective lock an earlier relock made for it.
    lock_text, entries, stale = repo_text, repo_entries, []
    effective = load_effective_lock(params, repo_sha, manifest) if relock else None
    if effective:
        lock_text, entries = effective
        stale = parse_lock(lock_text)[0].get("stale-packages", "").split()
    tools = Tools(module)
    result = dict(
        mirror=dest,
        suite=params["suite"],
        public_key=os.path.join(dest, f"{KEY_BASENAME}.gpg"),
        public_key_asc=os.path.join(dest, f"{KEY_BASENAME}.asc"),
        downloaded=0,
        key_generated=False,
    )
    warnings: list[str] = []

    def served(text: str, served_entries: list[LockEntry], stale_pins: list[str]) -> None:
        """Record which lock is served; a stale repository lock is reported (and warned about) every run."""
        is_stale = text != repo_text
        lock_used = params["effective_lock"] if is_stale else params["lock"]
        meta = parse_lock(text)[0]
        matches = image_matches_lock(meta, image_sha)
        result.update(
            packages=len(served_entries),
            bytes=sum(e.size for e in served_entries),
            lock_used=lock_used,
            stale_lock=is_stale,
            image_matches_lock=matches,
        )
        warnings.clear()
        if is_stale:
            changes = relock_changes(repo_entries, served_entries)
            warning = stale_lock_warning(stale_pins, changes, params["lock"], params["effective_lock"])
            warnings.append(warning)
            result.update(stale_packages=stale_pins, relock_changes=changes, stale_lock_warning=warning)
        if matches is False:
            warnings.append(
                f"the golden image {params['image']} is not the one {lock_used} was resolved against (dpkg "
                f"status sha256 {image_sha[:16]}, lock says {meta['image-status-sha256'][:16]}). The mirror is "
                "still built from exactly the locked files, but hosts booted from this image may hold other "
                f"versions of some packages than the lock expects. Re-lock with `{MAKE_RELOCK}` to align them."
            )

    served(lock_text, entries, stale)
    try:
        fingerprint = find_key(tools, params["gnupg_home"], params["key_uid"], params["key_fingerprint"])
    finally:
        stop_agent(module, params["gnupg_home"])
    if fingerprint:
        inputs = inputs_digest(lock_text, fingerprint, params["suite"], params["origin"], params["label"])
        if stamp and stamp.get("inputs") == inputs and stamp.get("tree") == tree_digest(published_files(dest)):
            result.update(
                changed=False, fingerprint=fingerprint, public_key_armored=read_text(result["public_key_asc"])
            )
            return result, warnings
        if stamp and stamp.get("inputs") == inputs:
            module.warn(
                f"the published mirror in {dest} differs from what was built (files edited, added or "
                "removed); republishing it from the verified cache."
            )
    result.update(changed=True, fingerprint=fingerprint)
    if module.check_mode:
        result["key_generated"] = fingerprint is None
        if fingerprint:
            result["public_key_armored"] = read_text(result["public_key_asc"])
        return result, warnings
    try:
        fingerprint, result["key_generated"] = ensure_key(
            tools, params["gnupg_home"], params["key_uid"], params["key_fingerprint"]
        )
    finally:
        stop_agent(module, params["gnupg_home"])
    apts = AptOnDemand(module, manifest, params["image"])
    try:
        result["downloaded"] = fetch_debs(module, apts, entries)
    except StaleLockError as exc:
        pins = [e.pin for e in exc.stale]
        if not relock:
            raise MirrorError(stale_lock_failure(pins, params["lock"], params["cache_dir"])) from exc
        lock_text, entries = relock_into_effective(module, manifest, apts, repo_sha, pins)
        served(lock_text, entries, pins)
        try:
            result["downloaded"] = fetch_debs(module, apts, entries)
        except StaleLockError as again:
            raise MirrorError(
                f"the fresh lock written to {params['effective_lock']} is stale already ({again}): Debian's "
                "indexes changed during this run. Run the build again in a few minutes."
            ) from again
    if relock and lock_text == repo_text:
        drop_obsolete_effective_lock(module)
    inputs = inputs_digest(lock_text, fingerprint, params["suite"], params["origin"], params["label"])
    publish(module, manifest, entries, fingerprint, hashlib.sha256(lock_text.encode()).hexdigest(), inputs)
    result.update(fingerprint=fingerprint, public_key_armored=read_text(result["public_key_asc"]))
    return result, warnings


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", choices=["build", "lock"], default="build"),
            manifest=dict(type="path", required=True),
            lock=dict(type="path", required=True),
            image=dict(type="path"),
            cache_dir=dict(type="path", default="~/.cache/enp/debs"),
            dest=dict(type="path"),
            gnupg_home=dict(type="path"),
            key_uid=dict(type="str", default="enp baseline mirror (lab) <mirror@enp.invalid>"),
            key_fingerprint=dict(type="str"),
            suite=dict(type="str", default="enp-bookworm"),
            origin=dict(type="str", default="enp"),
            label=dict(type="str", default="enp baseline"),
            debian_mirror=dict(type="str"),
            debian_security_mirror=dict(type="str"),
            debian_keyring=dict(type="path", default="/usr/share/keyrings/debian-archive-keyring.gpg"),
            on_stale_lock=dict(type="str", choices=["fail", "relock"], default="fail"),
            effective_lock=dict(type="path"),
        ),
        required_if=[
            ("mode", "lock", ["image"]),
            ("mode", "build", ["dest", "gnupg_home"]),
            ("on_stale_lock", "relock", ["effective_lock", "image"]),
        ],
        supports_check_mode=True,
    )
    started = time.monotonic()
    for name in ("manifest", "lock", "image", "cache_dir", "dest", "gnupg_home", "effective_lock"):
        if module.params[name]:
            module.params[name] = os.path.abspath(module.params[name])
    try:
        manifest = load_manifest(module.params["manifest"])
        os.makedirs(module.params["cache_dir"], exist_ok=True)
        with open(os.path.join(module.params["cache_dir"], ".enp-mirror.lock"), "w") as guard:
            # A second build or lock on the same cache waits instead of racing on apt state and dest.new.
            fcntl.flock(guard, fcntl.LOCK_EX)
            result = do_lock(module, manifest) if module.params["mode"] == "lock" else do_build(module, manifest)
    except (MirrorError, OSError) as exc:
        module.fail_json(
            msg=f"baseline mirror ({module.params['mode']}): {exc}", seconds=round(time.monotonic() - started, 2)
        )
    result.update(mode=module.params["mode"], seconds=round(time.monotonic() - started, 2))
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
