"""The lab and production-example inventories stay in step, and secrets never land in clear text."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from ansible.module_utils.enp_lab import plan_lab

PROJECT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_INVENTORY = pathlib.Path(sys.executable).parent / "ansible-inventory"


def inventory(name: str) -> dict:
    out = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(PROJECT / "inventories" / name), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
    ).stdout
    return json.loads(out)


def groups(data: dict) -> set[str]:
    return {g for g in data if g not in ("_meta", "ungrouped")}


def test_production_example_has_the_lab_groups() -> None:
    lab, prod = inventory("lab"), inventory("production-example")
    assert groups(lab) == groups(prod)
    for group in (
        "loadbalancers",
        "web",
        "appservers",
        "db_primary",
        "db_standby",
        "backup_servers",
        "log_servers",
        "bastions",
        "gateways",
    ):
        assert len(lab[group]["hosts"]) == len(prod[group]["hosts"]), group


def test_lab_provider_refuses_the_production_inventory() -> None:
    """Pointing `make lab-up` at production must fail in planning, before anything is touched."""
    prod = inventory("production-example")
    hostvars = prod["_meta"]["hostvars"]
    import yaml

    zones = yaml.safe_load((PROJECT / "inventories/production-example/group_vars/all/zones.yml").read_text())
    hosts = [
        {
            "name": h,
            "zone": hostvars[h]["enp_zone"],
            "address": hostvars[h].get("ansible_host", h),
            "gateway_host": hostvars[h].get("enp_gateway_host", False),
        }
        for h in hostvars
    ]
    plan = plan_lab(hosts, zones["enp_zones"])
    assert plan["problems"], "the lab provider accepted a production inventory"
    assert plan["hosts"] == []


def test_secrets_are_vaulted_or_placeholders() -> None:
    for path in PROJECT.glob("inventories/**/vault.yml"):
        assert path.read_text().startswith("$ANSIBLE_VAULT;"), f"{path} holds secrets in clear text: encrypt it"
    import yaml

    example = PROJECT / "inventories/production-example/group_vars/all/vault.yml.example"
    values = yaml.safe_load(example.read_text())
    assert values and all(v == "CHANGE-ME" for v in values.values()), "the example vault must hold placeholders only"


def test_every_lab_host_is_in_a_zone() -> None:
    lab = inventory("lab")
    for host, hv in lab["_meta"]["hostvars"].items():
        assert hv.get("enp_zone") in {"dmz", "app", "data", "mgmt"}, host


WIRING_FILES = (
    "group_vars/all/wiring.yml",
    "group_vars/postgresql.yml",
    "group_vars/appservers.yml",
    "group_vars/web.yml",
    "group_vars/loadbalancers.yml",
)


def test_service_wiring_is_the_same_in_every_inventory() -> None:
    """How services find each other is derived from groups; only names, addresses and secrets differ."""
    for name in WIRING_FILES:
        lab = (PROJECT / "inventories/lab" / name).read_text()
        prod = (PROJECT / "inventories/production-example" / name).read_text()
        assert lab == prod, f"{name} differs between inventories/lab and inventories/production-example"


def test_every_inventory_names_the_secrets_the_roles_need() -> None:
    for inv in ("lab", "production-example"):
        secrets = (PROJECT / "inventories" / inv / "group_vars/all/secrets.yml").read_text()
        for name in ("enp_postgresql_app_password", "enp_postgresql_replication_password"):
            assert f"{name}:" in secrets, f"{inv} does not define {name}"
    example = (PROJECT / "inventories/production-example/group_vars/all/vault.yml.example").read_text()
    assert "vault_postgresql_replication_password: CHANGE-ME" in example
