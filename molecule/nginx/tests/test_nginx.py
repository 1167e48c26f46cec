"""The dmz behaves as a citizen and an operator expect: redirect, verified TLS, balancing, headers,
limits, failover and draining. Requests come from the controller to lab addresses only; the hosts
are used to stop and start services and to read files."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import time
from collections import Counter

import pytest
import testinfra

testinfra_hosts = ["mol-web-lb"]

LB = "198.18.252.10"
B1, B2 = "198.18.252.11", "198.18.252.12"
PORTAL = "portal.enp.test"
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
CA = EPHEMERAL / "pki/ca/ca.crt"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAIL_TIMEOUT = 5  # nginx_upstream_fail_timeout in converge.yml
UPSTREAM = (
    "systemd-run --unit=enp-test-upstream --property=Restart=no /usr/bin/python3 -m http.server "
    "--bind {address} --directory /srv/enp-test-upstream 8000"
)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the load balancer's address, verifying the certificate for `name` (SNI too)."""

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        super().__init__(LB, 443, context=context, timeout=10)
        self._name = name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name)


def lab_ca() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CA))


def fetch(
    path: str = "/",
    method: str = "GET",
    body: bytes | None = None,
    name: str = LB,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], str]:
    conn = _Connection(name, context or lab_ca())
    try:
        conn.request(method, path, body=body, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode(errors="replace").strip()
    finally:
        conn.close()


def backends(count: int = 10) -> list[str]:
    """Which web server answered each of `count` requests, paced below the rate limit."""
    answers = []
    for _ in range(count):
        status, _headers, body = fetch()
        assert status == 200, (status, body)
        answers.append(body)
        time.sleep(0.08)
    return answers


def web(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def playbook(name: str, limit: str, extra: dict | None = None, *args: str) -> tuple[int, str]:
    """Run a scenario playbook with molecule's inventory: return code and output on one line."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / name), "--limit", limit, *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    # Fixed argv: ansible-playbook with this scenario's own playbooks and inventory.
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env)  # noqa: S603
    return proc.returncode, " ".join(ANSI.sub("", proc.stdout + proc.stderr).split())


def settle() -> None:
    """Let a member marked failed come back and the rate limiter refill."""
    time.sleep(FAIL_TIMEOUT + 1)


def test_http_redirects_to_https() -> None:
    conn = http.client.HTTPConnection(LB, 80, timeout=10)
    conn.request("GET", "/property-tax?ulb=bhopal")
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://{LB}/property-tax?ulb=bhopal"


def test_https_verifies_with_the_lab_ca_and_only_with_it() -> None:
    assert fetch(name=LB)[0] == 200
    assert fetch(name=PORTAL)[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(context=ssl.create_default_context())  # the system trust store does not know the lab CA
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(name="not-the-portal.enp.test")


@pytest.mark.parametrize(
    ("version", "ciphers", "accepted"),
    [
        (ssl.TLSVersion.TLSv1_3, None, True),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", True),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:AES128-SHA:@SECLEVEL=0", False),  # CBC, RSA kx
        (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0", False),
    ],
    ids=["tls1.3", "tls1.2-aead", "tls1.2-cbc", "tls1.1"],
)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_only_modern_tls_is_accepted(version: ssl.TLSVersion, ciphers: str | None, accepted: bool) -> None:
    context = lab_ca()
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    if accepted:
        assert fetch(context=context)[0] == 200
        return
    with pytest.raises(ssl.SSLError) as refused:
        fetch(context=context)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value).upper()  # the server refused, not our client


def test_requests_alternate_between_the_web_servers() -> None:
    counts = Counter(backends(10))
    assert set(counts) == {"mol-web-b1", "mol-web-b2"}
    assert abs(counts["mol-web-b1"] - counts["mol-web-b2"]) <= 1, counts


@pytest.mark.parametrize("path", ["/", "/no-such-page"], ids=["200", "404"])
def test_security_headers_on_every_response(path: str) -> None:
    _status, headers, _body = fetch(path)
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["server"] == "nginx"  # server_tokens off: no version


def test_a_body_over_the_limit_gets_413() -> None:
    assert fetch("/upload", "POST", body=b"x" * (2 * 1024 * 1024))[0] == 413
    # Under the 1m limit the request reaches the backend (python's http.server does not do POST: 501).
    assert fetch("/upload", "POST", body=b"x" * (100 * 1024))[0] == 501


def test_a_burst_over_the_rate_limit_gets_429() -> None:
    time.sleep(1.5)  # a full bucket: the tests before used part of this client's burst
    conn = _Connection(LB, lab_ca())
    statuses = []
    try:
        for _ in range(50):  # bounded; one keep-alive connection, as fast as it goes
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
    finally:
        conn.close()
    counts = Counter(statuses)
    assert counts[429] > 0, counts
    assert counts[200] >= 10, counts  # the burst (10) is served
    assert set(counts) <= {200, 429}, counts
    settle()


def test_a_web_server_whose_upstream_is_down_is_skipped() -> None:
    b1 = web("mol-web-b1")
    with b1.sudo():
        b1.check_output("systemctl stop enp-test-upstream.service")
    try:
        answers = backends(10)
        assert set(answers) == {"mol-web-b2"}, answers  # b1 answers 502, the balancer retries on b2
    finally:
        with b1.sudo():
            b1.run("systemctl reset-failed enp-test-upstream.service")
            b1.check_output(UPSTREAM.format(address=B1))
    settle()
    assert set(backends(6)) == {"mol-web-b1", "mol-web-b2"}


def test_a_web_server_whose_nginx_is_down_is_skipped() -> None:
    b1 = web("mol-web-b1")
    with b1.sudo():
        b1.check_output("systemctl stop nginx")
    try:
        answers = backends(10)
        assert set(answers) == {"mol-web-b2"}, answers  # connection refused: the next member answers
    finally:
        with b1.sudo():
            b1.check_output("systemctl start nginx")
    settle()
    assert set(backends(6)) == {"mol-web-b1", "mol-web-b2"}


def test_draining_by_variable_sends_everything_to_the_other_server(host) -> None:
    rc, out = playbook("converge.yml", "mol-web-lb", {"nginx_drained_backends": [B2]})
    assert rc == 0, out[-3000:]
    try:
        assert set(backends(10)) == {"mol-web-b1"}
        fact = json.loads(host.file("/etc/ansible/facts.d/enp_nginx.fact").content_string)
        assert fact["drained"] == [f"{B2}:443"]
    finally:
        rc, out = playbook("converge.yml", "mol-web-lb")
        assert rc == 0, out[-3000:]
    assert set(backends(6)) == {"mol-web-b1", "mol-web-b2"}


def test_draining_every_member_is_refused(host) -> None:
    rc, out = playbook("converge.yml", "mol-web-lb", {"nginx_drained_backends": [B1, B2]})
    assert rc != 0
    assert "At least one member must stay in rotation" in out
    assert " down;" not in host.file("/etc/nginx/nginx.conf").content_string


def test_drain_entry_point_as_the_redeploy_uses_it(host) -> None:
    conf = "/etc/nginx/nginx.conf"
    rc, out = playbook("drain.yml", "mol-web-b2", {"mol_drain_state": "drained"})
    assert rc == 0, out[-3000:]
    try:
        assert f"server {B2}:443 max_fails=3 fail_timeout=5s down;" in host.file(conf).content_string
        assert set(backends(10)) == {"mol-web-b1"}
        # Draining b1 too would leave nobody serving: refused, and b1 keeps serving.
        rc, out = playbook("drain.yml", "mol-web-b1", {"mol_drain_state": "drained"})
        assert rc != 0
        assert "it is the last member still in rotation" in out
        assert set(backends(4)) == {"mol-web-b1"}
    finally:
        rc, out = playbook("drain.yml", "mol-web-b2", {"mol_drain_state": "active"})
        assert rc == 0, out[-3000:]
    assert " down;" not in host.file(conf).content_string
    assert set(backends(6)) == {"mol-web-b1", "mol-web-b2"}


def test_check_mode_reports_a_change_without_making_it(host) -> None:
    conf = "/etc/nginx/nginx.conf"
    before = host.file(conf).content_string
    rc, out = playbook("converge.yml", "mol-web-lb", {"nginx_client_max_body_size": "2m"}, "--check")
    assert rc == 0, out[-3000:]
    assert re.search(r"mol-web-lb : ok=\d+ changed=[1-9]", out), out[-1500:]
    assert host.file(conf).content_string == before


def test_a_configuration_nginx_refuses_never_reaches_the_disk(host) -> None:
    conf = "/etc/nginx/nginx.conf"
    before = host.file(conf).content_string
    rc, out = playbook("converge.yml", "mol-web-lb", {"nginx_upstream_fail_timeout": "5 minutes"})
    assert rc != 0
    assert "failed to validate" in out and "nginx" in out, out[-3000:]
    assert host.file(conf).content_string == before
    assert set(backends(4)) == {"mol-web-b1", "mol-web-b2"}


def test_leftover_configuration_is_never_loaded(host) -> None:
    with host.sudo():
        dump = host.check_output("nginx -T 2>&1")
    assert "leftover" not in dump
    assert "server_tokens off;" in dump
    assert not host.socket("tcp://0.0.0.0:8081").is_listening
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_tls_key_is_root_only_and_the_ca_key_stays_on_the_controller(host) -> None:
    key = host.file("/etc/nginx/tls/server.key")
    assert key.user == "root" and key.mode == 0o600
    ca_key = (EPHEMERAL / "pki/ca/ca.key").read_text().strip().splitlines()[1]
    with host.sudo():
        assert host.run(f"grep -rlF '{ca_key}' /etc /root /home /srv /tmp").rc == 1


def test_access_log_is_json_with_the_time_zone(host) -> None:
    fetch("/logged")
    with host.sudo():
        last = host.check_output("tail -n 1 /var/log/nginx/access.log")
    entry = json.loads(last)
    assert entry["request"].startswith("GET /logged ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", entry["time"]), entry["time"]
    assert entry["upstream"].endswith(":443")


def test_errors_also_reach_the_journal_with_the_time_zone(host) -> None:
    # The failover tests above made the balancer log "connect() failed" for the stopped web server.
    with host.sudo():
        journal = host.check_output("journalctl -t nginx -o short-iso --no-pager --grep 'connect[(][)] failed'")
    stamp = journal.strip().splitlines()[-1].split()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", stamp), journal


def test_local_fact_records_the_applied_configuration(host) -> None:
    fact = json.loads(host.file("/etc/ansible/facts.d/enp_nginx.fact").content_string)
    assert fact["mode"] == "loadbalancer"
    assert fact["upstreams"] == [f"{B1}:443", f"{B2}:443"]
    assert fact["upstream_tls_name"] == PORTAL and fact["upstream_tls_verify"] is True
    assert fact["drained"] == []
