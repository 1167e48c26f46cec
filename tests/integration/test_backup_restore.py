"""Backups an attacker cannot destroy, and a restore from the latest CLEAN point after a simulated attack (issue 7).

A PostgreSQL primary, an app server and the backup server in a zone of their own (tests/integration/inventories/
backup: bridge enp-it-bk, 198.18.87.0/24), built by the project's roles (tests/integration/playbooks/
backup_estate.yml: the data tier of site.yml, the small data set, playbooks/backup.yml). In order:

* backup.yml a second time changes nothing;
* citizens keep paying (a writer posts payments to the app server) and uploading documents through the whole test;
* an attacker who is root on the database host and on the app server tries to reach, delete or rewrite the
  backups: every attempt fails, and the backups still verify afterwards;
* a second base backup is taken and then corrupted on the backup server (a flipped byte in its files);
* playbooks/lab_attack.yml at time T: a share of the documents encrypted (in place and renamed), ransom notes,
  a cron job, the database tampered (mass update, mass delete, a ransom table) — and the backups CONTINUE after T,
  so the newest document archive and the newest WAL are infected;
* restore.yml without its confirmation refuses; lab_attack.yml refuses hosts outside the lab;
* restore.yml: the decision names the first malicious transaction and restores to just before it, rejects the
  infected archive with its signs, skips the corrupt base backup with a clear reason; after it every payment
  committed before T is back, none of the attacker's changes is, the seeder manifest verifies (only the
  payments written since the seed are extra), no restored document is encrypted or a ransom note, every document
  the database references is there, pg_amcheck is clean, /health is green, and the report's RPO is within target;
* backups run again on the restored estate; lab-down leaves nothing behind.

Run: pytest -q -s -m integration tests/integration/test_backup_restore.py (prints the decision's explanation).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
from ansible.module_utils.enp_lab import isolation_table_name

from .labstate import diff, snapshot
from .test_lab_lifecycle import recap

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
INVENTORY = str(HERE / "inventories" / "backup")
BUILD = str(HERE / "playbooks" / "backup_estate.yml")
BIN = pathlib.Path(os.environ.get("VIRTUAL_ENV", PROJECT / ".venv")) / "bin"
ADDRESS = {"bk-app1": "198.18.87.21", "bk-db1": "198.18.87.31", "bk-backup1": "198.18.87.41"}
APP = f"http://{ADDRESS['bk-app1']}:8000"
RPO_TARGET_S = 5.0
DOCUMENTS_RPO_S = 300.0  # roles/backup backup_schedule_documents
# A developer's post-mortem: keep the lab after the test (CI never sets it; remove it with lab_down.yml).
KEEP_LAB = os.environ.get("ENP_TEST_KEEP_LAB") == "1"
# A minimal valid PNG (1x1), made unique per upload by a trailing tEXt chunk.
PNG_HEAD = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
PNG_TAIL = bytes.fromhex("0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def markers(state_dir: pathlib.Path) -> list[str]:
    return [str(state_dir), "198.18.87.", "enp-it-bk", "vb-bk-", *ADDRESS, isolation_table_name(str(state_dir))]


def playbook(args: list[str], state_dir: pathlib.Path, releases: pathlib.Path, inventory: str = INVENTORY):
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ENP_RELEASE_DIR=str(releases),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", inventory, *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def changed_tasks(output: str, host: str) -> list[str]:
    """The tasks that reported a change on host (for a readable idempotence failure)."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6 : line.find("]")]
        elif line.startswith(f"changed: [{host}"):
            found.append(task)
    return found


def ok(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed rc={proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def on(host: str, state_dir: pathlib.Path, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """A root shell on a lab host, as the attacker (or the test) would have it."""
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
            f"enp@{ADDRESS[host]}",
            "sudo -n bash -s",
        ],
        input=command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"on {host}: {command[:200]!r} failed rc={proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        )
    return proc


def sql(state_dir: pathlib.Path, query: str) -> str:
    return on(
        "bk-db1", state_dir, f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d civic <<'SQL'\n{query}\nSQL\n"
    ).stdout


def backup_job(state_dir: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return on("bk-backup1", state_dir, "runuser -u enp-backup -- /usr/local/sbin/enp-backup " + " ".join(args))


class Citizens:
    """Pays fees every 0.2 s and uploads a document every 2 s to the app server; records what was committed when."""

    def __init__(self) -> None:
        self.payments: list[tuple[float, str]] = []  # (time the answer arrived, receipt)
        self.documents: list[tuple[float, str]] = []  # (time, sha256)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Citizens:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _post(self, path: str, body: bytes, content_type: str) -> dict:
        request = urllib.request.Request(APP + path, data=body, headers={"Content-Type": content_type})  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (lab address)
            return json.load(answer)

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            try:
                paid = self._post(
                    "/api/payments",
                    json.dumps(
                        {
                            "service": "trade_licence",
                            "ulb_code": "MP001",
                            "amount": 150,
                            "method": "upi",
                            "payer_name": "Backup Drill",
                            "idempotency_key": str(uuid.uuid4()),
                        }
                    ).encode(),
                    "application/json",
                )
                self.payments.append((time.time(), paid.get("receipt_no") or paid["payment"]["receipt_no"]))
                if tick % 10 == 0:
                    self._upload()
            except Exception as error:  # noqa: BLE001 - during the attack and the restore the app may be down
                self.errors.append(f"{time.time():.1f} {error}")
            tick += 1
            self._stop.wait(0.2)

    def _upload(self) -> None:
        png = PNG_HEAD + PNG_TAIL[:-12] + uuid.uuid4().bytes + PNG_TAIL[-12:]
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f'--{boundary}\r\nContent-Disposition: form-data; name="ulb_code"\r\n\r\nMP001\r\n'.encode(),
                f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nupload\r\n'.encode(),
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="plan.png"\r\n'.encode(),
                b"Content-Type: image/png\r\n\r\n" + png + b"\r\n",
                f"--{boundary}--\r\n".encode(),
            ]
        )
        made = self._post("/api/documents", body, f"multipart/form-data; boundary={boundary}")
        self.documents.append((time.time(), made["document"]["sha256"]))


ATTACKER_TRIES = {
    # Every key the host has, against every account on the backup server.
    "ssh with any key found on the host": (
        "for key in $(find / -xdev -type f \\( -name 'id_*' -o -name '*_ed25519' -o -name '*_rsa' \\) ! -name '*.pub' "
        "2>/dev/null); do for user in enp-backup enp-restore root enp postgres; do "
        'timeout 10 ssh -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
        "-o ConnectTimeout=5 $user@198.18.87.41 'rm -rf /var/lib/enp-backup/pgbackrest /var/lib/enp-backup/borg' "
        "&& echo BREACH $user $key; done; done; "
        "timeout 10 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o ConnectTimeout=5 enp-backup@198.18.87.41 true && echo BREACH no-key; true"
    ),
    # Any other service on the backup server an attacker could talk to.
    "any other listening port on the backup server": (
        "for port in 21 80 443 873 5432 6000 8000 8080 9000; do "
        'timeout 3 bash -c "echo > /dev/tcp/198.18.87.41/$port" 2>/dev/null && echo BREACH port $port; done; true'
    ),
}


def test_backups_resist_the_attacker_and_restore_the_latest_clean_point(
    root_required: None, tmp_path: pathlib.Path
) -> None:
    state_dir, releases = tmp_path / "lab", tmp_path / "releases"
    subprocess.run(
        [sys.executable, str(PROJECT / "scripts/build_release.py"), "--version", "1.0.0", "--out", str(releases)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    before = snapshot()
    citizens = None
    try:
        ok(playbook(["playbooks/lab_up.yml"], state_dir, releases), "lab_up.yml")
        ok(playbook([BUILD], state_dir, releases), "backup_estate.yml (data tier, seed, backups)")
        again = ok(playbook(["playbooks/backup.yml"], state_dir, releases), "backup.yml (second run)")
        for host in ADDRESS:
            changed = changed_tasks(again, host)
            assert recap(again, host)["changed"] == 0, f"backup.yml changed again on {host}: {changed}"

        citizens = Citizens().start()
        time.sleep(8)

        # --- the attacker is root on the database host and the app server -------------------------------------
        repo_before = on(
            "bk-backup1", state_dir, "find /var/lib/enp-backup/pgbackrest -type f | sort | xargs sha256sum"
        ).stdout
        for host in ("bk-db1", "bk-app1"):
            for name, attempt in ATTACKER_TRIES.items():
                tried = on(host, state_dir, attempt, check=False)
                assert "BREACH" not in tried.stdout, f"{name} from {host} reached the backups: {tried.stdout}"
        # The database superuser can stop the stream for a moment; the backups it already made stay.
        sql(
            state_dir,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'enp_backup';",
        )
        repo_after = on(
            "bk-backup1", state_dir, "find /var/lib/enp-backup/pgbackrest -type f | sort | xargs sha256sum"
        ).stdout
        assert set(repo_before.splitlines()) <= set(repo_after.splitlines()), "a backup file changed or vanished"
        assert json.loads(backup_job(state_dir, "verify").stdout)["database"]["ok"]
        # The scheduled test restore: the newest base backup restored into a throwaway PostgreSQL and checked.
        # (through its systemd unit, so the sandbox the timer uses is what is tested)
        on("bk-backup1", state_dir, "systemctl start enp-backup-test-restore.service")
        tested = json.loads(on("bk-backup1", state_dir, "cat /var/lib/enp-backup/status/test-restore.json").stdout)
        assert tested["ok"] and "pg_amcheck clean" in tested["detail"], tested

        # --- a newer base backup, then corrupted on the backup server (bit rot or a half-written set) ----------
        backup_job(state_dir, "db-backup", "--type", "full")
        corrupt_label = on(
            "bk-backup1", state_dir, "runuser -u enp-backup -- pgbackrest --stanza=civic info --output=json"
        ).stdout
        corrupt_label = json.loads(corrupt_label)[0]["backup"][-1]["label"]
        on(
            "bk-backup1",
            state_dir,
            f"f=$(find /var/lib/enp-backup/pgbackrest/backup/civic/{corrupt_label}/pg_data/base -type f -size +8k"
            " | head -1);"
            ' printf "\\xff\\xfe\\xfd\\xfc" | dd of="$f" bs=1 seek=100 conv=notrunc status=none',
        )
        time.sleep(4)
        backup_job(state_dir, "docs-pull")  # the last clean document archive
        time.sleep(4)

        # --- the attack; backups continue after it --------------------------------------------------------------
        refused = playbook(["playbooks/lab_attack.yml"], state_dir, releases)
        assert refused.returncode != 0 and "attack-the-lab" in refused.stdout, "the attack must ask for confirmation"
        outside = playbook(
            ["playbooks/lab_attack.yml", "-e", "enp_attack_confirm=attack-the-lab"],
            state_dir,
            releases,
            inventory=str(PROJECT / "inventories" / "production-example"),
        )
        assert outside.returncode != 0 and "runs only on lab containers" in outside.stdout, outside.stdout[-3000:]
        # The lab's own inventory, but hosts this lab does not run (the big lab's addresses): refused by name.
        elsewhere = playbook(
            ["playbooks/lab_attack.yml", "-e", "enp_attack_confirm=attack-the-lab"],
            state_dir,
            releases,
            inventory=str(PROJECT / "inventories" / "lab"),
        )
        assert elsewhere.returncode != 0 and "is not a running host of the lab" in elsewhere.stdout, elsewhere.stdout[
            -3000:
        ]
        ok(
            playbook(["playbooks/lab_attack.yml", "-e", "enp_attack_confirm=attack-the-lab"], state_dir, releases),
            "attack",
        )
        attack_started = json.loads((state_dir / "attack.json").read_text())["started"]
        incident = dt.datetime.fromisoformat(attack_started.replace("Z", "+00:00")).timestamp()
        time.sleep(6)
        backup_job(state_dir, "docs-pull")  # infected
        backup_job(state_dir, "wal-push")  # infected
        time.sleep(3)

        refused = playbook(["playbooks/restore.yml"], state_dir, releases)
        assert refused.returncode != 0 and "enp_restore_confirm=restore" in refused.stdout
        restored = ok(
            playbook(["playbooks/restore.yml", "-e", "enp_restore_confirm=restore"], state_dir, releases), "restore.yml"
        )
        citizens.stop()

        decision = json.loads((state_dir / "restore" / "decision.json").read_text())
        report = json.loads((state_dir / "restore" / "restore-report.json").read_text())
        print("\n".join(decision["explanation"]))
        print(
            json.dumps({k: report[k] for k in ("database", "documents", "last_recovered_transaction", "rpo_seconds")})
        )

        # The decision: just before the tampering transaction, not the infected archive, not the corrupt set.
        target = decision["database"]["target"]
        assert target["type"] == "xid" and not target["inclusive"], target
        assert dt.datetime.fromisoformat(target["time"]).timestamp() >= incident
        bad = [t for t in decision["evidence"]["transactions"] if t.get("malicious")]
        assert bad and bad[0]["xid"] == target["xid"], bad
        skipped = decision["database"]["skipped_base_backups"]
        assert any(s["label"] == corrupt_label for s in skipped), skipped
        assert decision["database"]["base_backup"]["label"] != corrupt_label
        docs = decision["documents"]["bk-app1"]
        assert dt.datetime.fromisoformat(docs["snapshot"]["time"]).timestamp() <= incident, docs
        rejected = {r["name"]: " ".join(r["reasons"]) for r in docs["rejected"]}
        assert any("content_name_mismatch" in why and "ransom_note" in why for why in rejected.values()), rejected

        # The database: every payment committed before the attack, nothing of the attacker's.
        committed_before = [receipt for when, receipt in citizens.payments if when < incident]
        assert len(committed_before) > 20, "the writer did not run"
        present = set(
            sql(state_dir, "SELECT receipt_no FROM civic.payments WHERE payer_name = 'Backup Drill';").split()
        )
        lost = [r for r in committed_before if r not in present]
        assert not lost, f"{len(lost)} payment(s) committed before the attack are missing, e.g. {lost[:3]}"
        assert sql(state_dir, "SELECT to_regclass('civic.readme_to_recover');").strip() == ""
        verified = on(
            "bk-app1",
            state_dir,
            "runuser -u civic -- /opt/civic-services/current/bin/civic-services verify-manifest "
            "/etc/civic-services/seed-manifest.json --json",
            check=False,
        )
        # A document the attacker encrypted before any pull saw it intact is lost: it was uploaded after the last
        # clean archive's listing, so within the documents' RPO (the documents timer, 5 min). Everything else is back.
        uploaded = {sha for _, sha in citizens.documents}
        refused = {path.rsplit("/", 1)[-1] for path in report["documents"]["bk-app1"]["refused"]}
        upload_time = dict((sha, when) for when, sha in citizens.documents)
        print(f"documents uploaded by the citizens: {len(uploaded)}; lost (encrypted before any pull): {len(refused)}")
        assert refused <= uploaded, f"documents of the seeded data set were lost: {refused - uploaded}"
        too_old = {sha for sha in refused if upload_time[sha] < incident - DOCUMENTS_RPO_S}
        assert not too_old, f"documents uploaded more than the RPO before the attack were lost: {too_old}"
        unexpected = [
            p
            for p in json.loads(verified.stdout)["problems"]
            if not (
                (p.startswith(("table payments:", "table documents:")) and p.endswith("extra)"))
                or (p.endswith(": referenced by the database, not in the manifest") and p.split()[1][:-1] in uploaded)
                or (p.endswith("missing from the store") and p.split()[1] in refused)
            )
        ]
        assert not unexpected, f"the restored data differs from the seeder manifest: {unexpected[:5]}"
        assert report["database"]["amcheck_ok"] in (True, "True"), report["database"]

        # The documents: none encrypted, renamed or a note; every referenced one present.
        checked = on(
            "bk-app1",
            state_dir,
            'cd /srv/civic-services/documents && python3 -c "import hashlib,os,sys\n'
            "bad=[]\nn=0\nfor d,_,fs in os.walk('.'):\n for f in fs:\n  p=os.path.join(d,f); n+=1\n"
            "  if not p.startswith('./sha256/') or hashlib.sha256(open(p,'rb').read()).hexdigest()!=f: bad.append(p)\n"
            'print(n, len(bad), bad[:5])"',
        ).stdout.split(maxsplit=2)
        assert int(checked[0]) > 2000 and checked[1] == "0", f"restored store holds foreign or altered files: {checked}"
        referenced = set(sql(state_dir, "SELECT DISTINCT sha256 FROM civic.documents;").split())
        stored = set(on("bk-app1", state_dir, "ls /srv/civic-services/documents/sha256/*/").stdout.split())
        assert referenced - stored <= refused, f"{len(referenced - stored - refused)} referenced document(s) missing"
        kept_uploads = {sha for when, sha in citizens.documents if when < incident} - refused
        assert kept_uploads and kept_uploads <= stored, "a document uploaded before the attack was not restored"
        assert len(referenced - stored) == len(refused), "the restore report must count every missing document"

        with urllib.request.urlopen(APP + "/health", timeout=10) as answer:  # noqa: S310 (lab address)
            assert json.load(answer)["status"] == "ok"
        assert report["rpo_seconds"] is not None and float(report["rpo_seconds"]) <= RPO_TARGET_S, report
        assert "Report:" in restored

        # Backups resumed on the restored estate.
        # (status exits 1: the corrupted set still fails verification, which it must keep saying until it expires)
        status = on("bk-backup1", state_dir, "runuser -u enp-backup -- /usr/local/sbin/enp-backup status", check=False)
        assert status.returncode == 1 and "verify        FAILED" in status.stdout, status.stdout
        assert "db-backup     ok" in status.stdout and "docs-pull     ok" in status.stdout, status.stdout
    finally:
        if citizens:
            citizens.stop()
        if not KEEP_LAB:
            playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], state_dir, releases)
    if KEEP_LAB:
        pytest.skip(f"lab kept for inspection (ENP_TEST_KEEP_LAB=1): ENP_LAB_DIR={state_dir}")
    left = diff(before, snapshot(), markers(state_dir))
    assert left == {}, f"teardown left things behind: {left}"


@pytest.fixture(scope="module")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridges, overlay mounts, systemd-nspawn)")
