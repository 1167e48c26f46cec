"""Contain an attacked estate, then reopen it zone by zone (issue 8: playbooks/contain.yml, playbooks/reopen.yml).

A load balancer, a web server, an app server, a PostgreSQL primary and the backup server on one bridge of their own
(tests/integration/inventories/contain: enp-it-ct, 198.18.91.0/24), built by the project's playbooks
(tests/integration/playbooks/contain_estate.yml: site.yml, backup.yml, firewall.yml). In order:

* before: the portal works through the load balancer;
* contain.yml without its confirmation refuses, says what to add, and changes nothing;
* contain.yml: the load balancer answers 503 with Retry-After and the page (English and Hindi) for any path, over
  HTTPS and HTTP; the app server cannot reach PostgreSQL, nor the backup server; the app's role may not log in and
  has no session left; the backup server's pull keys are gone; the controller still reaches every host over SSH;
  contain/contain.json says what was done where and when; a second run changes nothing;
* reopen.yml: the portal works end to end through the load balancer, /health is green, the normal flows are back
  (app to PostgreSQL, the WAL stream), the credentials are valid again, reopen/reopen.json has each zone's back_at;
  a second run changes nothing;
* lab-down leaves nothing behind.

Run: pytest -q -s -m integration tests/integration/test_contain_reopen.py (prints each step's duration).
"""

from __future__ import annotations

import json
import os
import pathlib
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from ansible.module_utils.enp_lab import isolation_table_name

from .labstate import diff, snapshot
from .test_lab_lifecycle import recap

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
INVENTORY = str(HERE / "inventories" / "contain")
BUILD = str(HERE / "playbooks" / "contain_estate.yml")
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"
ADDRESS = {
    "ct-lb1": "198.18.91.10",
    "ct-web1": "198.18.91.11",
    "ct-app1": "198.18.91.21",
    "ct-db1": "198.18.91.31",
    "ct-backup1": "198.18.91.41",
}
LB = ADDRESS["ct-lb1"]
INCIDENT = "INC-TEST-CT-01"
KEEP_LAB = os.environ.get("ENP_TEST_KEEP_LAB") == "1"

# From inside a host: "open" (connected), "refused", "dropped" (no answer in 3 s), or another error.
PROBE = r"""
import socket, sys
s = socket.socket(); s.settimeout(3.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("open")
except socket.timeout:
    print("dropped")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error %s" % exc.errno)
"""


def markers(state_dir: pathlib.Path) -> list[str]:
    return [str(state_dir), "198.18.91.", "enp-it-ct", "vb-ct-", *ADDRESS, isolation_table_name(str(state_dir))]


def playbook(args: list[str], state_dir: pathlib.Path, releases: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ENP_RELEASE_DIR=str(releases),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", INVENTORY, *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(f"  {' '.join(args)[:110]}: rc={proc.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    return proc


def ok(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed rc={proc.returncode}\n{proc.stdout[-10000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def changed_tasks(output: str, host: str) -> list[str]:
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6 : line.find("]")]
        elif line.startswith(f"changed: [{host}"):
            found.append(task)
    return found


def assert_nothing_changed(output: str, what: str) -> None:
    for host in [*ADDRESS, "localhost"]:
        assert recap(output, host)["changed"] == 0, f"{what} changed again on {host}: {changed_tasks(output, host)}"


def on(host: str, state_dir: pathlib.Path, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """A root shell on a lab host, over SSH from the controller (the management path)."""
    proc = subprocess.run(
        [
            "ssh",
            "-i",
            str(state_dir / "ssh" / "id_ed25519"),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=error",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            f"enp@{ADDRESS[host]}",
            "sudo -n bash -s",
        ],
        input=command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"on {host}: {command[:200]!r} failed rc={proc.returncode}: {proc.stdout[-2000:]} {proc.stderr}")
    return proc


def probe(source: str, state_dir: pathlib.Path, dest: str, port: int) -> str:
    return on(source, state_dir, f"python3 - {ADDRESS[dest]} {port} <<'PY'\n{PROBE}\nPY\n").stdout.strip()


def sql(state_dir: pathlib.Path, query: str) -> str:
    return on(
        "ct-db1", state_dir, f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d civic <<'SQL'\n{query}\nSQL\n"
    ).stdout.strip()


def get(url: str, ca: pathlib.Path, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (lab address)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def http_no_redirect(url: str) -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def app_health(state_dir: pathlib.Path) -> tuple[int, str]:
    """/health of the app server, asked on the app server itself."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    a = urllib.request.urlopen('http://{ADDRESS['ct-app1']}:8000/health', timeout=30)\n"
        "    print(a.status); print(a.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
        "except Exception as e:\n"
        "    print(0); print(e)\n"
    )
    out = on("ct-app1", state_dir, f"python3 - <<'PY'\n{script}PY\n").stdout
    status, _, body = out.partition("\n")
    return int(status), body


def portal_works(ca: pathlib.Path) -> None:
    status, _, body = get(f"https://{LB}/health", ca)
    assert status == 200, f"/health through the load balancer: {status} {body[:300]}"
    assert json.loads(body)["status"] == "ok", body
    status, _, body = get(f"https://{LB}/", ca)
    assert status == 200, f"/ through the load balancer: {status} {body[:300]}"


def test_contain_then_reopen(root_required: None, tmp_path: pathlib.Path) -> None:
    state_dir, releases, incident = tmp_path / "lab", tmp_path / "releases", tmp_path / "incident"
    ca = state_dir / "pki" / "ca" / "ca.crt"
    subprocess.run(
        [sys.executable, str(PROJECT / "scripts/build_release.py"), "--version", "1.0.0", "--out", str(releases)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    incident_vars = ["-e", f"enp_incident_id={INCIDENT}", "-e", f"enp_incident_dir={incident}"]
    contain = ["playbooks/contain.yml", *incident_vars]
    reopen = ["playbooks/reopen.yml", *incident_vars]
    # ULB by ULB: recorded as asked (civic-services has no per-ULB switch); the same in both runs.
    ulbs = ["-e", "enp_reopen_confirm=reopen", "-e", '{"enp_reopen_ulbs": ["MP001"]}']
    before = snapshot()
    started = time.monotonic()
    try:
        ok(playbook(["playbooks/lab_up.yml"], state_dir, releases), "lab_up.yml")
        ok(playbook([BUILD], state_dir, releases), "contain_estate.yml (site, backup, firewall)")
        portal_works(ca)
        assert probe("ct-app1", state_dir, "ct-db1", 5432) == "open"
        assert probe("ct-backup1", state_dir, "ct-db1", 5432) == "open"

        # --- no confirmation: refused, nothing changed ------------------------------------------------------------
        refused = playbook(contain, state_dir, releases)
        assert refused.returncode != 0
        assert "contain REFUSED, nothing changed" in refused.stdout, refused.stdout[-3000:]
        assert "-e enp_contain_confirm=contain" in refused.stdout
        assert "changed: [ct-" not in refused.stdout, "contain changed a host without confirmation"
        portal_works(ca)

        # --- contain ------------------------------------------------------------------------------------------------
        t0 = time.monotonic()
        ok(playbook([*contain, "-e", "enp_contain_confirm=contain"], state_dir, releases), "contain.yml")
        print(f"  contain took {time.monotonic() - t0:.0f} s", flush=True)

        for path in ("/", "/health", "/api/payments", "/some/deep/path.css?x=1"):
            status, headers, body = get(f"https://{LB}{path}", ca)
            assert status == 503, f"{path}: {status} {body[:200]}"
            assert headers.get("Retry-After") == "3600", headers
            assert "services are being restored; offices accept applications on paper" in body.lower(), body
            assert "सेवाएँ बहाल की जा रही हैं" in body, body
            assert headers.get("Content-Type", "").startswith("text/html"), headers
        status, headers, body = http_no_redirect(f"http://{LB}/anything")
        assert status == 503 and "offices accept applications on paper" in body, (status, body[:200])

        assert probe("ct-app1", state_dir, "ct-db1", 5432) in ("dropped", "refused", "error 1")
        assert probe("ct-backup1", state_dir, "ct-db1", 5432) in ("dropped", "refused", "error 1")
        assert probe("ct-web1", state_dir, "ct-app1", 8000) in ("dropped", "refused", "error 1")
        assert probe("ct-lb1", state_dir, "ct-web1", 443) in ("dropped", "refused", "error 1")
        assert (
            sql(
                state_dir,
                "SELECT rolname || '=' || rolcanlogin FROM pg_roles WHERE rolname IN "
                "('civic_app', 'enp_wal') ORDER BY 1",
            )
            == "civic_app=false\nenp_wal=false"
        )
        assert sql(state_dir, "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('civic_app', 'enp_wal')") == "0"
        keys = on("ct-db1", state_dir, "grep -c enp-pgbackrest-remote ~postgres/.ssh/authorized_keys || true").stdout
        assert keys.strip() == "0", "the backup server's pull key is still authorized"
        docs = on(
            "ct-app1",
            state_dir,
            "chage -l enp-docs | grep 'Account expires'; "
            "grep -c enp-docs-export ~enp-docs/.ssh/authorized_keys || true",
        ).stdout
        assert "1970" in docs and docs.strip().splitlines()[-1] == "0", docs
        assert app_health(state_dir)[0] != 200, "the app must not reach its database while contained"
        for host in ADDRESS:
            assert on(host, state_dir, "true", check=False).returncode == 0, f"the controller lost SSH to {host}"

        record = json.loads((incident / "contain" / "contain.json").read_text())
        assert record["incident_id"] == INCIDENT
        assert record["summary"]["maintenance_page_on"] == ["ct-lb1"]
        assert sorted(record["summary"]["incident_zone_matrix"]) == sorted(ADDRESS)
        assert sorted(record["summary"]["credentials_revoked"]) == ["ct-app1", "ct-db1"]
        assert "at" in record["hosts"]["ct-db1"]["actions"]["database roles NOLOGIN"]
        print(json.dumps(record["summary"]), flush=True)

        again = ok(playbook([*contain, "-e", "enp_contain_confirm=contain"], state_dir, releases), "contain (again)")
        assert_nothing_changed(again, "contain.yml")

        # --- reopen -------------------------------------------------------------------------------------------------
        refused = playbook(reopen, state_dir, releases)
        assert refused.returncode != 0 and "-e enp_reopen_confirm=reopen" in refused.stdout
        t0 = time.monotonic()
        ok(playbook([*reopen, *ulbs], state_dir, releases), "reopen.yml")
        print(f"  reopen took {time.monotonic() - t0:.0f} s", flush=True)
        portal_works(ca)
        assert app_health(state_dir)[0] == 200
        assert probe("ct-app1", state_dir, "ct-db1", 5432) == "open"
        assert probe("ct-backup1", state_dir, "ct-db1", 5432) == "open"
        assert probe("ct-lb1", state_dir, "ct-web1", 443) == "open"
        assert probe("ct-web1", state_dir, "ct-app1", 8000) == "open"
        assert probe("ct-web1", state_dir, "ct-db1", 5432) != "open", "the normal matrix, not an open network"
        assert (
            sql(
                state_dir,
                "SELECT rolname || '=' || rolcanlogin FROM pg_roles WHERE rolname IN "
                "('civic_app', 'enp_wal') ORDER BY 1",
            )
            == "civic_app=true\nenp_wal=true"
        )
        keys = on("ct-db1", state_dir, "grep -c enp-pgbackrest-remote ~postgres/.ssh/authorized_keys").stdout
        assert keys.strip() == "1", keys
        assert "never" in on("ct-app1", state_dir, "chage -l enp-docs | grep 'Account expires'").stdout

        record = json.loads((incident / "reopen" / "reopen.json").read_text())
        zones = [zone["zone"] for zone in record["zones"]]
        assert set(zones) == {"mgmt", "data", "app", "dmz"}, record["zones"]
        assert all(zone["back_at"] for zone in record["zones"])
        by_zone = {zone["zone"]: zone["back_at"] for zone in record["zones"]}
        assert by_zone["data"] <= by_zone["app"] <= by_zone["dmz"], by_zone
        assert record["ulbs"] == {"asked": ["MP001"], "supported": False, "note": record["ulbs"]["note"]}
        print(json.dumps(record["zones"]), flush=True)

        again = ok(playbook([*reopen, *ulbs], state_dir, releases), "reopen (again)")
        assert_nothing_changed(again, "reopen.yml")
        portal_works(ca)
    finally:
        if not KEEP_LAB:
            playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], state_dir, releases)
        print(f"  whole test: {time.monotonic() - started:.0f} s", flush=True)
    if KEEP_LAB:
        pytest.skip(f"lab kept for inspection (ENP_TEST_KEEP_LAB=1): ENP_LAB_DIR={state_dir}")
    left = diff(before, snapshot(), markers(state_dir))
    assert left == {}, f"teardown left things behind: {left}"


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")
