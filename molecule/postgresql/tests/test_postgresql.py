"""The database tier behaves as the application and an auditor expect: verified TLS logins only for the
app role and only from the app network, least privilege, streaming to a read-only hot standby.

The standby host plays the application server (the only address in postgresql_app_networks), so
client connections are made with psql from there; administration uses the postgres account's socket.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import time
import uuid

import pytest
import testinfra

PRIMARY, STANDBY = "198.18.251.11", "198.18.251.12"
CA = "/etc/ssl/enp-postgresql/ca.crt"
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory"))


def lab_host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def primary():
    return lab_host("mol-pg-primary")


@pytest.fixture(scope="module")
def standby():
    return lab_host("mol-pg-standby")


@pytest.fixture(scope="module")
def passwords(primary) -> dict[str, str]:
    variables = primary.ansible.get_variables()
    return {"app": variables["postgresql_app_password"], "replication": variables["postgresql_replication_password"]}


def conninfo(host: str = PRIMARY, user: str = "civic_app", sslmode: str = "verify-full", **extra: str) -> str:
    fields = {"host": host, "port": "5432", "dbname": "civic", "user": user, "sslmode": sslmode, "sslrootcert": CA}
    fields.update(extra)
    return " ".join(f"{key}={value}" for key, value in fields.items())


def psql(client, info: str, sql: str, password: str | None = None):
    """psql on `client` with a libpq connection string; the password goes in the environment, not argv."""
    env = f"PGPASSWORD={shlex.quote(password)} " if password else ""
    return client.run(f"{env}psql {shlex.quote(info)} -X -v ON_ERROR_STOP=1 -Atc {shlex.quote(sql)}")


def admin(server, sql: str, db: str = "civic"):
    """psql as postgres over the server's Unix socket (peer authentication)."""
    return server.run(f"runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d {db} -Atc {shlex.quote(sql)}")


def test_app_logs_in_over_verified_tls_by_address_and_by_name(standby, passwords) -> None:
    for name in (PRIMARY, "mol-pg-primary"):
        out = psql(
            standby,
            conninfo(host=name),
            "SELECT current_user, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            passwords["app"],
        )
        assert out.rc == 0, out.stderr
        user, ssl, version = out.stdout.strip().split("|")
        assert (user, ssl) == ("civic_app", "t")
        assert version in ("TLSv1.2", "TLSv1.3")


def test_verify_full_refuses_a_name_the_certificate_does_not_carry(standby, passwords) -> None:
    out = psql(standby, conninfo(host="db.example.invalid", hostaddr=PRIMARY), "SELECT 1", passwords["app"])
    assert out.rc != 0
    assert "does not match host name" in out.stderr


def test_plain_connection_is_refused(standby, passwords) -> None:
    out = psql(standby, conninfo(sslmode="disable"), "SELECT 1", passwords["app"])
    assert out.rc != 0
    assert "pg_hba.conf rejects connection" in out.stderr and "no encryption" in out.stderr


def test_wrong_password_is_refused(standby) -> None:
    out = psql(standby, conninfo(), "SELECT 1", "not-the-password-at-all")
    assert out.rc != 0
    assert 'password authentication failed for user "civic_app"' in out.stderr


def test_app_role_is_refused_outside_the_app_network(primary, passwords) -> None:
    # The primary's own address is not in postgresql_app_networks (only the standby/app host is).
    out = psql(primary, conninfo(), "SELECT 1", passwords["app"])
    assert out.rc != 0
    assert f'pg_hba.conf rejects connection for host "{PRIMARY}", user "civic_app"' in out.stderr


def test_replication_role_is_refused_outside_the_standby_address(primary, passwords) -> None:
    out = psql(
        primary,
        conninfo(user="replicator", dbname="postgres", replication="true"),
        "IDENTIFY_SYSTEM",
        passwords["replication"],
    )
    assert out.rc != 0
    assert "pg_hba.conf rejects replication connection" in out.stderr


def test_app_role_cannot_create_tables_roles_or_databases(standby, passwords) -> None:
    refusals = {
        "CREATE TABLE public.intruder (id int)": "permission denied for schema public",
        "CREATE TABLE civic.intruder (id int)": "permission denied for schema civic",
        "CREATE SCHEMA intruder": "permission denied for database civic",
        "CREATE ROLE intruder": "permission denied to create role",
        "CREATE DATABASE intruder": "permission denied to create database",
        "CREATE TEMP TABLE intruder (id int)": "permission denied to create temporary tables",
    }
    for sql, error in refusals.items():
        out = psql(standby, conninfo(), sql, passwords["app"])
        assert out.rc != 0, sql
        assert error in out.stderr, (sql, out.stderr)


def test_app_role_has_no_attributes_and_owns_nothing(primary) -> None:
    attributes = admin(
        primary,
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = 'civic_app'",
    )
    assert attributes.stdout.strip() == "f|f|f|f|f|t"
    owned = admin(
        primary,
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = 'civic_app'::regrole)"
        " + (SELECT count(*) FROM pg_namespace WHERE nspowner = 'civic_app'::regrole)"
        " + (SELECT count(*) FROM pg_database WHERE datdba = 'civic_app'::regrole)",
    )
    assert owned.stdout.strip() == "0"
    owner = admin(primary, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'civic_owner'")
    assert owner.stdout.strip() == "f"
    scram = admin(
        primary,
        "SELECT bool_and(rolpassword LIKE 'SCRAM-SHA-256$%') FROM pg_authid"
        " WHERE rolname IN ('civic_app', 'replicator')",
    )
    assert scram.stdout.strip() == "t"


def test_a_row_the_app_writes_on_the_primary_reaches_the_standby(primary, standby, passwords) -> None:
    # Tables are created by the schema owner (as a migration would be); the app gets DML by default privileges.
    ddl = admin(
        primary,
        "SET ROLE civic_owner;"
        " CREATE TABLE IF NOT EXISTS civic.verify_probe (id bigserial PRIMARY KEY, token text NOT NULL)",
    )
    assert ddl.rc == 0, ddl.stderr
    token = uuid.uuid4().hex  # hex digits only: safe to put into the SQL text below
    count = f"SELECT count(*) FROM civic.verify_probe WHERE token = '{token}'"  # noqa: S608 - uuid hex
    # Unqualified on purpose: the app role's search_path is its schema; the id comes from the owner's sequence.
    insert_sql = f"INSERT INTO verify_probe (token) VALUES ('{token}')"  # noqa: S608 - uuid hex
    insert = psql(standby, conninfo(), insert_sql, passwords["app"])
    assert insert.rc == 0, insert.stderr
    deadline = time.monotonic() + 10
    seen = ""
    while time.monotonic() < deadline:
        seen = admin(standby, count).stdout.strip()
        if seen == "1":
            break
        time.sleep(0.5)
    assert seen == "1", "the row did not reach the standby within 10 s"
    # The app may read from the standby (same rules: TLS, app network), never write.
    read = psql(standby, conninfo(host=STANDBY), count, passwords["app"])
    assert read.rc == 0 and read.stdout.strip() == "1", read.stderr


def test_standby_is_in_recovery_and_refuses_writes(standby, passwords) -> None:
    state = admin(standby, "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()", db="postgres")
    assert state.stdout.strip() == "t|not paused"
    out = admin(standby, "INSERT INTO civic.verify_probe (token) VALUES ('must-fail')")
    assert out.rc != 0
    assert "cannot execute INSERT in a read-only transaction" in out.stderr
    out = psql(standby, conninfo(host=STANDBY), "DELETE FROM verify_probe", passwords["app"])
    assert out.rc != 0
    assert "read-only transaction" in out.stderr


def test_primary_streams_to_the_standby_over_tls_through_its_slot(primary) -> None:
    streams = admin(
        primary,
        "SELECT r.application_name, r.state, host(r.client_addr), s.ssl FROM pg_stat_replication r "
        "JOIN pg_stat_ssl s USING (pid)",
        db="postgres",
    )
    assert streams.stdout.strip() == f"mol_pg_standby|streaming|{STANDBY}|t"
    slot = admin(
        primary, "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = 'enp_standby'", db="postgres"
    )
    assert slot.stdout.strip() == "physical|t"


def test_server_listens_on_its_lab_address_only(primary, standby) -> None:
    for server, address in ((primary, PRIMARY), (standby, STANDBY)):
        listening = server.run("ss -Htln 'sport = :5432'").stdout.split()
        assert f"{address}:5432" in listening
        assert "0.0.0.0:5432" not in listening and "*:5432" not in listening and "[::]:5432" not in listening


def test_tls_replication_and_logging_settings_are_live(primary, standby) -> None:
    sql = (
        "SELECT current_setting('ssl'), current_setting('ssl_min_protocol_version'),"
        " current_setting('password_encryption'), current_setting('wal_level'), current_setting('hot_standby'),"
        " current_setting('log_connections')"
    )
    for server in (primary, standby):
        assert admin(server, sql, db="postgres").stdout.strip() == "on|TLSv1.2|scram-sha-256|replica|on|on"


def test_secrets_stay_out_of_configuration_and_logs(primary, standby, passwords) -> None:
    for server in (primary, standby):
        for secret in passwords.values():
            found = server.run(
                f"grep -rlF -- {shlex.quote(secret)} /etc/postgresql /etc/postgresql-common /var/log/postgresql "
                "/var/lib/postgresql/15/main/postgresql.auto.conf"
            )
            assert found.stdout.strip() == "", found.stdout
        key = server.file("/etc/ssl/enp-postgresql/server.key")
        assert (key.user, key.mode) == ("postgres", 0o600)
    pgpass = standby.file("/var/lib/postgresql/.pgpass")
    assert (pgpass.user, pgpass.mode) == ("postgres", 0o600)


def test_log_lines_carry_time_zone_and_connection(primary) -> None:
    line = primary.run(
        "grep -h 'connection authorized: user=civic_app' /var/log/postgresql/postgresql-15-main.log | tail -n 1"
    )
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] civic_app@civic from " + re.escape(STANDBY), line.stdout
    ), line.stdout


def test_local_fact_records_what_was_applied(primary, standby) -> None:
    for server, role in ((primary, "primary"), (standby, "standby")):
        fact = json.loads(server.file("/etc/ansible/facts.d/enp_postgresql.fact").content_string)
        assert (fact["role"], fact["version"], fact["replication_slot"]) == (role, "15", "enp_standby")
    assert (
        json.loads(standby.file("/etc/ansible/facts.d/enp_postgresql.fact").content_string)["primary_host"] == PRIMARY
    )
