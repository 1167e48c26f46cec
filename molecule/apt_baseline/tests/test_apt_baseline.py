"""The host trusts only the signed baseline mirror, and installs from it."""

from __future__ import annotations

import json

MIRROR = "http://198.18.250.1:8080"


def test_only_the_baseline_source_is_left(host) -> None:
    assert not host.file("/etc/apt/sources.list").exists
    listed = host.run("ls /etc/apt/sources.list.d").stdout.split()
    assert listed == ["enp-baseline.sources"]
    sources = host.file("/etc/apt/sources.list.d/enp-baseline.sources").content_string
    assert f"URIs: {MIRROR}/" in sources
    assert "Signed-By: /etc/apt/keyrings/enp-baseline.asc" in sources
    assert "198.18.250.99" not in host.run("apt-get indextargets --format '$(URI)'").stdout


def test_apt_update_verifies_the_signature(host) -> None:
    with host.sudo():
        update = host.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stderr
    assert "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr


def test_packages_come_from_the_mirror_at_locked_versions(host) -> None:
    policy = host.run("apt-cache policy nginx").stdout
    assert MIRROR in policy
    with host.sudo():
        install = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y acl")
    assert install.rc == 0, install.stderr
    assert host.package("acl").is_installed


def test_local_fact_records_the_applied_baseline(host) -> None:
    fact = json.loads(host.file("/etc/ansible/facts.d/enp_baseline.fact").content_string)
    assert fact["url"].rstrip("/") == MIRROR
    assert len(fact["key_fingerprint"]) == 40
