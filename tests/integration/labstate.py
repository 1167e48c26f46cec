"""Snapshot of everything the lab could leave behind on the controller, for before/after checks."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess


def _lines(cmd: list[str]) -> list[str]:
    if not shutil.which(cmd[0]):
        return []
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()


def processes(
    patterns: tuple[str, ...] = ("systemd-nspawn", "http.server", "/tmp/enp-cp/", "gpg-agent", "dirmngr", "keyboxd"),
) -> list[str]:
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as handle:
                text = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(p in text for p in patterns) and str(os.getpid()) not in cmdline:
            found.append(text.strip())
    return sorted(found)


def snapshot() -> dict[str, list[str]]:
    with open("/proc/mounts", encoding="utf-8") as handle:
        mounts = sorted(line.split()[1] for line in handle if line.split()[0] == "overlay" or "/.lab" in line)
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in _lines(["ip", "-o", "link"]))
    addresses = sorted(line.split()[3] for line in _lines(["ip", "-o", "-4", "addr"]) if " 198.1" in line)
    return {
        "mounts": mounts,
        "links": links,
        "addresses": addresses,
        "processes": processes(),
        "cgroups": sorted(glob.glob("/sys/fs/cgroup/enp-lab*") + glob.glob("/sys/fs/cgroup/*/enp-lab*")),
        "nft_tables": sorted(_lines(["nft", "list", "tables"])),
        "listeners_198_18": sorted(line.split()[3] for line in _lines(["ss", "-ltnH"]) if " 198.1" in line),
        "inotify": [open("/proc/sys/fs/inotify/max_user_instances").read().strip()],
    }


def diff(
    before: dict[str, list[str]], after: dict[str, list[str]], markers: list[str] | None = None
) -> dict[str, dict[str, list[str]]]:
    """What changed between two snapshots. With markers, only items naming one of them count, so
    another lab running at the same time (a molecule scenario, a benchmark) is not blamed on this one.
    The machine-wide inotify limit counts unless another lab's hosts ran before or after: lab-down keeps it
    raised while any lab still runs, and the last lab down restores it (plugins/modules/enp_lab_limits.py)."""

    def theirs(snap: dict[str, list[str]]) -> bool:
        items = snap.get("mounts", []) + [p for p in snap.get("processes", []) if "systemd-nspawn" in p]
        return any(not any(m in item for m in markers or []) for item in items)

    shared_limit = markers is not None and (theirs(before) or theirs(after))

    def ours(key: str, item: str) -> bool:
        if key == "inotify":
            return not shared_limit
        return markers is None or any(m in item for m in markers)

    out = {}
    for key in before:
        added = sorted(i for i in set(after[key]) - set(before[key]) if ours(key, i))
        removed = sorted(i for i in set(before[key]) - set(after[key]) if ours(key, i))
        if added or removed:
            out[key] = {"left_behind": added, "gone": removed}
    return out
