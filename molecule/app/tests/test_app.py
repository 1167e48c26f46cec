"""civic-services as converged (release 1.0.0) behaves as citizens, an operator and an auditor expect:
a sandboxed unprivileged service that answers /health green over the network, code it cannot change,
a database login over verified TLS that can only read and insert, and a schema owned by the NOLOGIN owner.

Requests come from the controller to the app server's lab address; the hosts are used to read state,
to enter the service's sandbox and to run SQL: as postgres over the primary's socket (administration)
or with the app's own settings and password on the app server (what the service itself may do).

Runs before test_app_deploy.py (file order), which deploys other releases and restores 1.0.0 at its end.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shlex
import tarfile
import urllib.error
import urllib.request

import pytest
import testinfra

DB, SRV = "198.18.253.11", "198.18.253.12"
BASE = "/opt/civic-services"
CONF = "/etc/civic-services/civic-services.conf"
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))
ARTIFACT = EPHEMERAL / "releases/civic-services-1.0.0.tar.gz"
# What migrate --grant-to gives the app role (app/civic_services/migrate.py APP_PRIVILEGES); nothing else.
APP_PRIVILEGES = {
    "building_permissions": "SELECT",
    "certificates": "SELECT",
    "documents": "INSERT,SELECT",
    "payments": "INSERT,SELECT",
    "properties": "SELECT",
    "schema_migrations": "SELECT",
    "tax_demands": "SELECT",
    "trade_licences": "SELECT",
    "ulbs": "SELECT",
    "water_connections": "SELECT",
}

# Runs one statement with the app's own settings (config file, password file, CA: verify-full TLS), as
# the service user, in a transaction that is always rolled back. Prints the first row; on a database
# error prints SQLSTATE and message to stderr and exits 1.
AS_APP = """
import sys
sys.path.insert(0, "/opt/civic-services/current")
import psycopg2
from civic_services.config import load_config
from civic_services.db import Database
conn = Database(load_config().database, application_name="molecule verify", statement_timeout=False).connect()
try:
    with conn.cursor() as cur:
        cur.execute(sys.argv[1])
        if cur.description:
            print("|".join(str(v) for v in cur.fetchone()))
except psycopg2.Error as exc:
    print(exc.pgcode, str(exc).strip().splitlines()[0], file=sys.stderr)
    sys.exit(1)
finally:
    conn.rollback()
    conn.close()
"""


def lab_host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def db():
    return lab_host("mol-app-db")


@pytest.fixture(scope="module")
def srv():
    return lab_host("mol-app-srv")


def fetch(path: str) -> tuple[int, dict]:
    """GET http://<app server>:8000<path> from the controller: status and JSON body."""
    try:
        with urllib.request.urlopen(f"http://{SRV}:8000{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def admin(server, sql: str):
    """psql as postgres over the primary's Unix socket (peer authentication)."""
    return server.run(f"runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d civic -Atc {shlex.quote(sql)}")


def as_app(server, sql: str):
    """One statement with the service's own credentials and TLS settings, as the service user."""
    return server.run(
        f"runuser -u civic -- env CIVIC_CONFIG={CONF} /usr/bin/python3 -I -c {shlex.quote(AS_APP)} {shlex.quote(sql)}"
    )


def main_pid(server) -> int:
    return int(server.check_output("systemctl show -p MainPID --value civic-services"))


def release_info(artifact: pathlib.Path) -> dict:
    with tarfile.open(artifact) as tar:
        member = tar.extractfile("RELEASE")
        assert member is not None
        return json.loads(member.read())


def test_service_runs_as_civic_with_no_privileges(srv) -> None:
    service = srv.service("civic-services")
    assert service.is_running and service.is_enabled
    pid = main_pid(srv)
    workers = srv.check_output(f"pgrep -P {pid}").split()
    assert len(workers) == 2, workers  # app_workers
    for proc in [str(pid), *workers]:
        status = srv.file(f"/proc/{proc}/status").content_string
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = fields["Uid"].split()
        assert srv.check_output("id -u civic") == uid[0] == uid[1] != "0", (proc, uid)
        assert fields["NoNewPrivs"].strip() == "1"
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
        assert fields["Seccomp"].strip() == "2"  # the system-call filter is live


def test_unit_declares_the_sandbox(srv) -> None:
    shown = srv.check_output(
        "systemctl show civic-services -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp"
        " -p CapabilityBoundingSet -p RestrictSUIDSGID"
    )
    settings = dict(line.split("=", 1) for line in shown.splitlines())
    assert settings == {
        "User": "civic",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
    }


def test_inside_the_sandbox_only_the_document_store_is_writable(srv) -> None:
    # Root in the service's own mount namespace: ProtectSystem=strict, whatever the file permissions say.
    enter = f"nsenter -t {main_pid(srv)} -m --"
    for path in (f"{BASE}/current/civic_services/x.py", "/etc/civic-services/x", "/usr/local/bin/x"):
        out = srv.run(f"{enter} touch {path}")
        assert out.rc != 0 and "Read-only file system" in out.stderr, (path, out.stderr)
    probe = "/srv/civic-services/documents/tmp/.molecule-probe"
    assert srv.run(f"{enter} touch {probe}").rc == 0
    srv.check_output(f"rm -f {probe}")


def test_health_is_green_from_the_network(srv) -> None:
    status, body = fetch("/health")
    assert status == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["documents"]["ok"]
    assert checks["schema"] == {"ok": True, "version": 2, "expected": 2}


def test_version_is_the_converged_release() -> None:
    status, body = fetch("/version")
    info = release_info(ARTIFACT)
    assert status == 200
    assert (body["version"], body["build_id"]) == ("1.0.0", info["build_id"])


def test_current_points_at_the_release_whose_code_the_service_cannot_change(srv) -> None:
    current = srv.file(f"{BASE}/current")
    assert current.is_symlink and current.linked_to == f"{BASE}/releases/1.0.0"
    out = srv.run(f"runuser -u civic -- touch {BASE}/current/civic_services/web.py")
    assert out.rc != 0 and "Permission denied" in out.stderr
    intact = srv.run(f"{BASE}/current/bin/civic-services verify-release {BASE}/current")
    assert intact.rc == 0 and "verify-release: OK" in intact.stdout, intact.stdout


def test_service_listens_on_its_lab_address_only(srv) -> None:
    listening = srv.check_output("ss -Htln 'sport = :8000'").split()
    assert f"{SRV}:8000" in listening
    assert "0.0.0.0:8000" not in listening and "*:8000" not in listening and "[::]:8000" not in listening


def test_app_logs_in_as_civic_app_over_verified_tls(srv) -> None:
    out = as_app(srv, "SELECT current_user, ssl, current_schema FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "civic_app|True|civic"


def test_app_role_may_read_and_insert_a_payment(db, srv) -> None:
    # A ULB for the payment's foreign key (as the superuser); the app's insert is rolled back by as_app.
    ulb = "INSERT INTO civic.ulbs VALUES ('MP999', 'Molecule Nagar', 'nagar_parishad', 'Test', true)"
    assert admin(db, ulb).rc == 0
    try:
        out = as_app(
            srv,
            "INSERT INTO payments (receipt_no, ulb_code, service, amount, method, payer_name)"
            " VALUES ('MOL-1', 'MP999', 'water_tax', 10.00, 'upi', 'Molecule') RETURNING id > 0",
        )
        assert out.rc == 0 and out.stdout.strip() == "True", out.stderr
        out = as_app(srv, "SELECT count(*) FROM ulbs WHERE code = 'MP999'")
        assert out.rc == 0 and out.stdout.strip() == "1", out.stderr
    finally:
        assert admin(db, "DELETE FROM civic.ulbs WHERE code = 'MP999'").rc == 0
    assert admin(db, "SELECT count(*) FROM civic.payments").stdout.strip() == "0"


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("DELETE FROM payments", "permission denied for table payments"),
        ("UPDATE payments SET amount = 1", "permission denied for table payments"),
        ("TRUNCATE payments", "permission denied for table payments"),
        ("UPDATE ulbs SET on_portal = false", "permission denied for table ulbs"),
        ("INSERT INTO ulbs VALUES ('MP998', 'x', 'nagar_parishad', 'x', true)", "permission denied for table ulbs"),
        ("DELETE FROM schema_migrations", "permission denied for table schema_migrations"),
        ("DROP TABLE payments", "must be owner of table payments"),
        ("ALTER TABLE payments ADD COLUMN intruder int", "must be owner of table payments"),
        ("CREATE TABLE civic.intruder (id int)", "permission denied for schema civic"),
        ("CREATE TABLE public.intruder (id int)", "permission denied for schema public"),
    ],
    ids=[
        "delete",
        "update",
        "truncate",
        "update-lookup",
        "insert-lookup",
        "delete-history",
        "drop",
        "alter",
        "create-in-civic",
        "create-in-public",
    ],
)
def test_app_role_cannot_change_or_delete_what_it_did_not_insert(srv, sql: str, error: str) -> None:
    out = as_app(srv, sql)
    assert out.rc != 0, sql
    assert error in out.stderr, (sql, out.stderr)


def test_app_role_privileges_are_exactly_select_and_insert_where_it_writes(db) -> None:
    rows = admin(
        db,
        "SELECT c.relname, string_agg(p.priv, ',' ORDER BY p.priv) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS p(priv)"
        " WHERE n.nspname = 'civic' AND c.relkind = 'r' AND has_table_privilege('civic_app', c.oid, p.priv)"
        " GROUP BY c.relname ORDER BY c.relname",
    )
    assert rows.rc == 0, rows.stderr
    assert dict(line.split("|") for line in rows.stdout.split()) == APP_PRIVILEGES
    sequences = admin(
        db,
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'civic' AND c.relkind = 'S'"
        " AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('civic_app', c.oid, 'USAGE') END",
    )
    assert sequences.rc == 0, sequences.stderr
    assert sequences.stdout.strip() == "documents_id_seq,payments_id_seq"


def test_schema_is_owned_by_the_nologin_owner_in_schema_civic(db) -> None:
    owners = admin(
        db,
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'civic'",
    )
    assert owners.stdout.strip() == "civic_owner"
    tables = admin(
        db,
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'civic' AND c.relkind = 'r'",
    )
    assert tables.stdout.strip().split(",") == sorted(APP_PRIVILEGES)
    elsewhere = admin(
        db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('civic', 'pg_catalog', 'information_schema', 'pg_toast')",
    )
    assert elsewhere.stdout.strip() == "0", "nothing may land in public (or elsewhere)"
    assert admin(db, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'civic_owner'").stdout.strip() == "f"
    applied = admin(db, "SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM civic.schema_migrations")
    assert applied.stdout.strip() == "1:core,2:lookup_indexes"


def test_migrations_are_up_to_date_by_the_release_tools_own_check(db) -> None:
    env = (
        "CIVIC_CONFIG=/dev/null CIVIC_DB_HOST=/var/run/postgresql CIVIC_DB_USER=postgres CIVIC_DB_SCHEMA=civic"
        " CIVIC_DB_SET_ROLE=civic_owner"
    )
    out = db.run(
        f"cd / && runuser -u postgres -- env {env} /opt/civic-services-tools/releases/1.0.0/bin/civic-services"
        " migrate --check --json"
    )
    assert out.rc == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["pending"], result["current"], result["changed"]) == ([], 2, False)


def test_password_file_is_for_the_service_only_and_the_secret_stays_out_of_logs(srv) -> None:
    secret = srv.file("/etc/civic-services/db-password")
    assert (secret.user, secret.group, secret.mode) == ("root", "civic", 0o640)
    assert secret.content_string.strip() == srv.ansible.get_variables()["molecule_app_password"]
    assert srv.run("runuser -u nobody -- cat /etc/civic-services/db-password").rc != 0
    # The pattern is read from the password file, so the secret never appears on a command line (which
    # Ansible would log to the journal searched here).
    found = srv.run(
        f"grep -rlF -f /etc/civic-services/db-password /etc/civic-services/civic-services.conf /etc/systemd/system"
        f" {BASE} /var/log"
    )
    assert found.rc == 1 and found.stdout.strip() == "", found.stdout
    journal = srv.run("journalctl --no-pager | grep -cF -f /etc/civic-services/db-password")
    assert journal.stdout.strip() == "0"


def test_local_fact_records_the_release_in_service(srv) -> None:
    fact = json.loads(srv.file("/etc/ansible/facts.d/enp_app.fact").content_string)
    assert fact == {
        "version": "1.0.0",
        "sha256": hashlib.sha256(ARTIFACT.read_bytes()).hexdigest(),
        "release_dir": f"{BASE}/releases/1.0.0",
    }
