"""A bounded "citizen request loop": steady HTTPS traffic to the portal while a rolling redeploy runs.

It proves (or disproves) "zero failed requests": every request is a citizen's page or API call through the load
balancer; a request fails on a connection or TLS error, a timeout, or a status outside 200-399. 429 (rate limited)
is a failure too but is counted apart: it means the loop itself was too fast, not that the estate failed.

Rate: the load balancer limits one client address to 10 requests/s with a burst of 20 (roles/nginx,
``nginx_rate_limit``/``nginx_rate_limit_burst``), so the default is 8 requests/s in total, below the limit even
while an Ansible run on the same controller also asks the portal for a page now and then.

By default every request opens a new TCP+TLS connection (``Connection: close``), so each one goes through the
balancer's accept, TLS handshake and upstream choice; ``keepalive`` reuses one connection per worker, as a
browser would. A keep-alive connection that the server closes between two requests counts as a failure
("disconnected"): the loop does not retry.

From Python::

    loop = RequestLoop(LoopConfig(url="https://198.18.1.10", ca_file=".lab/pki/ca/ca.crt",
                                  server_name="portal.enagar.lab"))
    loop.start()
    ...                      # the rollout
    loop.stop()
    result = loop.result()   # LoopResult: .failed, .to_dict(), .summary_line()

From the shell (exit 0: no failures, 1: failures, 2: usage)::

    python -m enp.requestloop --url https://198.18.1.10 --ca .lab/pki/ca/ca.crt \\
        --server-name portal.enagar.lab --duration 60 --stop-file /tmp/stop --json

Only the standard library: it runs on any controller Python without the venv's packages.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import itertools
import json
import math
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

DEFAULT_PATHS: tuple[str, ...] = ("/", "/health", "/version", "/api/ulbs")
DEFAULT_RATE = 8.0  # requests/s in total; the load balancer allows 10 r/s (burst 20) per client address
DEFAULT_WORKERS = 4
DEFAULT_TIMEOUT = 5.0
LB_RATE_LIMIT = 10.0  # roles/nginx nginx_rate_limit default, for the CLI's warning
MAX_FAILURES_LISTED = 100
USER_AGENT = "enp-requestloop/1"

Outcome = Literal["ok", "rate_limited", "bad_status", "error"]


class UsageError(ValueError):
    """The loop cannot start as configured (missing CA file, bad URL, ...); the message says what to pass."""


# ---------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class LoopConfig:
    """What to ask, how fast and for how long. ``duration=None`` and no ``stop_file``: until stop()."""

    url: str
    ca_file: str | Path
    paths: tuple[str, ...] = DEFAULT_PATHS
    server_name: str | None = None
    rate: float = DEFAULT_RATE
    workers: int = DEFAULT_WORKERS
    timeout: float = DEFAULT_TIMEOUT
    keepalive: bool = False
    duration: float | None = None
    stop_file: str | Path | None = None


@dataclass(frozen=True)
class Target:
    """Where requests go: the address to connect to, and the prefix of every path."""

    host: str
    port: int
    base_path: str


def parse_url(url: str) -> Target:
    """``https://HOST[:PORT][/prefix]`` -> Target; anything else is a UsageError."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"--url {url!r}: give an https:// URL of the portal, e.g. https://198.18.1.10")
    if parts.query or parts.fragment:
        raise UsageError(f"--url {url!r}: no query or fragment; list the paths with --path")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: {exc}") from None
    return Target(parts.hostname, port, parts.path.rstrip("/"))


def check_config(config: LoopConfig) -> Target:
    """Refuse a configuration that cannot work, with what to pass instead; return the parsed target."""
    target = parse_url(config.url)
    ca = Path(config.ca_file)
    if not ca.is_file():
        raise UsageError(
            f"CA file {ca} not found: pass --ca with the CA that signed the portal's certificate "
            "(the lab's is .lab/pki/ca/ca.crt, written by the pki role when playbooks/site.yml runs)"
        )
    if not config.paths:
        raise UsageError("no paths to ask for: pass at least one --path, e.g. --path /health")
    bad = [p for p in config.paths if not p.startswith("/")]
    if bad:
        raise UsageError(f"paths must start with '/': {', '.join(bad)}")
    if not (config.rate > 0 and math.isfinite(config.rate)):
        raise UsageError(f"--rate {config.rate}: give requests per second > 0 (default {DEFAULT_RATE:g})")
    if config.workers < 1:
        raise UsageError(f"--workers {config.workers}: give at least 1")
    if not config.timeout > 0:
        raise UsageError(f"--timeout {config.timeout}: give seconds > 0")
    if config.duration is not None and not config.duration > 0:
        raise UsageError(f"--duration {config.duration}: give seconds > 0, or leave it out to run until stopped")
    if config.stop_file is not None and Path(config.stop_file).exists():
        raise UsageError(
            f"stop file {config.stop_file} exists already, so the loop would stop at once: remove it or pick another"
        )
    return target


def make_context(ca_file: str | Path) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` only (not the system store), hostname included."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"CA file {ca_file} cannot be loaded ({exc}): pass --ca with a PEM CA certificate") from None


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers: classification, statistics, summary


@dataclass(frozen=True)
class Sample:
    """One request: sent ``offset_s`` after the loop started; ``status`` if answered, ``error`` kind if not."""

    offset_s: float
    path: str
    latency_ms: float
    status: int | None = None
    error: str | None = None
    detail: str = ""

    @property
    def outcome(self) -> Outcome:
        return classify(self.status, self.error)

    @property
    def done_s(self) -> float:
        """When the answer (or the error) came, seconds after the loop started."""
        return self.offset_s + self.latency_ms / 1000


def classify(status: int | None, error: str | None) -> Outcome:
    """ok: answered 200-399 without error; rate_limited: 429; bad_status: any other status; error: no answer."""
    if error is not None or status is None:
        return "error"
    if status == 429:
        return "rate_limited"
    if 200 <= status <= 399:
        return "ok"
    return "bad_status"


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why a request got no answer (the keys of ``by_error``)."""
    kinds: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (ssl.SSLCertVerificationError, "tls_verify"),
        (ssl.SSLError, "tls"),
        (TimeoutError, "timeout"),
        (ConnectionRefusedError, "refused"),
        # RemoteDisconnected is also a ConnectionResetError: closed before any status line.
        (http.client.RemoteDisconnected, "disconnected"),
        ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "reset"),
        (socket.gaierror, "dns"),
        (http.client.HTTPException, "protocol"),
    )
    for types, kind in kinds:
        if isinstance(exc, types):
            return kind
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return "network"
    return "other"


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, at most ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % of the values at or below it."""
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct}: give 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def longest_run(flags: Iterable[bool]) -> int:
    """Length of the longest run of consecutive True values (here: failed requests in send order)."""
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def longest_gap(times: Iterable[float], start: float, end: float) -> float:
    """Longest stretch between ``start``, each time in ``times`` (clamped to [start, end]) and ``end``."""
    points = [start, *sorted(min(max(t, start), end) for t in times), end]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Summary:
    """What the loop saw. ``failed`` includes ``rate_limited``; ``skipped`` ticks were never sent."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    rate_limited: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_not_listed: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    duration_s: float = 0.0
    requests_per_s: float = 0.0
    longest_failure_run: int = 0
    longest_gap_s: float = 0.0


def summarize(
    samples: Iterable[Sample], duration_s: float, *, skipped: int = 0, max_listed: int = MAX_FAILURES_LISTED
) -> Summary:
    """Counts, failures (the first ``max_listed`` in send order), latency of answered requests (any status),
    achieved rate over ``duration_s`` (the sending window), the longest run of consecutive failures and the
    longest time without a successful answer (from the start to the end of the window, or to the last answer)."""
    ordered = sorted(samples, key=lambda s: s.offset_s)
    outcomes = [s.outcome for s in ordered]
    failures = [s for s, o in zip(ordered, outcomes, strict=True) if o != "ok"]
    latencies = [s.latency_ms for s in ordered if s.status is not None]
    end = max([duration_s, *(s.done_s for s in ordered)])
    successes = [s.done_s for s, o in zip(ordered, outcomes, strict=True) if o == "ok"]
    return Summary(
        total=len(ordered),
        ok=len(ordered) - len(failures),
        failed=len(failures),
        rate_limited=outcomes.count("rate_limited"),
        skipped=skipped,
        by_status={str(k): v for k, v in sorted(Counter(s.status for s in ordered if s.status is not None).items())},
        by_error=dict(sorted(Counter(s.error for s in ordered if s.error is not None).items())),
        failures=[
            {
                "offset_s": round(s.offset_s, 3),
                "path": s.path,
                "status": s.status,
                "error": s.error,
                "detail": s.detail,
                "latency_ms": round(s.latency_ms, 1),
            }
            for s in failures[:max_listed]
        ],
        failures_not_listed=max(0, len(failures) - max_listed),
        latency_ms={
            "p50": _round(percentile(latencies, 50)),
            "p95": _round(percentile(latencies, 95)),
            "p99": _round(percentile(latencies, 99)),
            "max": _round(max(latencies, default=None)),
        },
        duration_s=round(duration_s, 3),
        requests_per_s=round(len(ordered) / duration_s, 2) if duration_s > 0 else 0.0,
        longest_failure_run=longest_run(o != "ok" for o in outcomes),
        longest_gap_s=round(longest_gap(successes, 0.0, end), 3) if ordered else 0.0,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def summary_line(summary: Summary) -> str:
    """One line for a person: verdict, counts, what failed, latency, worst stretch."""
    verdict = "OK" if summary.failed == 0 and summary.total > 0 else ("NO REQUESTS" if not summary.total else "FAILED")
    kinds = [f"HTTP {code} x{n}" for code, n in summary.by_status.items() if classify(int(code), None) != "ok"]
    kinds += [f"{kind} x{n}" for kind, n in summary.by_error.items()]
    failed = f"{summary.failed} failed" + (f" ({', '.join(kinds)})" if kinds else "")
    if summary.rate_limited:
        failed += f", of which {summary.rate_limited} rate-limited (429: the loop is too fast, lower --rate)"
    lat = summary.latency_ms
    line = (
        f"{verdict}: {summary.total} requests in {summary.duration_s:.1f} s ({summary.requests_per_s:g}/s), "
        f"{summary.ok} ok, {failed}; latency ms p50 {_fmt(lat.get('p50'))} p95 {_fmt(lat.get('p95'))} "
        f"p99 {_fmt(lat.get('p99'))} max {_fmt(lat.get('max'))}; longest failure run {summary.longest_failure_run}, "
        f"longest gap without a successful answer {summary.longest_gap_s:.2f} s"
    )
    if summary.skipped:
        line += f"; {summary.skipped} not sent (every worker was still waiting for an answer)"
    return line


@dataclass
class LoopResult:
    """The configuration, how the loop ended, and its Summary. ``to_dict()`` is the JSON document."""

    config: LoopConfig
    started_at: str
    stopped_by: str
    summary: Summary

    @property
    def failed(self) -> int:
        return self.summary.failed

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        head: dict[str, Any] = {
            "url": c.url,
            "server_name": c.server_name,
            "paths": list(c.paths),
            "rate": c.rate,
            "workers": c.workers,
            "timeout_s": c.timeout,
            "keepalive": c.keepalive,
            "started_at": self.started_at,
            "stopped_by": self.stopped_by,
        }
        return head | vars(self.summary)

    def summary_line(self) -> str:
        return summary_line(self.summary)


# ---------------------------------------------------------------------------------------------------------------
# The loop


class _Connection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (an address) whose certificate is checked against ``server_name`` (also sent as SNI)."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, timeout: float, server_name: str) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP only
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def host_header(server_name: str, port: int) -> str:
    """The Host header for ``server_name`` on ``port`` (the port only when it is not 443)."""
    return server_name if port == 443 else f"{server_name}:{port}"


def fetch(
    url: str,
    ca_file: str | Path,
    path: str = "/",
    *,
    server_name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, bytes]:
    """One GET on a new connection, verified like the loop's requests: (status, body).

    Raises UsageError for a bad URL or CA file, OSError (ssl.SSLError, TimeoutError, ...) or
    http.client.HTTPException when there is no answer; error_kind() names them.
    """
    target = parse_url(url)
    name = server_name or target.host
    conn = _Connection(target.host, target.port, context=make_context(ca_file), timeout=timeout, server_name=name)
    headers = {"Host": host_header(name, target.port), "User-Agent": USER_AGENT, "Connection": "close"}
    try:
        conn.request("GET", target.base_path + path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class RequestLoop:
    """Sends GETs to ``config.paths`` in turn at ``config.rate`` per second with ``config.workers`` workers.

    A tick that finds every worker busy is not queued (a queue would burst into the rate limit later): it is
    counted as ``skipped``. The loop ends when ``config.duration`` has passed, ``config.stop_file`` appears,
    ``stop_event`` is set or stop() is called; requests in flight then finish (bounded by the timeout).
    """

    def __init__(
        self,
        config: LoopConfig,
        *,
        stop_event: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._target = check_config(config)
        self._context = make_context(config.ca_file)
        self._server_name = config.server_name or self._target.host
        self._headers = {
            "Host": host_header(self._server_name, self._target.port),
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
        }
        if not config.keepalive:
            self._headers["Connection"] = "close"
        self._stop = stop_event or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._skipped = 0
        self._stopped_by = ""
        self._t0 = 0.0
        self._sent_until = 0.0
        self._started_at = ""
        self._local = threading.local()
        self._open: list[_Connection] = []
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    # -- control ---------------------------------------------------------------------------------------------
    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("RequestLoop.start(): already started; make a new RequestLoop for another run")
        self._t0 = self._clock()
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._thread = threading.Thread(target=self._run, name="requestloop", daemon=True)
        self._thread.start()
        return self

    def stop(self, reason: str = "stop()") -> None:
        """Stop sending; requests in flight still finish. Call result() to wait for them."""
        with self._lock:
            self._stopped_by = self._stopped_by or reason
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the loop has ended (duration, stop file, stop()); True if it has."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> LoopResult:
        """The LoopResult, once the loop has ended: stop() it first unless it has a duration or stop file."""
        if self._thread is None:
            raise RuntimeError("RequestLoop.result(): start() the loop first")
        if not self._done.wait(timeout):
            raise TimeoutError("RequestLoop.result(): the loop is still running; call stop() first")
        return LoopResult(self.config, self._started_at, self._stopped_by, self._summary(self._sent_until))

    def progress(self) -> tuple[int, int]:
        """(requests answered or failed so far, failures so far), cheap enough to call from a progress line."""
        with self._lock:
            return len(self._samples), sum(1 for s in self._samples if s.outcome != "ok")

    def partial(self) -> Summary:
        """Summary of what has finished so far, while the loop runs."""
        return self._summary(self._clock() - self._t0 if self.running else self._sent_until)

    def run(self) -> LoopResult:
        """start(), wait for the end (Ctrl-C stops it like stop()), result()."""
        self.start()
        try:
            while not self.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop("interrupted")
        return self.result()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.wait()

    # -- internals -------------------------------------------------------------------------------------------
    def _summary(self, duration_s: float) -> Summary:
        with self._lock:
            samples, skipped = list(self._samples), self._skipped
        return summarize(samples, duration_s, skipped=skipped)

    def _should_stop(self, now: float) -> str:
        if self._stop.is_set():
            return "stop_event"
        if self.config.duration is not None and now - self._t0 >= self.config.duration:
            return "duration"
        if self.config.stop_file is not None and Path(self.config.stop_file).exists():
            return "stop_file"
        return ""

    def _run(self) -> None:
        interval = 1 / self.config.rate
        slots = threading.BoundedSemaphore(self.config.workers)
        paths = self.config.paths
        tick = 0
        next_at = self._t0
        try:
            with ThreadPoolExecutor(self.config.workers, thread_name_prefix="requestloop") as pool:
                while True:
                    now = self._clock()
                    reason = self._should_stop(now)
                    if reason:
                        with self._lock:
                            self._stopped_by = self._stopped_by or reason
                            self._sent_until = now - self._t0
                        break
                    if now < next_at:
                        self._stop.wait(min(next_at - now, 0.25))
                        continue
                    path = paths[tick % len(paths)]
                    tick += 1
                    if slots.acquire(blocking=False):
                        pool.submit(self._request, path, slots)
                    else:
                        with self._lock:
                            self._skipped += 1
                    next_at += interval
                    if next_at < now - 1.0:  # far behind (a stalled controller): do not catch up in a burst
                        next_at = now + interval
        finally:
            for conn in self._open:
                conn.close()
            self._done.set()

    def _connection(self) -> _Connection:
        """A new connection per request, or this worker's keep-alive connection."""
        if self.config.keepalive:
            conn: _Connection | None = getattr(self._local, "conn", None)
            if conn is not None:
                return conn
        conn = _Connection(
            self._target.host,
            self._target.port,
            context=self._context,
            timeout=self.config.timeout,
            server_name=self._server_name,
        )
        if self.config.keepalive:
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        return conn

    def _request(self, path: str, slots: threading.BoundedSemaphore) -> None:
        started = self._clock()
        status: int | None = None
        error: str | None = None
        detail = ""
        conn: _Connection | None = None
        try:
            conn = self._connection()
            conn.request("GET", self._target.base_path + path, headers=self._headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            if status not in range(200, 400):
                detail = f"HTTP {status} {response.reason}"
        except Exception as exc:  # every failure is a data point, never a crashed worker
            error, detail = error_kind(exc), describe(exc)
            if self.config.keepalive and conn is not None:
                conn.close()
                self._local.conn = None
        finally:
            if not self.config.keepalive and conn is not None:
                conn.close()
            elapsed = self._clock() - started
            if error is None and elapsed > self.config.timeout:
                error = "timeout"
                detail = f"HTTP {status} after {elapsed:.1f} s, over the {self.config.timeout:g} s timeout"
            sample = Sample(started - self._t0, path, elapsed * 1000, status, error, detail)
            with self._lock:
                self._samples.append(sample)
            slots.release()


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m enp.requestloop",
        description=(
            "Send steady HTTPS requests to the portal and report every failed one (connection or TLS error, "
            "timeout, status outside 200-399; 429 counted apart). Exit 0: no failures, 1: failures, 2: usage."
        ),
    )
    parser.add_argument("--url", required=True, help="base URL, e.g. https://198.18.1.10")
    parser.add_argument(
        "--ca", required=True, type=Path, help="CA file to verify the server with, e.g. .lab/pki/ca/ca.crt"
    )
    parser.add_argument(
        "--server-name",
        help="name to check the certificate against and send as SNI and Host (e.g. portal.enagar.lab) "
        "while connecting to the URL's address (default: the URL's host)",
    )
    parser.add_argument(
        "--path",
        dest="paths",
        action="append",
        metavar="PATH",
        help=f"path to ask for, repeatable, taken in turn (default: {' '.join(DEFAULT_PATHS)})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"requests per second in total (default {DEFAULT_RATE:g}; the load balancer allows "
        f"{LB_RATE_LIMIT:g}/s with a burst of 20 per client, beyond that 429)",
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help=f"requests in flight at most (default {DEFAULT_WORKERS})"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds per request (default {DEFAULT_TIMEOUT:g})"
    )
    parser.add_argument(
        "--keepalive", action="store_true", help="reuse one connection per worker (default: a new one per request)"
    )
    parser.add_argument("--duration", type=float, help="seconds to run (default: until --stop-file appears or Ctrl-C)")
    parser.add_argument("--stop-file", type=Path, help="stop when this file appears")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = LoopConfig(
        url=args.url,
        ca_file=args.ca,
        paths=tuple(args.paths or DEFAULT_PATHS),
        server_name=args.server_name,
        rate=args.rate,
        workers=args.workers,
        timeout=args.timeout,
        keepalive=args.keepalive,
        duration=args.duration,
        stop_file=args.stop_file,
    )
    try:
        loop = RequestLoop(config)
    except UsageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    if config.rate >= LB_RATE_LIMIT:
        print(
            f"{parser.prog}: note: --rate {config.rate:g} is at or above the load balancer's {LB_RATE_LIMIT:g}/s per "
            "client: expect 429s once its burst of 20 is used up",
            file=sys.stderr,
        )
    if config.duration is None and config.stop_file is None:
        print(f"{parser.prog}: running until Ctrl-C", file=sys.stderr)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        loop.stop("SIGTERM")

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main_thread else None
    try:
        result = loop.run()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.summary_line())
        for failure in result.summary.failures[:10]:
            what = failure["detail"] or failure["error"] or f"HTTP {failure['status']}"
            print(f"  +{failure['offset_s']:8.3f}s  {failure['path']:<12} {what}")
        more = result.failed - min(10, len(result.summary.failures))
        if more > 0:
            print(f"  ... and {more} more (--json lists the first {MAX_FAILURES_LISTED})")
    return 0 if result.failed == 0 and result.summary.total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
