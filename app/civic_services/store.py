"""Content-addressed document store on disk.

Layout under the store root (which must already exist — a missing mount must not be papered over)::

    sha256/ab/ab12…ef    one immutable file per distinct content, named by its sha256
    tmp/                 staging for writes and the health probe (same filesystem, so rename is atomic)

Metadata (file name, type, ULB, kind) lives in the ``documents`` table; the file name here is the content
hash, so the store is verifiable on its own and trivially backed up (any file copy: rsync, borg, tar).
A blob is written (and fsynced) before the row that references it is committed, so a database snapshot
taken BEFORE a copy of the store never references a missing blob: back up the database first, then the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


class StoreError(Exception):
    """The store cannot be used; the message names the path and the OS error."""


class TooLarge(StoreError):
    """An upload exceeded the size limit."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DocumentStore:
    def __init__(self, root: Path, *, cache_dirs: bool = False) -> None:
        self.root = Path(root)
        # Bulk writers (the seeder) remember which subdirectories exist; a long-running service must not,
        # since the store may be unmounted or restored under it.
        self.cache_dirs = cache_dirs
        self._made: set[str] = set()

    # -- paths ---------------------------------------------------------------------------------
    def path_for(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def _ensure_dirs(self, *subdirs: str) -> None:
        if self.cache_dirs and subdirs and all(sub in self._made for sub in subdirs):
            return
        if not self.root.is_dir():
            raise StoreError(f"document store {self.root} does not exist or is not a directory (volume mounted?)")
        for sub in subdirs:
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"document store {self.root / sub}: {exc.strerror}") from None
            self._made.add(sub)

    def _tmp_path(self) -> Path:
        return self.root / "tmp" / f".{os.getpid()}-{secrets.token_hex(8)}"

    # -- writing -------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, *, durable: bool = True, sha256: str | None = None) -> tuple[str, int]:
        """Store data (sha256: its digest if the caller already computed it). Returns (sha256, size)."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        final = self.path_for(sha)
        if final.is_file() and final.stat().st_size == len(data):
            return sha, len(data)
        self._ensure_dirs("tmp", f"sha256/{sha[:2]}")
        tmp = self._tmp_path()
        try:
            with tmp.open("xb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            self._commit(tmp, final, durable=durable)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"document store {self.root}: cannot write blob: {exc.strerror}") from None
        return sha, len(data)

    def put_stream(self, stream: BinaryIO, max_bytes: int) -> tuple[str, int, bytes]:
        """Copy a stream into the store while hashing it. Returns (sha256, size, first 16 bytes)."""
        self._ensure_dirs("tmp")
        tmp = self._tmp_path()
        h = hashlib.sha256()
        size = 0
        head = b""
        try:
            with tmp.open("xb") as fh:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"upload larger than {max_bytes} bytes")
                    if len(head) < 16:
                        head = (head + chunk)[:16]
                    h.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            sha = h.hexdigest()
            final = self.path_for(sha)
            if final.is_file() and final.stat().st_size == size:
                tmp.unlink()
            else:
                self._ensure_dirs(f"sha256/{sha[:2]}")
                self._commit(tmp, final, durable=True)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"document store {self.root}: cannot write upload: {exc.strerror}") from None
        except TooLarge:
            tmp.unlink(missing_ok=True)
            raise
        return sha, size, head

    @staticmethod
    def _commit(tmp: Path, final: Path, *, durable: bool) -> None:
        os.chmod(tmp, 0o444)  # blobs are immutable; readable by the backup user too
        os.replace(tmp, final)
        if durable:
            fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- reading -------------------------------------------------------------------------------
    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path_for(sha256).open("rb")
        except OSError as exc:
            raise StoreError(f"document {sha256} not readable in {self.root}: {exc.strerror}") from None

    def check_blob(self, sha256: str, size: int) -> str | None:
        """None if the blob is present and intact, else what is wrong (missing, size, content)."""
        path = self.path_for(sha256)
        try:
            actual_size = path.stat().st_size
        except FileNotFoundError:
            return "missing from the store"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        if actual_size != size:
            return f"size {actual_size} bytes, expected {size}"
        actual = sha256_file(path)
        if actual != sha256:
            return f"content changed (sha256 now {actual})"
        return None

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for blob in sorted(sub.iterdir()):
                if SHA256_RE.match(blob.name):
                    yield blob.name, blob.stat().st_size

    # -- health --------------------------------------------------------------------------------
    def probe(self) -> None:
        """Write, read back and delete a small random file; raise StoreError saying which step failed."""
        self._ensure_dirs("tmp")
        payload = secrets.token_bytes(32)
        tmp = self.root / "tmp" / f".probe-{os.getpid()}-{secrets.token_hex(6)}"
        step = "write"
        try:
            with tmp.open("xb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            step = "read"
            if tmp.read_bytes() != payload:
                raise StoreError(f"document store {self.root}: probe file read back different bytes")
            step = "delete"
            tmp.unlink()
        except OSError as exc:
            raise StoreError(f"document store {self.root}: probe {step} failed: {exc.strerror}") from None
        finally:
            if step != "delete":
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
