"""The backup server's program (roles/backup/files/enp-backup): what a compromised app server can send it.

The app server's listing and tar stream are untrusted input. These tests feed docs_pull_host a hostile listing and
tar stream (absolute names, '..', symlinks, names that were never asked for, names that later "vanish") and check
that nothing outside the replica is written or removed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import pathlib
import sys
import tarfile
import types

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "plugins" / "module_utils"))  # enp_restore_point, as installed beside it
LOADER = importlib.machinery.SourceFileLoader("enp_backup_program", str(PROJECT / "roles/backup/files/enp-backup"))
SPEC = importlib.util.spec_from_loader("enp_backup_program", LOADER)
assert SPEC
PROGRAM = importlib.util.module_from_spec(SPEC)
LOADER.exec_module(PROGRAM)

BLOB = "sha256/ab/" + "ab" * 32


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        (BLOB, True),
        (BLOB + ".enplocked", True),
        ("README_RESTORE_FILES.txt", True),
        ("/var/lib/enp-backup/pgbackrest/backup/civic/backup.info", False),
        ("../../pgbackrest/archive/civic/archive.info", False),
        ("sha256/../../pool/x", False),
        ("sha256/./ab", False),
        ("tmp/upload", False),
        ("sha256//ab", False),
        ("sha256/ab/x\nother", False),
        ("", False),
    ],
)
def test_only_plain_relative_names_inside_the_store_are_accepted(name: str, safe: bool) -> None:
    assert PROGRAM.safe_member(name) is safe


def test_inside_refuses_paths_that_resolve_outside(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "current"
    root.mkdir()
    assert PROGRAM.inside(str(root), BLOB).startswith(str(root) + "/")
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(RuntimeError, match="outside"):
        PROGRAM.inside(str(root), "link/victim")


class FakeProc:
    def __init__(self, stdout: bytes | str) -> None:
        self.returncode = 0
        self.stdin = io.BytesIO()
        self.stdin.close = lambda: None  # type: ignore[method-assign]
        self.stdout = io.BytesIO(stdout) if isinstance(stdout, bytes) else None
        self.stderr = io.BytesIO(b"")
        self._text = stdout if isinstance(stdout, str) else ""

    def communicate(self) -> tuple[str, str]:
        return self._text, ""

    def wait(self) -> int:
        return 0


def hostile_tar(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/var/lib/enp-backup"
            tar.addfile(info)
    return buffer.getvalue()


def test_a_hostile_listing_and_tar_stream_cannot_touch_anything_outside_the_replica(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "enp-backup"
    victim = base / "pgbackrest" / "backup.info"
    victim.parent.mkdir(parents=True)
    victim.write_text("the repository")
    cfg = {"base_dir": str(base)}
    host = {"name": "app1", "address": "198.18.2.11", "user": "enp-docs"}
    outside = "../../pgbackrest/backup.info"
    listing = "\n".join(
        [
            f"{BLOB}\t3\t1\t1",
            f"{outside}\t3\t1\t1",
            f"{victim}\t3\t1\t1",
            "garbage line without fields",
            f"sha256/cd/{'cd' * 32}\tnot-a-number\t1\t1",
        ]
    )
    stream = hostile_tar({BLOB: b"abc", outside: b"evil", "sha256/ef/unrequested": b"x"}, symlink="sha256/zz")
    calls = iter([FakeProc(listing), FakeProc(stream)])
    monkeypatch.setattr(PROGRAM, "ssh", lambda *_args, **_kwargs: next(calls))
    pulled = PROGRAM.docs_pull_host(cfg, host)
    current = base / "docs" / "app1" / "current"
    assert sorted(str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()) == [BLOB]
    assert pulled["files"] == 1 and victim.read_text() == "the repository"
    index = json.loads((base / "docs" / "app1" / "index.json").read_text())
    assert list(index) == [BLOB], "an unsafe name must never reach the index"

    # Next pull: the attacker's listing "forgets" everything, and an index forged with outside names is ignored.
    index[outside] = [3, 1, 1]
    (base / "docs" / "app1" / "index.json").write_text(json.dumps(index))
    calls = iter([FakeProc("")])
    monkeypatch.setattr(PROGRAM, "ssh", lambda *_args, **_kwargs: next(calls))
    pulled = PROGRAM.docs_pull_host(cfg, host)
    assert pulled["removed"] == 1 and not (current / BLOB).exists()
    assert victim.read_text() == "the repository", "a vanished outside name must never be unlinked"


def test_the_program_module_loaded() -> None:
    assert isinstance(PROGRAM, types.ModuleType) and callable(PROGRAM.main)
