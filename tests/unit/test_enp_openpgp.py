"""Fingerprints from our OpenPGP reader match gpg's, and malformed keys are refused."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
from ansible.module_utils.enp_openpgp import OpenPGPError, v4_fingerprint

ARMOR = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}\n-----END PGP PUBLIC KEY BLOCK-----\n"


@pytest.mark.skipif(not shutil.which("gpg"), reason="gpg is installed by make setup")
@pytest.mark.parametrize("algo", ["ed25519", "rsa2048"])
def test_fingerprint_matches_gpg(tmp_path, algo: str) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run(
            [*gpg, "--quick-gen-key", "test <t@enp.invalid>", algo, "sign", "never"], check=True, capture_output=True
        )
        armored = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True, text=True).stdout
        listing = subprocess.run(
            [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    expected = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    assert v4_fingerprint(armored) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "no '-----BEGIN"),
        (ARMOR.format("!!!notbase64!!!"), "not valid base64"),
        (ARMOR.format(base64.b64encode(b"\x00\x01").decode()), "not an OpenPGP packet"),
        (ARMOR.format(base64.b64encode(bytes([0xC0 | 2, 3, 4, 0, 0])).decode()), "tag 2"),
        (ARMOR.format(base64.b64encode(bytes([0xC0 | 6, 3, 5, 0, 0])).decode()), "version 5"),
        (ARMOR.format(base64.b64encode(bytes([0xC0 | 6, 9, 4])).decode()), "truncated"),
    ],
)
def test_malformed_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(OpenPGPError, match=message):
        v4_fingerprint(text)
