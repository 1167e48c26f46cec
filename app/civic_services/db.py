"""PostgreSQL access with psycopg2: a tiny per-process connection pool with one honest retry.

A pooled connection may have died since its last use (database restart, failover to the standby). Reads
on a reused connection are retried once on a fresh one; writes ping a reused connection first and are
never replayed after they started, so a payment is not recorded twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from civic_services.config import DatabaseConfig

T = TypeVar("T")
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Database:
    def __init__(
        self, cfg: DatabaseConfig, *, application_name: str, pool_max: int = 4, statement_timeout: bool = True
    ) -> None:
        self.cfg = cfg
        self.application_name = application_name
        self.pool_max = pool_max
        self.statement_timeout = statement_timeout
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()

    def connect(self) -> psycopg2.extensions.connection:
        """A new connection (the caller closes it); its session time zone is UTC."""
        params = self.cfg.libpq_params(self.application_name, statement_timeout=self.statement_timeout)
        return psycopg2.connect(**params)

    def _get(self) -> tuple[psycopg2.extensions.connection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
        return self.connect(), False

    def _put(self, conn: psycopg2.extensions.connection, *, broken: bool) -> None:
        if not broken and not conn.closed:
            with self._lock:
                if len(self._idle) < self.pool_max:
                    self._idle.append(conn)
                    return
        with contextlib.suppress(Exception):
            conn.close()

    def run(self, fn: Callable[[psycopg2.extensions.cursor], T], *, write: bool = False) -> T:
        """Run fn(cursor) in one transaction (committed if fn returns, rolled back if it raises)."""
        for attempt in (1, 2):
            conn, reused = self._get()
            started = False
            try:
                if write and reused:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    conn.rollback()
                started = True
                with conn.cursor() as cur:
                    result = fn(cur)
                conn.commit()
            except CONNECTION_ERRORS:
                self._put(conn, broken=True)
                if attempt == 1 and reused and (not write or not started):
                    continue
                raise
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                self._put(conn, broken=bool(conn.closed))
                raise
            self._put(conn, broken=False)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
