"""A captured baseline is on the host and signed in the controller's store, the freshly captured host verified
clean, and every change side_effect.yml planted was found and classified (and the signed baseline survived a
recapture of the tampered host)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
STATE = PROJECT / ".lab/molecule/baseline/baseline"
HOST = "mol-bl-1"


def canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def report(name: str) -> dict:
    return json.loads((STATE / "reports" / name / f"{HOST}.json").read_text())


def test_host_keeps_its_manifest_private_and_canonical(host) -> None:
    with host.sudo():
        manifest_file = host.file("/var/lib/enp/baseline/baseline.json")
        assert manifest_file.exists and manifest_file.user == "root" and manifest_file.mode == 0o600
        assert host.file("/var/lib/enp/baseline").mode == 0o700
        assert host.file("/var/lib/enp/baseline/hashcache.sqlite").exists
        text = manifest_file.content_string
    data = json.loads(text)
    assert text == canonical(data)
    assert data["format"] == "enp-baseline/1" and data["host"] == HOST
    assert set(data["roles"]) >= {"estate", "web"}


def test_stored_manifest_is_signed_and_the_signature_verifies() -> None:
    manifest = STATE / "store" / f"{HOST}.json"
    data = json.loads(manifest.read_text())
    assert manifest.read_text() == canonical(data)
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(STATE / "allowed_signers"), "-I", "enp-baseline"]
    argv += ["-n", "enp-baseline", "-s", f"{manifest}.sig"]
    with manifest.open("rb") as data_in:
        proc = subprocess.run(argv, stdin=data_in, capture_output=True, check=False)  # noqa: S603 - fixed argv
    assert proc.returncode == 0, proc.stderr
    # The signing key stays on the controller.
    assert not list((STATE / "store").glob("*signing_key*"))


def test_stored_manifest_has_every_section_a_plain_host_has() -> None:
    data = json.loads((STATE / "store" / f"{HOST}.json").read_text())
    sections, stats = data["sections"], data["stats"]
    for name in ("packages", "files", "suid", "units", "users", "groups", "sudoers", "authorized_keys", "cron"):
        assert sections[name], name
    for name in ("listeners", "preload", "pam"):
        assert name in sections, name
    assert sections["packages"]["openssh-server:amd64"]
    assert sections["users"]["root"]["uid"] == 0
    assert sections["files"]["/usr/bin/true"]["sha256"]
    assert sections["units"]["ssh.service"]["state"] == "enabled"
    assert any(key.endswith(":22") for key in sections["listeners"])
    assert sections["preload"] == {"/etc/ld.so.preload": []}
    # Sections that do not apply say why; the container note explains the kernel modules.
    assert "nginx" in stats["skipped"] and "postgresql" in stats["skipped"]
    # In a container the kernel modules are the host's: hidden here (a note when they are visible).
    assert stats["container"] == "systemd-nspawn"
    assert "container" in stats["skipped"].get("kernel_modules", "") or "kernel_modules" in stats.get("notes", {})
    assert stats["files"] > 2000 and stats["files_per_second"] > 0
    assert stats["hashed"] + stats["reused"] <= stats["files"]


def test_the_freshly_captured_host_verified_clean() -> None:
    clean = report("clean")
    assert clean["clean"] is True and clean["findings"] == [], clean["summary_line"]


@pytest.mark.parametrize(
    ("section", "key", "kind", "severities"),
    [
        ("users", "sysupd", "new-account", {"high", "critical"}),
        ("cron", "/etc/cron.d/sysupd", "new-persistence", {"critical"}),
        ("authorized_keys", "/root/.ssh/authorized_keys", "new-key", {"critical"}),
        ("units", "dbus-helper.service", "new-persistence", {"critical"}),
        ("suid", "/usr/local/bin/.sysupd", "suid-added", {"critical"}),
        ("sudoers", "/etc/sudoers.d/sysupd", "config-drift", {"critical"}),
        ("pam", "/etc/pam.d/common-auth", "config-drift", {"critical"}),
        ("listeners", "tcp:0.0.0.0:8443", "new-listener", {"high"}),
        ("files", "/usr/bin/true", None, None),
    ],
)
def test_each_planted_change_is_found_and_classified(section, key, kind, severities) -> None:
    findings = [f for f in report("tampered")["findings"] if f["section"] == section and f["key"] == key]
    assert findings, f"{section}:{key} not reported"
    if kind:
        assert findings[0]["kind"] == kind
        assert findings[0]["severity"] in severities


def test_the_touch_r_trick_does_not_hide_a_replaced_binary() -> None:
    """mtime was put back; the hash cache is keyed on ctime too, so the file was read again."""
    (finding,) = [f for f in report("tampered")["findings"] if f["key"] == "/usr/bin/true" and f["section"] == "files"]
    assert finding["change"] == "modified"
    assert finding["before"]["sha256"] != finding["after"]["sha256"]


def test_the_signed_baseline_survived_the_recapture_of_the_tampered_host() -> None:
    data = json.loads((STATE / "store" / f"{HOST}.json").read_text())
    assert "sysupd" not in data["sections"]["users"]
    assert "/etc/cron.d/sysupd" not in data["sections"]["cron"]
