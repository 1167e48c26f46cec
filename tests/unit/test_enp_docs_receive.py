"""The app server's side of a documents restore (roles/restore/files/enp-docs-receive).

The stream comes from the backup server; the receiver trusts nothing in it: only regular files named like a
document of the store layout are written, and only when their content hashes to that name. Broken streams fail
loudly and leave nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import io
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[2]
LOADER = importlib.machinery.SourceFileLoader("enp_docs_receive", str(PROJECT / "roles/restore/files/enp-docs-receive"))
SPEC = importlib.util.spec_from_loader("enp_docs_receive", LOADER)
assert SPEC
PROGRAM = importlib.util.module_from_spec(SPEC)
LOADER.exec_module(PROGRAM)


def doc(content: bytes) -> tuple[str, bytes]:
    digest = hashlib.sha256(content).hexdigest()
    return f"sha256/{digest[:2]}/{digest}", content


def tar_of(entries: list[tuple[str, bytes | None, bytes]]) -> io.BytesIO:
    """(name, content or None, type) members as an uncompressed tar stream."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for name, content, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            elif content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    out.seek(0)
    return out


def files_under(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_good_documents_are_written_and_counted(tmp_path: pathlib.Path) -> None:
    good = [doc(b"%PDF-1.7 certificate"), doc(b"\x89PNG tax receipt" * 1000), doc(b"")]
    summary = PROGRAM.receive(tar_of([(n, c, tarfile.REGTYPE) for n, c in good]), str(tmp_path))
    assert files_under(tmp_path) == dict(good)
    assert summary["documents"] == 3 and summary["refused_count"] == 0
    assert summary["bytes"] == sum(len(c) for _, c in good)
    assert all(oct(os.stat(tmp_path / n).st_mode & 0o777) == "0o440" for n, _ in good)


def test_hostile_members_are_refused_and_nothing_escapes(tmp_path: pathlib.Path) -> None:
    dest = tmp_path / "store.restoring"
    dest.mkdir()
    good_name, good = doc(b"%PDF-1.7 intact")
    tampered_name, _ = doc(b"%PDF-1.7 original")
    evil = [
        (good_name, good, tarfile.REGTYPE),
        (tampered_name, b"encrypted by the attacker", tarfile.REGTYPE),  # content no longer hashes to its name
        ("../outside", b"x", tarfile.REGTYPE),
        ("/etc/cron.d/evil", b"x", tarfile.REGTYPE),
        (good_name + ".enplocked", b"x", tarfile.REGTYPE),
        ("README_DECRYPT.txt", b"pay", tarfile.REGTYPE),
        ("sha256/cd/" + "ab" * 32, b"x", tarfile.REGTYPE),  # folder does not match the name
        ("sha256/ab/" + "ab" * 32, None, tarfile.SYMTYPE),
    ]
    summary = PROGRAM.receive(tar_of(evil), str(dest))
    assert files_under(tmp_path) == {f"store.restoring/{good_name}": good}
    assert summary["documents"] == 1 and summary["refused_count"] == len(evil) - 1
    assert tampered_name in summary["refused"]
    assert not list(dest.rglob("*.enp-partial"))


def test_a_truncated_stream_fails(tmp_path: pathlib.Path) -> None:
    name, content = doc(os.urandom(300_000))
    stream = tar_of([(name, content, tarfile.REGTYPE)]).getvalue()
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        PROGRAM.receive(io.BytesIO(stream[:100_000]), str(tmp_path))
    assert not (tmp_path / name).exists()


def test_a_stream_cut_at_a_file_boundary_fails_against_the_expected_count(tmp_path: pathlib.Path) -> None:
    """tarfile ends quietly when the bytes stop between two members; --expect is what catches it."""
    first, second = doc(b"%PDF-1.7 one"), doc(b"%PDF-1.7 two")
    whole = tar_of([(n, c, tarfile.REGTYPE) for n, c in (first, second)]).getvalue()
    cut = whole[:1024]  # the first member's header and its one data block: a clean boundary
    program = str(PROJECT / "roles/restore/files/enp-docs-receive")
    run = subprocess.run(
        [sys.executable, program, "--dest", str(tmp_path), "--expect", "2"], input=cut, capture_output=True, check=False
    )
    assert run.returncode == 1, run.stdout
    assert b"1 of the 2 documents" in run.stderr
    whole_run = subprocess.run(
        [sys.executable, program, "--dest", str(tmp_path), "--expect", "2"],
        input=whole,
        capture_output=True,
        check=False,
    )
    assert whole_run.returncode == 0, whole_run.stderr
