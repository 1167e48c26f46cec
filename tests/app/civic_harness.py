"""Test harness for civic-services: a throwaway PostgreSQL, the app's CLI and gunicorn, all on Unix sockets.

The application runs exactly as on an app host: Debian's /usr/bin/python3 with python3-flask and
python3-psycopg2, and Debian's gunicorn; the test process (the venv) only talks to it over sockets and
subprocesses, so the venv needs neither Flask nor psycopg2.

PostgreSQL: initdb + pg_ctl from the Debian postgresql package into a temporary directory, listening on
a Unix socket only (listen_addresses=''), trust authentication, fsync off. Run as root (make test), the
server runs as the `postgres` user (initdb refuses root). One server per pytest session, stopped by PID
(pg_ctl, then the postmaster PID if needed) and its directory removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
APP_DIR = PROJECT / "app"
CLI = APP_DIR / "bin" / "civic-services"
SYSTEM_PYTHON = "/usr/bin/python3"
CONTROLLER_PACKAGES = "postgresql python3-flask python3-psycopg2 gunicorn"
SUPERUSER = "civic_admin"
APP_ROLE = "civic_app"


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _gunicorn() -> list[str] | None:
    if Path("/usr/bin/gunicorn").exists():
        return ["/usr/bin/gunicorn"]
    return None


def runtime_missing() -> str | None:
    """Why the app cannot run here (and what to install), or None."""
    missing = []
    if _pg_bindir() is None:
        missing.append("PostgreSQL server binaries (initdb, pg_ctl)")
    if not Path(SYSTEM_PYTHON).exists():
        missing.append(SYSTEM_PYTHON)
    else:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import flask, psycopg2"], capture_output=True, text=True, check=False
        )
        if probe.returncode:
            missing.append("Flask/psycopg2 for /usr/bin/python3")
    if _gunicorn() is None:
        missing.append("gunicorn")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the postgres user (created by the postgresql package)")
    if missing:
        return f"civic-services runtime missing: {', '.join(missing)}; apt-get install {CONTROLLER_PACKAGES}"
    return None


requires_runtime = pytest.mark.skipif(runtime_missing() is not None, reason=runtime_missing() or "")


class PgCluster:
    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.base = Path(tempfile.mkdtemp(prefix="civic-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base
        self.log = self.base / "server.log"
        self.as_user: str | None = None
        if os.geteuid() == 0:
            self.as_user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.base.chmod(0o755)
        self.pid: int | None = None

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.as_user:
            kwargs = {"user": self.as_user, "group": self.as_user, "extra_groups": []}
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            check=check,
            cwd=self.base,
            timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.base)},
            **kwargs,
        )

    def start(self) -> None:
        assert self.bindir is not None
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40 -c shared_buffers=64MB"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.bindir and (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 0)
                os.kill(self.pid, signal.SIGKILL)  # pg_ctl failed: end the postmaster we started, by PID
        self.pid = None

    def restart_after(self) -> None:
        """Start again after a stop() (same data directory)."""
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40 -c shared_buffers=64MB"
        )
        assert self.bindir is not None
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, dbname: str, sql: str, *, user: str = SUPERUSER) -> str:
        assert self.bindir is not None
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-U", user, "-d", dbname, "-c", sql],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name


_CLUSTER: PgCluster | None = None


def cluster(request: pytest.FixtureRequest) -> PgCluster:
    """The session's PostgreSQL (started on first use, stopped and removed when pytest ends)."""
    global _CLUSTER  # one server per pytest process
    if _CLUSTER is None:
        pg = PgCluster()
        request.config.add_cleanup(pg.destroy)
        pg.start()
        pg.psql("postgres", f"CREATE ROLE {APP_ROLE} LOGIN")
        _CLUSTER = pg
    return _CLUSTER


@dataclass
class Estate:
    """One database + document store + the environment the app reads its settings from."""

    pg: PgCluster
    dbname: str
    store: Path
    workdir: Path
    password_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def app_env(self, *, user: str = SUPERUSER, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "LC_ALL": "C.UTF-8",
            "CIVIC_CONFIG": str(self.workdir / "civic-services.conf"),
            "CIVIC_DB_HOST": str(self.pg.socket_dir),
            "CIVIC_DB_NAME": self.dbname,
            "CIVIC_DB_USER": user,
            "CIVIC_DB_PASSWORD_FILE": str(self.password_file),
            "CIVIC_STORE_PATH": str(self.store),
            "CIVIC_MAX_UPLOAD_BYTES": str(256 * 1024),
        }
        env.update(extra)
        return env

    def cli(
        self, *args: str, user: str = SUPERUSER, timeout: float = 120, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYSTEM_PYTHON, str(CLI), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=self.app_env(user=user, **extra),
        )

    def sql(self, statement: str) -> str:
        return self.pg.psql(self.dbname, statement)


SECRET_PASSWORD = "s3cret-must-never-appear-in-logs"  # noqa: S105 - a canary searched for in the logs


def make_estate(pg: PgCluster, base: Path, prefix: str) -> Estate:
    dbname = pg.create_database(prefix)
    store = base / "store"
    store.mkdir()
    password_file = base / "db-password"
    password_file.write_text(SECRET_PASSWORD + "\n")
    password_file.chmod(0o600)
    (base / "civic-services.conf").write_text("[app]\nlog_level = INFO\n")
    return Estate(pg=pg, dbname=dbname, store=store, workdir=base, password_file=password_file)


# -- gunicorn and HTTP over a Unix socket ------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 10) -> None:
        super().__init__("civic.test", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Server:
    """gunicorn serving civic_services.wsgi:application from `chdir` on a Unix socket."""

    def __init__(self, chdir: Path, env: Mapping[str, str], workdir: Path) -> None:
        self.chdir = chdir
        self.env = dict(env)
        self.socket = workdir / f"gunicorn-{uuid.uuid4().hex[:6]}.sock"
        self.log = workdir / f"gunicorn-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, expect_boot: bool = True, timeout: float = 15) -> None:
        gunicorn = _gunicorn()
        assert gunicorn is not None
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*gunicorn, "--chdir", str(self.chdir), "--bind", f"unix:{self.socket}", "--workers", "1",
                 "--timeout", "20", "--graceful-timeout", "2", "civic_services.wsgi:application"],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        if not expect_boot:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}:\n{self.log.read_text()}")
            if self.socket.exists():
                try:
                    if self.request("GET", "/version").status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{self.log.read_text()}")

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        conn = UnixHTTPConnection(self.socket)
        try:
            # The server may answer (413) and close before reading the whole body: then read that answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_json(self, path: str, data: object) -> Response:
        return self.request("POST", path, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def post_file(self, path: str, fields: Mapping[str, str], filename: str, content: bytes) -> Response:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST", path, b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def serving(chdir: Path, env: Mapping[str, str], workdir: Path) -> Iterator[Server]:
    server = Server(chdir, env, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def load_build_release() -> Any:
    """scripts/build_release.py as a module (it is a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("civic_build_release", PROJECT / "scripts" / "build_release.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_app(module: str) -> Any:
    """Import a pure civic_services module (no Flask/psycopg2) into the test process."""
    import importlib
    import sys

    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    return importlib.import_module(module)
