# -*- coding: utf-8 -*-
# Copyright: enp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprint of an armored OpenPGP public key (RFC 4880 section 12.2, v4 keys).

Why not gpg: gpg needs a writable home directory (it would create /root/.gnupg on the controller,
even in check mode) and may start an agent; reading the first key packet is all we need.
"""

from __future__ import annotations

import base64
import hashlib


class OpenPGPError(ValueError):
    """The text is not an armored v4 OpenPGP public key."""


def dearmor(armored: str) -> bytes:
    lines = armored.strip().splitlines()
    try:
        start = lines.index("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        end = lines.index("-----END PGP PUBLIC KEY BLOCK-----")
    except ValueError as exc:
        raise OpenPGPError("no '-----BEGIN PGP PUBLIC KEY BLOCK-----' armor found") from exc
    body = lines[start + 1 : end]
    while body and ":" in body[0]:  # armor headers such as "Comment: ..."
        body.pop(0)
    data = "".join(line.strip() for line in body if line.strip() and not line.startswith("="))
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise OpenPGPError(f"armor is not valid base64: {exc}") from exc


def first_packet(data: bytes) -> tuple[int, bytes]:
    """(tag, body) of the first packet, old or new packet format."""
    if not data or not data[0] & 0x80:
        raise OpenPGPError("not an OpenPGP packet")
    header = data[0]
    if header & 0x40:  # new format
        tag = header & 0x3F
        first = data[1]
        if first < 192:
            length, offset = first, 2
        elif first < 224:
            length, offset = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, offset = int.from_bytes(data[2:6], "big"), 6
        else:
            raise OpenPGPError("partial body lengths are not valid for a key packet")
    else:  # old format
        tag = (header >> 2) & 0x0F
        size = {0: 1, 1: 2, 2: 4}.get(header & 0x03)
        if size is None:
            raise OpenPGPError("indeterminate length is not valid for a key packet")
        length, offset = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    body = data[offset : offset + length]
    if len(body) != length:
        raise OpenPGPError("truncated packet")
    return tag, body


def v4_fingerprint(armored: str) -> str:
    tag, body = first_packet(dearmor(armored))
    if tag != 6:
        raise OpenPGPError(f"first packet has tag {tag}, expected a public key (6)")
    if body[0] != 4:
        raise OpenPGPError(f"key version {body[0]} is not supported (v4 only)")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()  # noqa: S324 - RFC 4880
