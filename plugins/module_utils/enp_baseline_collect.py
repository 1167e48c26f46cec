# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side collectors of a known-good baseline manifest (format "enp-baseline/1", docs/baselines.md).

Every collector takes ``root``: "/" for the live host, or the mount point of a read-only disk image
(forensics). Paths in the manifest are always the paths *inside* that root ("/etc/passwd"), so a
manifest of an image compares with the live host's. Collectors that only make sense on a running
system (listeners, kernel modules, nftables, PostgreSQL) are skipped for an image, with the reason in
``stats["skipped"]``.

Speed: file contents are hashed once; a cache (sqlite3, stdlib) keyed by path remembers
(dev, inode, size, mtime_ns, ctime_ns) -> sha256, so a second capture only reads files that changed.
ctime is part of the key because ``touch -r`` can put mtime back but never ctime.

No Ansible imports: the module enp_baseline_capture is a thin wrapper, and unit tests call these
functions on a fake root in a temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fnmatch
import glob
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

# One definition of the format and its sections, shared with the comparison (shipped with this file by Ansible).
from ansible.module_utils.enp_baseline import FORMAT, SECTIONS

BLOCK = 1 << 20  # 1 MiB reads
LIVE_ONLY = ("listeners", "kernel_modules", "nftables", "postgresql")
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".slice",
    ".scope",
    ".device",
)
# Precedence order of systemd's unit search path (system manager); the first directory holding a name wins.
SYSTEM_UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
)
USER_UNIT_DIRS = ("/etc/systemd/user", "/usr/local/lib/systemd/user", "/usr/lib/systemd/user")
KEY_TYPES = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+@openssh\.com|\S+-cert-v01@openssh\.com)$")
GLOB_CHARS = re.compile(r"[*?\[]")
TCP_LISTEN, UDP_UNCONNECTED = "0A", "07"


# --------------------------------------------------------------------------------------------- paths


def host_path(root: str, path: str) -> str:
    """The path on this machine of ``path`` inside ``root``."""
    return path if root in ("", "/") else os.path.join(root, path.lstrip("/"))


_BUFFER = bytearray(BLOCK)
_VIEW = memoryview(_BUFFER)


def sha256_file(fspath: str) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks into one reused buffer (no allocation per file,
    which matters for a million small files), without following a final symlink or blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(fspath, flags)
    except PermissionError:
        # O_NOATIME is refused for files the caller does not own unless it has CAP_FOWNER: retry without it.
        fd = os.open(fspath, flags & ~getattr(os, "O_NOATIME", 0))
    try:
        digest = hashlib.sha256()
        while True:
            count = os.readv(fd, [_BUFFER])
            if not count:
                return digest.hexdigest()
            digest.update(_VIEW[:count])
    finally:
        os.close(fd)


def sha256_or_none(fspath: str) -> str | None:
    try:
        return sha256_file(fspath) if os.path.isfile(fspath) else None
    except OSError:
        return None


def read_text(fspath: str) -> str | None:
    try:
        with open(fspath, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def shown_path(path: str) -> str:
    """A path as JSON can carry it. Names that are not UTF-8 (os.scandir keeps their bytes as surrogates) are
    written with backslash escapes: one such name must not stop the whole capture, and an attacker may pick
    one on purpose."""
    if path.isascii():
        return path
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def mode_string(st_mode: int) -> str:
    return f"{stat.S_IMODE(st_mode):04o}"


class SkipMatcher:
    """Excluded subtrees: plain paths (prefix match) and shell globs (matched against the whole path)."""

    def __init__(self, skip_paths: Iterable[str]) -> None:
        self.exact: set[str] = set()
        patterns = []
        for item in skip_paths:
            item = item.rstrip("/") or "/"
            if GLOB_CHARS.search(item):
                patterns.append(fnmatch.translate(item))
            else:
                self.exact.add(item)
        self.regex = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, path: str) -> bool:
        if path in self.exact:
            return True
        return bool(self.regex and self.regex.match(path))

    def covers(self, path: str) -> bool:
        """True when ``path`` or one of its parents is excluded (for the configured start paths)."""
        parts = path.rstrip("/").split("/")
        return any(self("/".join(parts[:n]) or "/") for n in range(2, len(parts) + 1))


# ---------------------------------------------------------------------------------------- hash cache


def walk_order(path: str) -> tuple[str, ...]:
    """Sort key of the file scan's visiting order: depth first, names in code-point order."""
    return tuple(path.split("/"))


class HashCache:
    """sha256 per path, reused while (dev, inode, size, mtime_ns, ctime_ns) is unchanged.

    The cache is a sqlite3 table written in the scan's visiting order (depth first, sorted names), and the
    next scan visits in the same order, so a lookup is a merge with one cursor over the old table: no index,
    no query per file, no million-entry dict in memory. A path the merge cannot match (the tree changed) is
    simply hashed again.

    Every file seen in this run goes into a new table that replaces the old one at ``close(commit=True)``,
    so deleted files drop out. ``writable=False`` (check mode) only reads. A file changed less than
    ``RACY_NS`` before the run started is not cached: a write within the same clock tick after hashing could
    otherwise go unnoticed (git's "racy clean" problem).
    """

    RACY_NS = 2_000_000_000
    VERSION = 2

    def __init__(self, path: str | None, writable: bool = True) -> None:
        self.path = path
        self.writable = bool(path) and writable
        self.started_ns = time.time_ns()
        self.old: sqlite3.Connection | None = None
        self.new: sqlite3.Connection | None = None
        self.rows: Iterator[tuple] = iter(())
        self.current: tuple | None = None
        self.current_key: tuple[str, ...] = ()
        self.pending: list[tuple] = []
        if not path:
            return
        if os.path.exists(path):
            try:
                self.old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                if self.old.execute("PRAGMA user_version").fetchone()[0] != self.VERSION:
                    raise sqlite3.DatabaseError("another cache format")
                self.rows = self.old.execute(
                    "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256 FROM hashes ORDER BY rowid"
                )
                self._advance()
            except sqlite3.Error:
                self.close_old()  # unreadable or foreign file: start afresh
        if self.writable:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            tmp = path + ".new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            self.new = sqlite3.connect(tmp)
            self.new.execute("PRAGMA journal_mode=OFF")
            self.new.execute("PRAGMA synchronous=OFF")
            self.new.execute(f"PRAGMA user_version={self.VERSION}")
            self.new.execute(
                "CREATE TABLE hashes (path TEXT, dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT)"
            )

    def _advance(self) -> None:
        self.current = next(self.rows, None)
        self.current_key = walk_order(self.current[0]) if self.current else ()

    @staticmethod
    def signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def lookup(self, fspath: str, st: os.stat_result) -> str | None:
        if self.current is None:
            return None
        key = walk_order(fspath)
        try:
            while self.current is not None and self.current_key < key:
                self._advance()
        except sqlite3.Error:
            self.current = None
            return None
        row = self.current
        if row is not None and row[0] == fspath and tuple(row[1:6]) == self.signature(st):
            return row[6]
        return None

    def store(self, fspath: str, st: os.stat_result, digest: str) -> None:
        if self.new is None or st.st_ctime_ns >= self.started_ns - self.RACY_NS:
            return
        self.pending.append((fspath, *self.signature(st), digest))
        if len(self.pending) >= 10000:
            self.flush()

    def flush(self) -> None:
        if self.new is not None and self.pending:
            self.new.executemany("INSERT INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?)", self.pending)
            self.pending.clear()

    def close_old(self) -> None:
        self.rows = iter(())
        self.current = None
        if self.old is not None:
            self.old.close()
            self.old = None

    def close(self, commit: bool = True) -> None:
        self.close_old()
        if self.new is None or not self.path:
            return
        if commit:
            self.flush()
            self.new.commit()
            self.new.close()
            os.chmod(self.path + ".new", 0o600)
            os.replace(self.path + ".new", self.path)
        else:
            self.new.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + ".new")
        self.new = None


# ------------------------------------------------------------------------------------------- packages


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Map "name:arch" -> version of every installed package in a dpkg status file."""
    packages: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        status = fields.get("Status", "").split()
        if "Package" in fields and len(status) == 3 and status[2] in ("installed", "half-configured", "unpacked"):
            name = f"{fields['Package']}:{fields.get('Architecture', 'all')}"
            version = fields.get("Version", "")
            packages[name] = version if status[2] == "installed" else f"{version} ({status[2]})"
    return packages


def collect_packages(root: str) -> dict[str, str]:
    text = read_text(host_path(root, "/var/lib/dpkg/status"))
    if text is None:
        raise FileNotFoundError("no /var/lib/dpkg/status under the root (not a Debian system?)")
    return parse_dpkg_status(text)


# --------------------------------------------------------------------------------------------- files


class FileScan:
    """Walk the configured trees once: the files section (values pre-serialised as canonical JSON, so a
    million entries are kept once, as short strings) and the setuid/setgid files on the way."""

    def __init__(
        self,
        root: str,
        paths: Iterable[str],
        skip_paths: Iterable[str],
        cache: HashCache | None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.root = root
        self.skip = SkipMatcher(skip_paths)
        self.cache = cache
        self.progress = progress
        self.entries: dict[str, str] = {}
        self.suid: dict[str, str] = {}
        self.hashed = 0
        self.reused = 0
        self.bytes_hashed = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.missing: list[str] = []
        self.paths = self._normalise(paths)

    def _normalise(self, paths: Iterable[str]) -> list[str]:
        cleaned = sorted({"/" + p.strip("/") for p in paths if p and p.strip()})
        kept: list[str] = []
        for path in cleaned:
            if any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
                continue  # inside a tree that is scanned anyway
            kept.append(path)
        return kept

    def _error(self, path: str, exc: OSError) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(f"{path}: {exc.strerror or exc}")

    def _record(self, path: str, fspath: str, st: os.stat_result) -> None:
        # The entry is written as canonical JSON by hand (keys in sorted order, as json.dumps(sort_keys=True)
        # would): json.dumps per file was a fifth of the scan's time on a million small files.
        mode = st.st_mode
        mode_text = f"{stat.S_IMODE(mode):04o}"
        head = f'{{"gid":{st.st_gid},"mode":"{mode_text}",'
        tail = f',"uid":{st.st_uid}}}'
        if stat.S_ISREG(mode):
            digest = self.cache.lookup(fspath, st) if self.cache else None
            if digest is not None:
                self.reused += 1
                if self.cache:
                    self.cache.store(fspath, st, digest)  # carried into the new cache
            else:
                try:
                    digest = sha256_file(fspath)
                except OSError as exc:
                    self._error(path, exc)
                else:
                    self.hashed += 1
                    self.bytes_hashed += st.st_size
                    if self.cache:
                        self.cache.store(fspath, st, digest)
            sha = f'"{digest}"' if digest is not None else "null"
            text = f'{head}"sha256":{sha},"size":{st.st_size},"type":"file"{tail}'
            if mode & (stat.S_ISUID | stat.S_ISGID):
                self.suid[shown_path(path)] = mode_text
        elif stat.S_ISDIR(mode):
            text = f'{head}"type":"dir"{tail}'
        elif stat.S_ISLNK(mode):
            try:
                target = canonical(shown_path(os.readlink(fspath)))
            except OSError as exc:
                self._error(path, exc)
                target = "null"
            text = f'{head}"target":{target},"type":"link"{tail}'
        else:
            text = f'{head}"type":"other"{tail}'
        self.entries[shown_path(path)] = text
        if self.progress and len(self.entries) % 50000 == 0:
            self.progress(len(self.entries))

    def run(self) -> FileScan:
        for top in sorted(self.paths, key=walk_order):
            if self.skip.covers(top):
                continue
            fstop = host_path(self.root, top)
            try:
                st = os.lstat(fstop)
            except FileNotFoundError:
                self.missing.append(top)
                continue
            except OSError as exc:
                self._error(top, exc)
                continue
            self._record(top, fstop, st)
            if stat.S_ISDIR(st.st_mode):
                self._walk(top, fstop)
        return self

    def _listing(self, path: str, fspath: str) -> Iterator[os.DirEntry]:
        try:
            with os.scandir(fspath) as listing:
                children = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self._error(path, exc)
            return iter(())
        return iter(children)

    def _walk(self, top: str, fstop: str) -> None:
        """Depth first, names sorted: the order the hash cache is written and merged in. Only the listings
        of the directories on the current branch are held."""
        stack = [(top.rstrip("/"), self._listing(top, fstop))]
        while stack:
            base, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            cpath = f"{base}/{child.name}"
            if self.skip(cpath):
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                self._error(cpath, exc)
                continue
            self._record(cpath, child.path, st)
            if stat.S_ISDIR(st.st_mode):
                stack.append((cpath, self._listing(cpath, child.path)))


def scan_setid(root: str, paths: Iterable[str], skip_paths: Iterable[str]) -> dict[str, str]:
    """Setuid/setgid files anywhere under ``paths`` (metadata only, nothing hashed).

    The file scan hashes chosen trees; an attacker's SUID shell lands where nobody hashes (/var/tmp, /dev/shm,
    a web root). This sweep costs one lstat per file, so it covers the whole filesystem by default. Trees in
    ``skip_paths`` (the file scan's own trees, /proc, /sys) are not entered."""
    skip = SkipMatcher(skip_paths)
    found: dict[str, str] = {}
    tops = sorted({"/" + p.strip("/") for p in paths if p and p.strip()})
    for top in tops:
        if skip.covers(top) or skip(top.rstrip("/") or "/"):
            continue
        stack = [(top.rstrip("/"), host_path(root, top))]
        while stack:
            base, fsbase = stack.pop()
            try:
                with os.scandir(fsbase) as listing:
                    children = list(listing)
            except OSError:
                continue  # unreadable or vanished: the file scan reports errors for the trees that matter
            for child in children:
                cpath = f"{base}/{child.name}"
                if skip(cpath):
                    continue
                try:
                    st = child.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append((cpath, child.path))
                elif stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    found[shown_path(cpath)] = f"{stat.S_IMODE(st.st_mode):04o}"
    return found


# ----------------------------------------------------------------------------------- users and groups


def parse_passwd(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 6 and not line.startswith("#")]


def collect_users(root: str) -> dict[str, dict[str, Any]]:
    passwd = read_text(host_path(root, "/etc/passwd")) or ""
    shadow_text = read_text(host_path(root, "/etc/shadow")) or ""
    shadow = {line.split(":", 1)[0]: line.split(":")[1] for line in shadow_text.splitlines() if line.count(":") >= 1}
    users: dict[str, dict[str, Any]] = {}
    for fields in parse_passwd(passwd):
        name, pw, uid, gid, _gecos, home, shell = fields[:7]
        secret = shadow.get(name, pw)
        users[name] = {
            "uid": int(uid) if uid.isdigit() else uid,
            "gid": int(gid) if gid.isdigit() else gid,
            "home": home,
            "shell": shell,
            # "!..." (passwd -l) or "*" (no password ever): no password login possible.
            "locked": secret.startswith(("!", "*")) or secret == "",
        }
    return users


def collect_groups(root: str) -> dict[str, dict[str, Any]]:
    text = read_text(host_path(root, "/etc/group")) or ""
    groups: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        name, _pw, gid, members = fields[:4]
        groups[name] = {
            "gid": int(gid) if gid.isdigit() else gid,
            "members": sorted(m for m in members.split(",") if m),
        }
    return groups


# ------------------------------------------------------------------------------ files hashed by name


def hash_paths(root: str, patterns: Iterable[str], recursive: bool = False) -> dict[str, str]:
    """path -> sha256 for each regular file (or symlink to one) matching the globs under root."""
    found: dict[str, str] = {}
    prefix = "" if root in ("", "/") else root.rstrip("/")
    for pattern in patterns:
        for fspath in sorted(glob.glob(host_path(root, pattern), recursive=recursive)):
            digest = sha256_or_none(fspath)
            if digest is not None:
                found[fspath[len(prefix) :] if prefix else fspath] = digest
    return found


def collect_sudoers(root: str) -> dict[str, str]:
    return hash_paths(root, ["/etc/sudoers", "/etc/sudoers.d/*"])


def collect_cron(root: str) -> dict[str, str]:
    return hash_paths(
        root,
        ["/etc/crontab", "/etc/cron.*/*", "/var/spool/cron/crontabs/*", "/var/spool/cron/atjobs/*", "/etc/anacrontab"],
    )


def collect_pam(root: str) -> dict[str, str]:
    return hash_paths(root, ["/etc/pam.d/*", "/etc/security/*.conf"])


def collect_nginx(root: str) -> dict[str, str]:
    return hash_paths(root, ["/etc/nginx/**"], recursive=True)


def collect_preload(root: str) -> dict[str, list[str]]:
    text = read_text(host_path(root, "/etc/ld.so.preload"))
    lines = [] if text is None else [line.strip() for line in text.splitlines() if line.strip()]
    return {"/etc/ld.so.preload": lines}


# ------------------------------------------------------------------------------------ authorized keys


def key_fingerprint(blob_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key blob (as ``ssh-keygen -lf`` prints it)."""
    blob = base64.b64decode(blob_b64, validate=False)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def split_options(line: str) -> tuple[str, list[str]]:
    """Split an authorized_keys line into its options prefix and the remaining tokens (quotes respected)."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            head, rest = line[:index], line[index:].split()
            if KEY_TYPES.match(head):
                return "", [head, *rest]
            return head, rest
    return ("", [line]) if KEY_TYPES.match(line) else (line, [])


def parse_authorized_keys(text: str) -> list[str]:
    """Sorted "keytype fingerprint comment" (plus " options=..." when the key has options, e.g. a forced
    command) for each key line; malformed lines appear as "invalid <sha256 of the line>"."""
    keys: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options, tokens = split_options(line)
        if len(tokens) >= 2 and KEY_TYPES.match(tokens[0]):
            try:
                fingerprint = key_fingerprint(tokens[1])
            except ValueError:
                fingerprint = "invalid-base64"
            text_key = " ".join([tokens[0], fingerprint, " ".join(tokens[2:])]).strip()
            keys.append(f"{text_key} options={options}" if options else text_key)
        else:
            keys.append("invalid " + hashlib.sha256(line.encode()).hexdigest())
    return sorted(keys)


def authorized_keys_patterns(root: str) -> list[str]:
    """AuthorizedKeysFile values of sshd_config (and its drop-ins), default .ssh/authorized_keys{,2}."""
    patterns: list[str] = []
    files = [host_path(root, "/etc/ssh/sshd_config"), *sorted(glob.glob(host_path(root, "/etc/ssh/sshd_config.d/*")))]
    for fspath in files:
        for line in (read_text(fspath) or "").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0].lower() == "authorizedkeysfile" and not patterns:
                patterns = [w for w in words[1:] if w.lower() != "none"]
    return patterns or [".ssh/authorized_keys", ".ssh/authorized_keys2"]


def collect_authorized_keys(root: str, users: dict[str, dict[str, Any]] | None = None) -> dict[str, list[str]]:
    users = users if users is not None else collect_users(root)
    candidates: set[str] = set()
    patterns = authorized_keys_patterns(root)
    for name, user in users.items():
        home = str(user.get("home") or "")
        for pattern in patterns:
            path = pattern.replace("%%", "\0").replace("%h", home).replace("%u", name).replace("%U", str(user["uid"]))
            path = path.replace("\0", "%")
            if not path.startswith("/"):
                path = f"{home.rstrip('/')}/{path}"
            candidates.add(os.path.normpath(path))
        if home and home != "/":
            for fspath in glob.glob(host_path(root, f"{home.rstrip('/')}/.ssh/authorized_keys*")):
                candidates.add(fspath if root in ("", "/") else "/" + os.path.relpath(fspath, root))
    found: dict[str, list[str]] = {}
    for path in sorted(candidates):
        fspath = host_path(root, path)
        if os.path.isfile(fspath):
            found[path] = parse_authorized_keys(read_text(fspath) or "")
    return found


# ---------------------------------------------------------------------------------------------- units


def unit_has_install_section(text: str) -> bool:
    return any(line.strip().lower() == "[install]" for line in text.splitlines())


def collect_units(root: str, homes: Iterable[tuple[str, str]] = ()) -> dict[str, dict[str, Any]]:
    """unit -> {"state", "path", "sha256"} from the unit files and wants/ symlinks under root.

    State as systemctl would call it, read from the files (works on an image): masked (linked to
    /dev/null in /etc or /run), generated (from a generator directory), enabled (a symlink in some
    *.wants/, *.requires/ or *.upholds/ directory or an alias in /etc), static (no [Install]
    section), else disabled. User units are keyed "user:<unit>" (/etc/systemd/user, vendor user
    dirs) and "user:<account>:<unit>" (~/.config/systemd/user).
    """
    units: dict[str, dict[str, Any]] = {}
    units.update(_units_from(root, SYSTEM_UNIT_DIRS, prefix=""))
    units.update(_units_from(root, USER_UNIT_DIRS, prefix="user:"))
    for account, home in homes:
        if home and home != "/":
            units.update(_units_from(root, (f"{home.rstrip('/')}/.config/systemd/user",), prefix=f"user:{account}:"))
    return units


def _units_from(root: str, dirs: Iterable[str], prefix: str) -> dict[str, dict[str, Any]]:
    fragments: dict[str, tuple[str, str]] = {}  # name -> (path inside root, directory)
    wanted: set[str] = set()
    seen_real: set[str] = set()
    for directory in dirs:
        fsdir = host_path(root, directory)
        real = os.path.realpath(fsdir)
        if real in seen_real or not os.path.isdir(fsdir):
            continue  # /lib is /usr/lib on merged-/usr systems
        seen_real.add(real)
        try:
            names = sorted(os.listdir(fsdir))
        except OSError:
            continue
        for name in names:
            fspath = os.path.join(fsdir, name)
            if name.endswith((".wants", ".requires", ".upholds")) and os.path.isdir(fspath):
                with contextlib.suppress(OSError):
                    wanted.update(os.listdir(fspath))
            elif name.endswith(UNIT_SUFFIXES) and name not in fragments:
                fragments[name] = (f"{directory}/{name}", directory)
    units: dict[str, dict[str, Any]] = {}
    for name, (path, directory) in sorted(fragments.items()):
        fspath = host_path(root, path)
        target = os.readlink(fspath) if os.path.islink(fspath) else None
        if target == "/dev/null" or (os.path.exists(fspath) and os.path.realpath(fspath) == "/dev/null"):
            units[prefix + name] = {"state": "masked", "path": path, "sha256": None}
            continue
        digest = sha256_or_none(fspath) if os.path.exists(fspath) else None
        text = read_text(fspath) or ""
        template = re.sub(r"@[^.]*\.", "@.", name) if "@" in name else name
        if "generator" in directory:
            state = "generated"
        elif (
            name in wanted
            or any(w.startswith(template.split("@")[0] + "@") for w in wanted if "@" in name)
            or (target is not None and directory.startswith("/etc/"))
        ):
            state = "enabled"
        elif not unit_has_install_section(text):
            state = "static"
        else:
            state = "disabled"
        entry: dict[str, Any] = {"state": state, "path": path, "sha256": digest}
        if target is not None:
            entry["target"] = target
        units[prefix + name] = entry
    # A wants/ symlink to a unit that has no fragment of its own (deleted, or in an odd place) is evidence too.
    for name in sorted(wanted - set(fragments)):
        if name.endswith(UNIT_SUFFIXES) and "@" not in name:
            units.setdefault(prefix + name, {"state": "enabled", "path": None, "sha256": None})
    return units


# ----------------------------------------------------------------------------------------- live only


def _decode_address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    # IPv6 in /proc is four 32-bit words, each in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return f"[{ipaddress.IPv6Address(words).compressed}]"


def parse_proc_net(text: str, proto: str) -> dict[int, str]:
    """socket inode -> "proto:addr:port" for listening TCP and bound, unconnected UDP sockets."""
    sockets: dict[int, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state, inode = fields[1], fields[3], int(fields[9])
        want = TCP_LISTEN if proto.startswith("tcp") else UDP_UNCONNECTED
        if state != want:
            continue
        addr, port = local.split(":")
        if proto.startswith("udp") and int(port, 16) == 0:
            continue
        sockets[inode] = f"{proto}:{_decode_address(addr)}:{int(port, 16)}"
    return sockets


def collect_listeners(proc: str = "/proc") -> dict[str, dict[str, str]]:
    sockets: dict[int, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        text = read_text(f"{proc}/net/{proto}")
        if text:
            sockets.update(parse_proc_net(text, proto))
    owners: dict[str, tuple[set[str], set[str]]] = {key: (set(), set()) for key in sockets.values()}
    names: dict[str, str] = {}
    for fields in parse_passwd(read_text("/etc/passwd") or ""):
        names.setdefault(fields[2], fields[0])  # the first name of a uid, as getpwuid() answers (a 2nd uid 0!)
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        try:
            fds = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue
        hits = []
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"{proc}/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if inode in sockets:
                        hits.append(sockets[inode])
        if not hits:
            continue
        comm = (read_text(f"{proc}/{pid}/comm") or "?").strip()
        uid = "?"
        for line in (read_text(f"{proc}/{pid}/status") or "").splitlines():
            if line.startswith("Uid:"):
                uid = line.split()[1]
        for key in hits:
            owners[key][0].add(comm)
            owners[key][1].add(names.get(uid, uid))
    return {
        key: {"process": ",".join(sorted(procs)) or "?", "user": ",".join(sorted(users)) or "?"}
        for key, (procs, users) in owners.items()
    }


def collect_kernel_modules(proc: str = "/proc") -> dict[str, bool]:
    text = read_text(f"{proc}/modules")
    if text is None:
        raise FileNotFoundError(f"{proc}/modules is not readable")
    return {line.split()[0]: True for line in text.splitlines() if line.strip()}


Runner = Callable[[list[str]], tuple[int, str, str]]


def run_command(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/", timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def collect_nftables(run: Runner = run_command) -> dict[str, Any]:
    rc, ruleset, err = run(["nft", "-s", "list", "ruleset"])
    if rc != 0:
        raise RuntimeError(f"nft -s list ruleset failed: {err.strip()}")
    rc, tables, err = run(["nft", "list", "tables"])
    if rc != 0:
        raise RuntimeError(f"nft list tables failed: {err.strip()}")
    names = sorted(line.split(None, 1)[1].strip() for line in tables.splitlines() if line.startswith("table "))
    return {"ruleset": hashlib.sha256(ruleset.encode()).hexdigest(), "tables": names}


# PostgreSQL: one query per kind, fields separated by US (\x1f), records by RS (\x1e).
PG_ROLES = (
    "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,"
    " rolconnlimit, coalesce(rolvaliduntil::text, ''),"
    " coalesce((SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m"
    " JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid), '')"
    " FROM pg_roles r WHERE rolname !~ '^pg_'"
)
PG_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
# Schemas of PostgreSQL itself, and objects that belong to an extension, are left out (literal SQL, no input).
PG_TABLES = (
    "SELECT n.nspname, c.relname, c.relkind, coalesce(string_agg(a.attname || ' ' ||"
    " format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ','"
    " ORDER BY a.attnum), '')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
    " GROUP BY n.nspname, c.relname, c.relkind"
)
PG_FUNCTIONS = (
    "SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',"
    " encode(sha256(convert_to(pg_get_functiondef(p.oid), 'UTF8')), 'hex')"
    " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE p.prokind IN ('f', 'p')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
)
PG_TRIGGERS = (
    "SELECT n.nspname, c.relname, t.tgname, encode(sha256(convert_to(pg_get_triggerdef(t.oid), 'UTF8')), 'hex')"
    " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE NOT t.tgisinternal"
)
PG_EXTENSIONS = "SELECT extname, extversion FROM pg_extension"
PG_HBA = "SHOW hba_file"


def _psql(run: Runner, database: str, query: str) -> list[list[str]]:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-AtX", "-v", "ON_ERROR_STOP=1"]
    argv += ["-F", "\x1f", "-R", "\x1e", "-d", database, "-c", query]
    rc, out, err = run(argv)
    if rc != 0:
        raise RuntimeError(f"psql on database {database} failed: {err.strip()}")
    return [record.split("\x1f") for record in out.rstrip("\n").split("\x1e") if record]


def postgresql_present(root: str = "/") -> bool:
    return bool(shutil.which("psql")) and bool(shutil.which("runuser")) and os.path.isdir("/etc/postgresql")


def collect_postgresql(run: Runner = run_command, root: str = "/") -> dict[str, Any]:
    """Roles, and per database (not template0/1): tables and their columns, functions (hash of the
    definition), triggers, extensions; plus the hash of pg_hba.conf. Objects inside a database are
    keyed "<kind>:<database>/<schema>.<name>" (a cluster has several databases)."""
    section: dict[str, Any] = {}
    flags = ("superuser", "inherit", "createrole", "createdb", "login", "replication", "bypassrls")
    for row in _psql(run, "postgres", PG_ROLES):
        name, *values = row
        attributes: dict[str, Any] = {flag: value == "t" for flag, value in zip(flags, values[:7], strict=False)}
        attributes["connection_limit"] = int(values[7]) if values[7].lstrip("-").isdigit() else values[7]
        attributes["valid_until"] = values[8] or None
        attributes["member_of"] = [m for m in values[9].split(",") if m] if len(values) > 9 else []
        section[f"role:{name}"] = attributes
    for (database,) in (r[:1] for r in _psql(run, "postgres", PG_DATABASES)):
        for schema, name, kind, columns in _psql(run, database, PG_TABLES):
            section[f"table:{database}/{schema}.{name}"] = {
                "kind": kind,
                "columns": [c for c in columns.split(",") if c],
            }
        for schema, signature, digest in _psql(run, database, PG_FUNCTIONS):
            section[f"function:{database}/{schema}.{signature}"] = digest
        for schema, table, trigger, digest in _psql(run, database, PG_TRIGGERS):
            section[f"trigger:{database}/{schema}.{table}.{trigger}"] = digest
        for name, version in _psql(run, database, PG_EXTENSIONS):
            section[f"extension:{database}/{name}"] = version
    hba = _psql(run, "postgres", PG_HBA)
    if hba and hba[0]:
        section["hba"] = sha256_or_none(host_path(root, hba[0][0]))
    return section


def detect_container(root: str = "/") -> str:
    """'none' or the container manager (systemd-nspawn, lxc, docker...) of the live host."""
    for path in ("/run/systemd/container", "/run/container_type"):
        text = read_text(host_path(root, path))
        if text and text.strip():
            return text.strip()
    if os.path.exists(host_path(root, "/.dockerenv")):
        return "docker"
    return "none"


# -------------------------------------------------------------------------------------------- capture


def capture(
    *,
    host: str,
    roles: Iterable[str] = (),
    root: str = "/",
    paths: Iterable[str] = (),
    skip_paths: Iterable[str] = (),
    suid_paths: Iterable[str] = (),
    suid_skip_paths: Iterable[str] = (),
    sections: Iterable[str] = SECTIONS,
    cache: HashCache | None = None,
    live: bool | None = None,
    run: Runner = run_command,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Collect every requested section under ``root``; the manifest as a dict (files pre-serialised)."""
    started = time.monotonic()
    root = root or "/"
    live = (os.path.realpath(root) == "/") if live is None else live
    wanted = [s for s in SECTIONS if s in set(sections)]
    result: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    container = detect_container(root) if live else "none"
    users: dict[str, dict[str, Any]] | None = None
    scan: FileScan | None = None

    def get_users() -> dict[str, dict[str, Any]]:
        nonlocal users
        if users is None:
            users = collect_users(root)
        return users

    for section in wanted:
        if section in LIVE_ONLY and not live:
            skipped[section] = f"not a running system: root {root} is a mounted image"
            continue
        try:
            if section == "packages":
                result[section] = collect_packages(root)
            elif section in ("files", "suid"):
                if scan is None:
                    scan = FileScan(root, paths, skip_paths, cache).run()
                if section == "files":
                    result[section] = RawSection(scan.entries)
                else:
                    # The scanned trees' setid files are known already; sweep everything else by metadata.
                    swept = scan_setid(root, suid_paths, [*scan.paths, *skip_paths, *suid_skip_paths])
                    result[section] = {**swept, **scan.suid}
            elif section == "units":
                homes = [(name, str(u.get("home", ""))) for name, u in get_users().items()]
                result[section] = collect_units(root, homes)
            elif section == "users":
                result[section] = get_users()
            elif section == "groups":
                result[section] = collect_groups(root)
            elif section == "sudoers":
                result[section] = collect_sudoers(root)
            elif section == "authorized_keys":
                result[section] = collect_authorized_keys(root, get_users())
            elif section == "cron":
                result[section] = collect_cron(root)
            elif section == "listeners":
                result[section] = collect_listeners()
            elif section == "kernel_modules":
                if container != "none" and not os.access("/proc/modules", os.R_OK):
                    skipped[section] = (
                        f"not visible in this {container} container (/proc/modules is hidden; "
                        "the modules are the host kernel's)"
                    )
                    continue
                result[section] = collect_kernel_modules()
                if container != "none":
                    notes[section] = (
                        f"inside a {container} container /proc/modules lists the host kernel's modules: "
                        "recorded, but they are not this host's own"
                    )
            elif section == "preload":
                result[section] = collect_preload(root)
            elif section == "pam":
                result[section] = collect_pam(root)
            elif section == "nftables":
                if not shutil.which("nft"):
                    skipped[section] = "nft is not installed"
                    continue
                result[section] = collect_nftables(run)
            elif section == "nginx":
                if not os.path.isdir(host_path(root, "/etc/nginx")):
                    skipped[section] = "no /etc/nginx"
                    continue
                result[section] = collect_nginx(root)
            elif section == "postgresql":
                if not postgresql_present(root):
                    skipped[section] = "PostgreSQL is not installed (no psql or /etc/postgresql)"
                    continue
                result[section] = collect_postgresql(run, root)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            skipped[section] = f"could not be collected: {exc}"
    for section in SECTIONS:
        if section not in wanted:
            skipped.setdefault(section, "not requested (baseline_sections)")
    seconds = time.monotonic() - started
    files = len(scan.entries) if scan else 0
    stats: dict[str, Any] = {
        "files": files,
        "hashed": scan.hashed if scan else 0,
        "reused": scan.reused if scan else 0,
        "bytes_hashed": scan.bytes_hashed if scan else 0,
        "seconds": round(seconds, 3),
        "files_per_second": round(files / seconds, 1) if seconds > 0 else float(files),
        "skipped": skipped,
        "container": container,
    }
    if notes:
        stats["notes"] = notes
    if scan and scan.error_count:
        stats["errors"] = scan.error_count
        stats["error_examples"] = scan.errors
    if scan and scan.missing:
        stats["missing_paths"] = scan.missing
    captured = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    return {
        "format": FORMAT,
        "host": host,
        "roles": sorted(set(roles)),
        "captured_at": captured.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "root": root,
        "sections": result,
        "stats": stats,
    }


# ----------------------------------------------------------------------------------- canonical JSON


class RawSection(dict):
    """A section whose values are already canonical JSON text (the files section: one short string per
    file instead of one dict, so a million-file host keeps its list once)."""


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_canonical(manifest: dict[str, Any], handle: IO[str]) -> str:
    """Write json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\\n"
    without building the whole text in memory; returns the content digest.

    The content digest is the sha256 of everything except captured_at and stats (the first and the
    last key), so two captures of an unchanged host have the same one; it is stored as
    stats["content_sha256"] on the way, since stats is written last.
    """
    digest = hashlib.sha256()

    def out(text: str, hashed: bool = True) -> None:
        handle.write(text)
        if hashed:
            digest.update(text.encode())

    out("{", hashed=False)
    for index, key in enumerate(sorted(manifest)):
        prefix = ("," if index else "") + canonical(key) + ":"
        if key == "stats" and isinstance(manifest[key], dict):
            manifest[key]["content_sha256"] = digest.hexdigest()
        if key != "sections":
            out(prefix + canonical(manifest[key]), hashed=key not in ("captured_at", "stats"))
            continue
        out(prefix + "{")
        for sindex, name in enumerate(sorted(manifest[key])):
            section = manifest[key][name]
            out(("," if sindex else "") + canonical(name) + ":")
            if isinstance(section, RawSection):
                parts = ["{"]
                size = 0
                for eindex, path in enumerate(sorted(section)):
                    part = ("," if eindex else "") + canonical(path) + ":" + section[path]
                    parts.append(part)
                    size += len(part)
                    if size > BLOCK:
                        out("".join(parts))
                        parts, size = [], 0
                out("".join(parts) + "}")
            else:
                out(canonical(section))
        out("}")
    out("}\n", hashed=False)
    return digest.hexdigest()


class _NullWriter(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def previous_digest(path: str) -> tuple[str | None, str | None]:
    """(content digest, captured_at) of an existing manifest, read from the file's two ends
    (captured_at is the first key of canonical JSON, stats the last), without parsing a huge file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None, None
    index = tail.rfind('"stats":')
    captured = re.match(r'\{"captured_at":"([^"]*)"', head)
    if index < 0:
        return None, None
    try:
        stats = json.loads(tail[index + len('"stats":') :].rstrip().removesuffix("}"))
    except ValueError:
        return None, None
    return stats.get("content_sha256"), captured.group(1) if captured else None


def save_manifest(
    manifest: dict[str, Any], dest: str, check_mode: bool = False, keep_unchanged: bool = True
) -> tuple[bool, str, str]:
    """Write the canonical manifest atomically (0600; directories 0700) unless its content equals the
    manifest already at ``dest``. Returns (changed, content digest, captured_at of the manifest now at
    dest: the old one when nothing changed, so an unchanged host keeps its file and its timestamp).

    ``keep_unchanged=False`` always replaces the file (``changed`` still says whether the content differs):
    the old file's digest is read from the file itself, which a root attacker could have forged, so a live
    manifest for verify must never be the file that was already there."""
    old_digest, old_captured = previous_digest(dest)
    if check_mode:
        digest = write_canonical(manifest, _NullWriter())
        changed = digest != old_digest
        return changed, digest, manifest["captured_at"] if changed else (old_captured or manifest["captured_at"])
    os.makedirs(os.path.dirname(dest) or ".", mode=0o700, exist_ok=True)
    tmp = f"{dest}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            digest = write_canonical(manifest, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if digest == old_digest and keep_unchanged:
            os.unlink(tmp)
            return False, digest, old_captured or manifest["captured_at"]
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return digest != old_digest, digest, manifest["captured_at"]


def section_counts(manifest: dict[str, Any]) -> dict[str, int]:
    return {name: len(section) for name, section in manifest["sections"].items()}


def iter_sections(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Sections with plain values (files decoded), e.g. for tests and small manifests."""
    for name, section in sorted(manifest["sections"].items()):
        if isinstance(section, RawSection):
            yield name, {path: json.loads(text) for path, text in section.items()}
        else:
            yield name, section
