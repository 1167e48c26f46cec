# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Side-effecting helpers of the lab provider: overlays, cgroups, processes.

Kept apart from enp_lab.py (pure logic) so that the pure part stays unit-testable
without root. Every function here acts only on paths or PIDs it is handed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from ansible.module_utils.enp_lab import cgroup_hierarchies, process_start_time

CGROUP_PARENT = "enp-lab"


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        return any(line.split()[1] == real for line in handle if len(line.split()) > 1)


def mount_overlay(lower: str, upper: str, work: str, merged: str) -> None:
    for path in (upper, work, merged):
        os.makedirs(path, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", merged],
        check=True,
        capture_output=True,
        text=True,
    )


def unmount(path: str) -> None:
    if is_mounted(path):
        subprocess.run(["umount", path], check=True, capture_output=True, text=True)


def proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return process_start_time(handle.read())
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def is_our_process(pid: int | None, start_time: int | None, marker: bytes = b"systemd-nspawn") -> bool:
    """True only if PID is alive and is the very process we started (not a reused PID)."""
    if not pid or start_time is None:
        return False
    if proc_start_time(pid) != start_time:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return marker in handle.read()
    except FileNotFoundError:
        return False


def cgroup_dirs_for(name: str) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        hierarchies = cgroup_hierarchies(handle.read())
    dirs = []
    for root in hierarchies:
        if os.path.exists(os.path.join(root, "cgroup.procs")):
            dirs.append(os.path.join(root, CGROUP_PARENT, name))
    return dirs


def _inherit_cpuset(path: str) -> None:
    """cgroup v1 cpuset children start empty and refuse tasks until cpus/mems are set."""
    for leaf in ("cpuset.cpus", "cpuset.mems"):
        target = os.path.join(path, leaf)
        if os.path.exists(target):
            with open(target, encoding="utf-8") as handle:
                if handle.read().strip():
                    continue
            with open(os.path.join(os.path.dirname(path), leaf), encoding="utf-8") as handle:
                value = handle.read().strip()
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(value)


def make_cgroups(dirs: list[str]) -> None:
    for path in dirs:
        parent = os.path.dirname(path)
        for level in (parent, path):
            os.makedirs(level, exist_ok=True)
            _inherit_cpuset(level)


def remove_cgroups(dirs: list[str]) -> list[str]:
    """Remove cgroup dirs bottom-up; return those that could not be removed (still busy)."""
    left = []
    for path in dirs:
        if not os.path.isdir(path):
            continue
        for current, subdirs, _files in sorted(os.walk(path, topdown=False), key=lambda x: -len(x[0])):
            del subdirs
            try:
                os.rmdir(current)
            except OSError:
                left.append(current)
        parent = os.path.dirname(path)
        try:
            os.rmdir(parent)  # only succeeds once the last lab host is gone
        except OSError:
            pass
    return left


def launch_detached(cmd: list[str], log_path: str, cgroup_dirs: list[str]) -> tuple[int, int]:
    """Start cmd in its own session and cgroups; return (pid, start_time)."""

    def enter_cgroups() -> None:
        pid = str(os.getpid())
        for path in cgroup_dirs:
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="utf-8") as handle:
                handle.write(pid)

    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv built by nspawn_command()
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
            preexec_fn=enter_cgroups,
        )
    start = None
    for _ in range(50):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return proc.pid, start or 0


def stop_process(pid: int, start_time: int, timeout: float, marker: bytes = b"systemd-nspawn") -> bool:
    """TERM our process, wait, KILL after timeout. Returns True if it had to be killed."""
    if not is_our_process(pid, start_time, marker):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_our_process(pid, start_time, marker):
            _reap(pid)
            return False
        _reap(pid)
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not is_our_process(pid, start_time, marker):
            break
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def ssh_answers(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as handle:
            return "\n".join(handle.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def memory_bytes(cgroup_dirs: list[str]) -> int | None:
    for path in cgroup_dirs:
        for leaf in ("memory.usage_in_bytes", "memory.current"):
            candidate = os.path.join(path, leaf)
            if os.path.exists(candidate):
                with open(candidate, encoding="utf-8") as handle:
                    return int(handle.read().strip())
    return None


def port_answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection to address:port is accepted (a service is listening)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
