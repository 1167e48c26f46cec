"""The pki role on the controller: a second run changes nothing, new names or a near expiry re-sign,
check mode writes nothing, and the CA is what the estate expects (CA:TRUE, pathlen 0, EC)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
HOST = "mol-web-lb"


def pki(pki_dir: pathlib.Path, *args: str, **extra: object) -> tuple[int, int, str]:
    """Run the pki role for one host: return code, changed count and output."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "pki.yml"), "--limit", HOST, *args]
    argv += ["-e", json.dumps({"pki_dir": str(pki_dir), **extra})]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    # Fixed argv: ansible-playbook with this scenario's own playbook and inventory.
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env)  # noqa: S603
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    recap = re.search(rf"^{HOST}\s*:.*?changed=(\d+)", out, re.MULTILINE)
    return proc.returncode, int(recap.group(1)) if recap else -1, out


def cert(pki_dir: pathlib.Path, name: str = f"hosts/{HOST}/server.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki_dir / name).read_bytes())


def test_check_mode_on_a_new_controller_writes_nothing(tmp_path: pathlib.Path) -> None:
    rc, changed, out = pki(tmp_path / "pki", "--check")
    assert rc == 0, out[-3000:]
    assert changed > 0
    assert not (tmp_path / "pki").exists()


def test_lab_ca_and_host_certificate(tmp_path: pathlib.Path) -> None:
    pki_dir = tmp_path / "pki"
    rc, changed, out = pki(pki_dir)
    assert rc == 0 and changed > 0, out[-3000:]
    ca = cert(pki_dir, "ca/ca.crt")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert "enp lab CA (molecule nginx pki test)" in ca.subject.rfc4514_string()
    host = cert(pki_dir)
    host.verify_directly_issued_by(ca)
    sans = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert HOST in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["198.18.252.10"]
    assert oct((pki_dir / "ca/ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct(pki_dir.stat().st_mode & 0o777) == "0o700"

    # Second run: nothing changes.
    rc, changed, out = pki(pki_dir)
    assert (rc, changed) == (0, 0), out[-3000:]
    serial = cert(pki_dir).serial_number

    # A new name re-signs (check mode first: reported, not written).
    rc, changed, out = pki(pki_dir, "--check", pki_server_names=["portal.enp.test"])
    assert (rc, changed) == (0, 1), out[-3000:]
    assert cert(pki_dir).serial_number == serial
    rc, changed, out = pki(pki_dir, pki_server_names=["portal.enp.test"])
    assert (rc, changed) == (0, 1), out[-3000:]
    names = cert(pki_dir).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "portal.enp.test" in names.get_values_for_type(x509.DNSName)

    # Expiring within the threshold re-signs once (valid 365 days, threshold 366), then it is stable.
    near = {"pki_server_names": ["portal.enp.test"], "pki_cert_valid_days": 400, "pki_cert_renew_days": 366}
    rc, changed, out = pki(pki_dir, **near)
    assert (rc, changed) == (0, 1), out[-3000:]
    rc, changed, out = pki(pki_dir, **near)
    assert (rc, changed) == (0, 0), out[-3000:]
