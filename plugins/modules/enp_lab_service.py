#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: enp_lab_service
short_description: A detached controller-side lab process (e.g. the baseline mirror's HTTP server)
description:
  - Starts O(argv) in its own session, detached from Ansible, and records its PID and start time under
    C(STATE_DIR/services/NAME.json); output goes to C(STATE_DIR/services/NAME.log).
  - Stopping ends only the process this module started; the recorded PID must still have the recorded
    start time and carry O(marker) in its command line, so a reused PID is never signalled.
  - With O(address), the service may only listen on a lab address (198.18.0.0/15), and O(argv) must name
    that address; with O(port) too, the module waits until the port accepts connections.
options:
  name:
    description: Service name (lower-case letters, digits and '-'); names its record and log.
    type: str
    required: true
  argv:
    description: Command and arguments (no shell). Required for V(started).
    type: list
    elements: str
  state:
    description:
      - V(started) starts the process unless it already runs with the same O(argv) (a changed O(argv) restarts it).
      - V(absent) stops it (TERM, then KILL after O(wait_timeout)) and deletes its record and log.
    type: str
    choices: [started, absent]
    default: started
  state_dir:
    description: Lab state folder; records live in C(services/) below it.
    type: path
    required: true
  marker:
    description: Text that must appear in C(/proc/PID/cmdline) of the recorded process; default the whole O(argv).
    type: str
  address:
    description: The lab address the service listens on; refused unless inside 198.18.0.0/15.
    type: str
  port:
    description: TCP port on O(address) to wait for after starting.
    type: int
  wait_timeout:
    description: Seconds to wait for the port to answer, and for the process to end when stopping.
    type: int
    default: 15
author: enp contributors
"""

EXAMPLES = r"""
- name: Serve the baseline mirror on the data zone's bridge address
  enp_lab_service:
    name: mirror-enp-data
    argv: [/usr/bin/python3, -m, http.server, --bind, 198.18.3.1, --directory, "{{ enp_mirror.mirror }}", "8080"]
    address: 198.18.3.1
    port: 8080
    state_dir: "{{ lab_state_dir }}"

- name: Stop it
  enp_lab_service:
    name: mirror-enp-data
    state: absent
    state_dir: "{{ lab_state_dir }}"
"""

RETURN = r"""
pid:
  description: PID of the running process.
  returned: when state=started and not in check mode
  type: int
log:
  description: Path of the process's output log.
  returned: always
  type: str
"""

import errno
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.enp_lab import LabError, check_lab_address, check_name, load_json, write_json_atomic
from ansible.module_utils.enp_lab_runtime import (
    is_our_process,
    launch_detached,
    port_answers,
    proc_start_time,
    stop_process,
    tail,
)


def default_marker(argv: list[str]) -> str:
    """The full command line as /proc/PID/cmdline shows it (NUL-separated)."""
    return "\0".join(argv)


def check_listen(argv: list[str], address: str | None, port: int | None) -> None:
    if address is None:
        if port is not None:
            raise LabError("`port` needs `address`: the module only waits on a lab address")
        return
    check_lab_address(f"{address}/32", "service address")
    if address not in argv:
        raise LabError(
            f"argv does not name the address {address}: bind the service to it explicitly "
            "(e.g. --bind ADDRESS) so it never listens on every interface."
        )
    if port is not None and str(port) not in argv:
        raise LabError(f"argv does not name the port {port}")


def check_bindable(address: str, port: int) -> None:
    """Refuse before starting: the address must be on this controller and the port free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise LabError(
                    f"address {address} is not on any interface of this controller: create the "
                    "zone's bridge first (make lab-up creates every zone)."
                ) from exc
            if exc.errno == errno.EADDRINUSE:
                raise LabError(
                    f"something else already listens on {address}:{port}; stop it "
                    "(make lab-status shows lab services) or choose another port."
                ) from exc
            raise


def running(record: dict | None) -> bool:
    if not record:
        return False
    return is_our_process(record.get("pid"), record.get("start_time"), str(record.get("marker", "")).encode())


def stop(record: dict, timeout: float) -> None:
    stop_process(record["pid"], record["start_time"], timeout, str(record["marker"]).encode())


def start(module: AnsibleModule, record_path: str, log_path: str, timeout: float) -> dict:
    params = module.params
    argv, address, port = params["argv"], params["address"], params["port"]
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    if address:
        check_bindable(address, port or 0)
    with open(log_path, "wb"):
        pass  # a fresh log per start, so the tail in an error belongs to this start
    pid, start_time = launch_detached(argv, log_path, cgroup_dirs=[])
    marker = params["marker"] or default_marker(argv)
    record = dict(
        name=params["name"],
        argv=argv,
        pid=pid,
        start_time=start_time,
        marker=marker,
        address=address,
        port=port,
        log=log_path,
    )
    write_json_atomic(record_path, record)
    began = time.monotonic()
    deadline = began + timeout
    settle = min(1.0, timeout)  # without a port to ask, a service that survives its first second counts as up
    while True:
        alive = running(record)
        if alive and (port_answers(address, port, timeout=0.5) if port else time.monotonic() - began > settle):
            return record
        # Right after fork the child still shows our command line until it execs: only a PID that is
        # gone (or reused) means the service exited.
        try:
            reaped = os.waitpid(pid, os.WNOHANG)[0] == pid  # our child until this module exits
        except ChildProcessError:
            reaped = False
        exited = reaped or proc_start_time(pid) != start_time
        if exited or time.monotonic() > deadline:
            if not exited:
                stop_process(pid, start_time, timeout, marker.encode())
            why = "exited" if exited else f"did not answer on {address}:{port} within {timeout:.0f}s"
            raise LabError(f"service {params['name']} {why}. Last log lines ({log_path}):\n{tail(log_path)}")
        time.sleep(0.1)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            argv=dict(type="list", elements="str"),
            state=dict(type="str", choices=["started", "absent"], default="started"),
            state_dir=dict(type="path", required=True),
            marker=dict(type="str"),
            address=dict(type="str"),
            port=dict(type="int"),
            wait_timeout=dict(type="int", default=15),
        ),
        required_if=[("state", "started", ["argv"])],
        supports_check_mode=True,
    )
    params = module.params
    name = params["name"]
    services = os.path.join(params["state_dir"], "services")
    record_path = os.path.join(services, f"{name}.json")
    log_path = os.path.join(services, f"{name}.log")
    timeout = float(params["wait_timeout"])
    try:
        check_name(name, "service")
        record = load_json(record_path, None)
        alive = running(record)
        if params["state"] == "absent":
            changed = alive or record is not None or os.path.exists(log_path)
            if changed and not module.check_mode:
                if alive:
                    stop(record, timeout)
                for path in (record_path, log_path):
                    if os.path.exists(path):
                        os.unlink(path)
            module.exit_json(changed=changed, name=name, log=log_path)

        argv = params["argv"]
        check_listen(argv, params["address"], params["port"])
        if alive and record.get("argv") == argv:
            module.exit_json(changed=False, name=name, pid=record["pid"], log=log_path)
        if module.check_mode:
            module.exit_json(changed=True, name=name, log=log_path)
        if alive:
            stop(record, timeout)  # same name, new command line: replace it
        record = start(module, record_path, log_path, timeout)
        module.exit_json(changed=True, name=name, pid=record["pid"], log=log_path)
    except (LabError, OSError) as exc:
        module.fail_json(msg=f"lab service {name}: {exc}")


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
