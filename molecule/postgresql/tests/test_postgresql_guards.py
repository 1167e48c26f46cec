"""The destructive step is guarded: a primary's data directory is never deleted, a standby's leftover
one only with the typed confirmation, and a confirmed rebuild brings the standby back streaming.

Runs after test_postgresql.py (file order) because it rebuilds the standby; it leaves it streaming.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import pytest
import testinfra

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
DATA = "/var/lib/postgresql/15/main"


def lab_host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def converge(limit: str, extra: dict | None = None) -> tuple[int, str]:
    """Run the scenario's converge.yml on one host: return code and output on one line."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "converge.yml"), "--limit", limit]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900, env=env)  # noqa: S603
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.fixture(scope="module")
def primary():
    return lab_host("mol-pg-primary")


@pytest.fixture(scope="module")
def standby():
    return lab_host("mol-pg-standby")


def test_a_primary_is_never_turned_into_a_standby_even_when_confirmed(primary) -> None:
    rc, out = converge(
        "mol-pg-primary", {"postgresql_role": "standby", "postgresql_standby_wipe_confirm": "mol-pg-primary"}
    )
    assert rc != 0
    assert "(state: primary;" in out and "The role never deletes it." in out
    assert primary.file(f"{DATA}/PG_VERSION").exists
    assert not primary.file(f"{DATA}/standby.signal").exists
    assert primary.run("runuser -u postgres -- psql -XAtc 'SELECT pg_is_in_recovery()'").stdout.strip() == "f"


def test_a_leftover_data_directory_needs_the_typed_confirmation(primary, standby) -> None:
    # A failed clone leaves files but no cluster: the standby is stopped and its directory replaced by junk.
    assert (
        standby.run(
            f"systemctl stop postgresql@15-main && rm -rf {DATA} && install -d -o postgres -m 0700 {DATA} "
            f"&& echo partial > {DATA}/base.tar.part"
        ).rc
        == 0
    )

    rc, out = converge("mol-pg-standby")
    assert rc != 0
    assert "(state: leftover;" in out and "-e postgresql_standby_wipe_confirm=mol-pg-standby" in out
    assert standby.file(f"{DATA}/base.tar.part").exists, "nothing may be deleted without the confirmation"

    rc, out = converge("mol-pg-standby", {"postgresql_standby_wipe_confirm": "another-host"})
    assert rc != 0, "a confirmation for another host is no confirmation"
    assert standby.file(f"{DATA}/base.tar.part").exists

    rc, out = converge("mol-pg-standby", {"postgresql_standby_wipe_confirm": "mol-pg-standby"})
    assert rc == 0, out[-3000:]
    assert not standby.file(f"{DATA}/base.tar.part").exists
    assert standby.file(f"{DATA}/standby.signal").exists

    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = primary.run(
            "runuser -u postgres -- psql -XAtc"
            " \"SELECT state FROM pg_stat_replication WHERE application_name = 'mol_pg_standby'\""
        ).stdout.strip()
        if state == "streaming":
            break
        time.sleep(1)
    assert state == "streaming"
    rows = standby.run("runuser -u postgres -- psql -XAt -d civic -c 'SELECT count(*) > 0 FROM civic.verify_probe'")
    assert rows.stdout.strip() == "t", "the rebuilt standby holds the primary's data"
