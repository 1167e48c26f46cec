"""enp.requestloop: the pure helpers (table-driven), then real loops against a throwaway HTTPS server on 127.0.0.1.

The server's CA and certificate (SANs: DNS portal.test, IP 127.0.0.1) are made with `cryptography` per module.
It answers 200 on /ok and /health, 503 on /bad, 429 on /limited, and sleeps on /slow.
"""

from __future__ import annotations

import datetime as dt
import errno
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from enp import requestloop
from enp.requestloop import (
    LoopConfig,
    RequestLoop,
    Sample,
    UsageError,
    classify,
    error_kind,
    host_header,
    longest_gap,
    longest_run,
    percentile,
    summarize,
    summary_line,
)

# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank: ceil(0.5*4) = 2nd
        ([4.0, 3.0, 2.0, 1.0], 50, 2.0),  # order of input does not matter
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([float(i) for i in range(1, 21)], 95, 19.0),  # ceil(19.0) = 19th
        ([float(i) for i in range(1, 11)], 95, 10.0),  # ceil(9.5) = 10th
        ([5.0, 1.0], 0, 1.0),
    ],
)
def test_percentile(values: list[float], pct: float, expected: float | None) -> None:
    assert percentile(values, pct) == expected


@pytest.mark.parametrize("pct", [-1, 100.5])
def test_percentile_refuses_out_of_range(pct: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], pct)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, "ok"),
        (204, None, "ok"),
        (301, None, "ok"),
        (399, None, "ok"),
        (199, None, "bad_status"),
        (400, None, "bad_status"),
        (404, None, "bad_status"),
        (429, None, "rate_limited"),
        (500, None, "bad_status"),
        (502, None, "bad_status"),
        (503, None, "bad_status"),
        (None, "timeout", "error"),
        (None, None, "error"),
        (200, "timeout", "error"),  # answered, but after the timeout
    ],
)
def test_classify(status: int | None, error: str | None, expected: str) -> None:
    assert classify(status, error) == expected


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ssl.SSLCertVerificationError("certificate verify failed"), "tls_verify"),
        (ssl.SSLError("wrong version number"), "tls"),
        (TimeoutError("timed out"), "timeout"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (http.client.RemoteDisconnected("closed"), "disconnected"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "reset"),
        (BrokenPipeError(errno.EPIPE, "pipe"), "reset"),
        (socket.gaierror(-2, "Name or service not known"), "dns"),
        (http.client.BadStatusLine("garbage"), "protocol"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (OSError(errno.EIO, "I/O"), "network"),
        (ValueError("odd"), "other"),
    ],
)
def test_error_kind(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


@pytest.mark.parametrize(
    ("name", "port", "expected"),
    [("portal.enagar.lab", 443, "portal.enagar.lab"), ("127.0.0.1", 8443, "127.0.0.1:8443")],
)
def test_host_header(name: str, port: int, expected: str) -> None:
    assert host_header(name, port) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], 0),
        ([False, False], 0),
        ([True], 1),
        ([True, False, True, True, False, True], 2),
        ([False, True, True, True], 3),
    ],
)
def test_longest_run(flags: list[bool], expected: int) -> None:
    assert longest_run(flags) == expected


@pytest.mark.parametrize(
    ("times", "start", "end", "expected"),
    [
        ([], 0.0, 10.0, 10.0),  # no success at all: the whole window
        ([1.0, 2.0, 3.0], 0.0, 3.5, 1.0),
        ([0.5, 4.5, 5.0], 0.0, 5.0, 4.0),  # the hole in the middle
        ([3.0, 1.0, 2.0], 0.0, 9.0, 6.0),  # unsorted input; the tail after the last success counts
        ([0.1], 0.0, 0.1, 0.1),
        ([-1.0, 20.0], 0.0, 10.0, 10.0),  # clamped into the window
        ([], 5.0, 5.0, 0.0),
    ],
)
def test_longest_gap(times: list[float], start: float, end: float, expected: float) -> None:
    assert longest_gap(times, start, end) == pytest.approx(expected)


def _sample(
    offset: float, path: str = "/", status: int | None = 200, error: str | None = None, ms: float = 10.0
) -> Sample:
    return Sample(offset, path, ms, status, error, "" if error is None else f"{error} detail")


def test_summarize_counts_failures_latency_and_gaps() -> None:
    samples = [
        _sample(0.0, ms=10),
        _sample(0.5, "/health", 503, ms=20),
        _sample(1.0, "/api", None, "timeout", ms=5000),
        _sample(1.5, ms=30),
        _sample(2.0, "/x", 429, ms=5),
        _sample(2.5, ms=40),
    ]
    summary = summarize(reversed(samples), 3.0)  # order of arrival does not matter: sorted by send time
    assert (summary.total, summary.ok, summary.failed, summary.rate_limited) == (6, 3, 3, 1)
    assert summary.by_status == {"200": 3, "429": 1, "503": 1}
    assert summary.by_error == {"timeout": 1}
    assert [(f["offset_s"], f["path"], f["status"], f["error"]) for f in summary.failures] == [
        (0.5, "/health", 503, None),
        (1.0, "/api", None, "timeout"),
        (2.0, "/x", 429, None),
    ]
    assert summary.failures_not_listed == 0
    # Latency of answered requests only (the timeout has no answer): 5, 10, 20, 30, 40 ms.
    assert summary.latency_ms == {"p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0}
    assert summary.requests_per_s == 2.0
    assert summary.longest_failure_run == 2  # 503 then timeout
    # Successes answered at 0.01, 1.53, 2.54; the window ends at the timeout's end, 6.0 s.
    assert summary.longest_gap_s == pytest.approx(6.0 - 2.54)
    line = summary_line(summary)
    assert line.startswith("FAILED: 6 requests")
    assert "HTTP 503 x1" in line and "HTTP 429 x1" in line and "timeout x1" in line and "rate-limited" in line


def test_summarize_all_good() -> None:
    summary = summarize([_sample(i * 0.125) for i in range(16)], 2.0)
    assert (summary.total, summary.ok, summary.failed, summary.longest_failure_run) == (16, 16, 0, 0)
    assert summary.by_status == {"200": 16}
    assert summary.longest_gap_s == pytest.approx(0.125)
    assert summary_line(summary).startswith("OK: 16 requests in 2.0 s (8/s), 16 ok, 0 failed;")


def test_summarize_caps_the_failure_list() -> None:
    summary = summarize([_sample(i / 100, status=503) for i in range(130)], 2.0, max_listed=100)
    assert summary.failed == 130
    assert len(summary.failures) == 100 and summary.failures_not_listed == 30
    assert summary.failures[0]["offset_s"] == 0.0 and summary.failures[-1]["offset_s"] == 0.99
    assert summary.longest_failure_run == 130 and summary.longest_gap_s == 2.0


def test_summarize_nothing() -> None:
    summary = summarize([], 0.0, skipped=3)
    assert (summary.total, summary.failed, summary.requests_per_s, summary.longest_gap_s) == (0, 0, 0.0, 0.0)
    assert summary.latency_ms == {"p50": None, "p95": None, "p99": None, "max": None}
    assert summary_line(summary).startswith("NO REQUESTS")
    assert "3 not sent" in summary_line(summary)


@pytest.mark.parametrize(
    ("url", "changes", "message"),
    [
        ("http://127.0.0.1", {}, "https:// URL"),
        ("https://", {}, "https:// URL"),
        ("https://127.0.0.1/?x=1", {}, "no query"),
        ("https://127.0.0.1", {"ca_file": "/nonexistent/ca.crt"}, "pass --ca"),
        ("https://127.0.0.1", {"paths": ()}, "at least one --path"),
        ("https://127.0.0.1", {"paths": ("health",)}, "start with '/'"),
        ("https://127.0.0.1", {"rate": 0}, "--rate"),
        ("https://127.0.0.1", {"workers": 0}, "--workers"),
        ("https://127.0.0.1", {"timeout": 0}, "--timeout"),
        ("https://127.0.0.1", {"duration": -1}, "--duration"),
    ],
)
def test_config_is_checked(pki: dict[str, Path], url: str, changes: dict[str, object], message: str) -> None:
    config = LoopConfig(url=url, ca_file=pki["ca"])
    config = LoopConfig(**(vars(config) | changes))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message):
        RequestLoop(config)


def test_existing_stop_file_is_refused(pki: dict[str, Path], tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    with pytest.raises(UsageError, match="exists already"):
        RequestLoop(LoopConfig(url="https://127.0.0.1", ca_file=pki["ca"], stop_file=stop))


def test_ca_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    with pytest.raises(UsageError, match="cannot be loaded"):
        RequestLoop(LoopConfig(url="https://127.0.0.1", ca_file=bogus))


# ---------------------------------------------------------------------------------------------------------------
# A throwaway HTTPS server on 127.0.0.1


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(directory: Path, label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"test CA {label}"))
        .issuer_name(_name(f"test CA {label}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"ca-{label}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ca: signs the server; other_ca: a CA that does not; cert/key: the server's (portal.test, 127.0.0.1)."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_path = _make_ca(directory, "good")
    _other_key, _other_cert, other_path = _make_ca(directory, "other")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("portal.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("portal.test"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {"ca": ca_path, "other_ca": other_path, "cert": cert_path, "key": key_path}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive possible; every answer has a Content-Length
    STATUS: ClassVar[dict[str, int]] = {
        "/ok": 200,
        "/health": 200,
        "/redirect": 302,
        "/bad": 503,
        "/limited": 429,
        "/slow": 200,
    }

    def do_GET(self) -> None:
        server: TestServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.seen.append((self.path, self.headers.get("Host"), self.client_address[1]))
            server.connection_headers.add(self.headers.get("Connection"))
        if self.path == "/slow":
            time.sleep(1.0)
        status = self.STATUS.get(self.path, 404)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "/ok")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class TestServer(ThreadingHTTPServer):
    __test__ = False  # not a pytest test class
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str | None, int]] = []
        self.connection_headers: set[str | None] = set()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # TLS handshakes the client refuses (wrong CA or name) are expected in these tests

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server(pki: dict[str, Path]) -> Iterator[TestServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    httpd = TestServer(context)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _run(server: TestServer, pki: dict[str, Path], **kwargs: object) -> requestloop.LoopResult:
    options: dict[str, object] = {"rate": 40.0, "workers": 4, "timeout": 2.0, "duration": 0.4} | kwargs
    config = LoopConfig(url=server.url, ca_file=pki["ca"], **options)  # type: ignore[arg-type]
    return RequestLoop(config).run()


# ---------------------------------------------------------------------------------------------------------------
# Real loops


def test_good_paths_give_zero_failures(server: TestServer, pki: dict[str, Path]) -> None:
    result = _run(server, pki, paths=("/ok", "/health", "/redirect"))
    s = result.summary
    assert s.total >= 8, s  # 0.4 s at 40/s = 16 ticks; allow a busy machine
    assert (s.failed, s.ok) == (0, s.total)
    assert set(s.by_status) == {"200", "302"}
    assert s.by_error == {} and s.failures == []
    assert result.stopped_by == "duration"
    assert 0 < s.latency_ms["p50"] <= s.latency_ms["p95"] <= s.latency_ms["p99"] <= s.latency_ms["max"]  # type: ignore[operator]
    assert s.longest_gap_s < s.duration_s
    assert len(server.seen) == s.total
    # A new connection per request: as many client ports as requests.
    assert len({port for _path, _host, port in server.seen}) == s.total
    assert server.connection_headers == {"close"}
    assert result.summary_line().startswith(f"OK: {s.total} requests")


def test_failing_path_is_counted(server: TestServer, pki: dict[str, Path]) -> None:
    s = _run(server, pki, paths=("/ok", "/bad")).summary
    bad = sum(1 for path, _host, _port in server.seen if path == "/bad")
    assert bad >= 3
    assert s.failed == bad and s.ok == s.total - bad
    assert s.by_status == {"200": s.ok, "503": bad}
    assert {(f["path"], f["status"], f["error"]) for f in s.failures} == {("/bad", 503, None)}
    assert s.rate_limited == 0
    assert s.longest_failure_run <= 2  # /ok and /bad alternate (2 only if a tick was skipped)


def test_429_is_a_failure_counted_apart(server: TestServer, pki: dict[str, Path]) -> None:
    s = _run(server, pki, paths=("/ok", "/limited")).summary
    assert s.rate_limited > 0 and s.failed == s.rate_limited
    assert "rate-limited" in summary_line(s)


def test_server_name_is_sni_and_host(server: TestServer, pki: dict[str, Path]) -> None:
    s = _run(server, pki, paths=("/ok",), server_name="portal.test", duration=0.2).summary
    assert s.failed == 0 and s.total > 0
    port = server.server_address[1]
    assert {host for _path, host, _port in server.seen} == {f"portal.test:{port}"}


@pytest.mark.parametrize(
    ("ca", "server_name"),
    [
        ("ca", "wrong.test"),  # right CA, name not in the certificate
        ("other_ca", None),  # certificate not signed by the CA we trust
    ],
)
def test_tls_is_verified(server: TestServer, pki: dict[str, Path], ca: str, server_name: str | None) -> None:
    config = LoopConfig(url=server.url, ca_file=pki[ca], paths=("/ok",), server_name=server_name, rate=40, duration=0.2)
    s = RequestLoop(config).run().summary
    assert s.total > 0 and s.failed == s.total
    assert s.by_error == {"tls_verify": s.total}
    assert server.seen == []


def test_timeout_is_a_failure(server: TestServer, pki: dict[str, Path]) -> None:
    s = _run(server, pki, paths=("/slow",), rate=10, timeout=0.3, duration=0.25).summary
    assert s.total > 0 and s.by_error == {"timeout": s.total}
    assert s.latency_ms["max"] is None  # no answers


def test_refused_connection(pki: dict[str, Path]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = LoopConfig(url=f"https://127.0.0.1:{port}", ca_file=pki["ca"], rate=20, duration=0.2)
    s = RequestLoop(config).run().summary
    assert s.total > 0 and s.by_error == {"refused": s.total}
    assert s.longest_failure_run == s.total


def test_keepalive_reuses_connections(server: TestServer, pki: dict[str, Path]) -> None:
    s = _run(server, pki, paths=("/ok", "/health"), keepalive=True, workers=2).summary
    assert s.failed == 0 and s.total >= 8
    assert len({port for _path, _host, port in server.seen}) <= 2
    assert server.connection_headers == {None}


def test_stop_file_and_stop(server: TestServer, pki: dict[str, Path], tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    loop = RequestLoop(LoopConfig(url=server.url, ca_file=pki["ca"], paths=("/ok",), rate=40, stop_file=stop_file))
    loop.start()
    time.sleep(0.3)
    assert loop.running and loop.progress()[0] > 0 and loop.partial().ok > 0
    stop_file.touch()
    assert loop.wait(2.0)
    result = loop.result()
    assert result.stopped_by == "stop_file" and result.failed == 0
    assert 0.25 < result.summary.duration_s < 1.0

    event = threading.Event()
    loop = RequestLoop(LoopConfig(url=server.url, ca_file=pki["ca"], paths=("/ok",), rate=40), stop_event=event)
    with pytest.raises(RuntimeError, match="start"):
        loop.result()
    loop.start()
    with pytest.raises(TimeoutError, match="stop"):
        loop.result(timeout=0.1)
    event.set()
    assert loop.result(timeout=2.0).stopped_by == "stop_event"

    with RequestLoop(LoopConfig(url=server.url, ca_file=pki["ca"], paths=("/ok",), rate=40)) as loop:
        time.sleep(0.1)
    assert loop.result(timeout=0).stopped_by == "stop()"


def test_fetch(server: TestServer, pki: dict[str, Path]) -> None:
    status, body = requestloop.fetch(server.url, pki["ca"], "/bad", server_name="portal.test")
    assert (status, json.loads(body)) == (503, {"path": "/bad"})
    assert server.seen[-1][1] == f"portal.test:{server.server_address[1]}"
    with pytest.raises(ssl.SSLCertVerificationError):
        requestloop.fetch(server.url, pki["other_ca"], "/ok")


# ---------------------------------------------------------------------------------------------------------------
# CLI


def test_cli_json_and_exit_codes(server: TestServer, pki: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--url", server.url, "--ca", str(pki["ca"]), "--rate", "40", "--duration", "0.3"]
    assert requestloop.main([*base, "--path", "/ok", "--path", "/health", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed"] == 0 and doc["total"] == doc["ok"] > 0
    assert doc["paths"] == ["/ok", "/health"] and doc["stopped_by"] == "duration"
    expected = {"url", "server_name", "paths", "rate", "workers", "timeout_s", "keepalive", "started_at"}
    expected |= {"stopped_by", "total", "ok", "failed", "rate_limited", "skipped", "by_status", "by_error"}
    expected |= {"failures", "failures_not_listed", "latency_ms", "duration_s", "requests_per_s"}
    expected |= {"longest_failure_run", "longest_gap_s"}
    assert set(doc) == expected

    assert requestloop.main([*base, "--path", "/bad"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED:") and "HTTP 503" in out and "/bad" in out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert requestloop.main(["--url", "https://127.0.0.1", "--ca", str(tmp_path / "missing.crt")]) == 2
    assert "pass --ca" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        requestloop.main(["--url", "https://127.0.0.1"])  # no --ca
    assert exit_info.value.code == 2
