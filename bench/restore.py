#!/usr/bin/env python3
"""Benchmark (issue 7, item 7): restore throughput of the database (base restore PLUS WAL replay) and of the
documents, each as a ratio against a raw copy (`cp -a` + `sync` of the same bytes on the same host, same run),
and the RPO achieved when the primary dies under load.

A PostgreSQL primary, an app server and the backup server in a zone of their own (bench/inventories/restore:
bridge enp-brs, 198.18.97.0/24), built by the project's roles with the `small` or `large` data set and
playbooks/backup.yml. Then:

1. WAL after the base backup: legitimate inserts (about --wal-mb of WAL), so a restore has to replay it;
2. citizens pay through the app (one payment every 50 ms) while the primary is killed (SIGKILL): the last
   acknowledged payment is the recovery target the RPO is measured against;
3. raw copies on the same hosts (caches dropped before each measurement): the data directory, the store;
4. playbooks/restore.py to the latest point; the restore report gives copy and replay seconds and bytes;
5. the table; lab-down; a check that nothing is left.

    sudo .venv/bin/python bench/restore.py [--size large|small] [--wal-mb 1024] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests" / "integration"))
from labstate import diff, snapshot  # noqa: E402  (the integration tests' leftover snapshot)

INVENTORY = PROJECT / "bench" / "inventories" / "restore"
BUILD = PROJECT / "tests" / "integration" / "playbooks" / "backup_estate.yml"
BIN = PROJECT / ".venv" / "bin"
ADDRESS = {"rs-app1": "198.18.97.21", "rs-db1": "198.18.97.31", "rs-backup1": "198.18.97.41"}
APP = f"http://{ADDRESS['rs-app1']}:8000"
DATA_DIR = "/var/lib/postgresql/15/main"
STORE = "/srv/civic-services/documents"
TARGET_RATIO = 0.7


def playbook(args: list[str], env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n### ansible-playbook {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), *args],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=7200,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-playbook {' '.join(args)} failed (rc={proc.returncode}); see {log}")
    return time.monotonic() - started


def on(state_dir: Path, host: str, command: str, timeout: float = 3600) -> str:
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
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"on {host}: {command[:160]!r} failed: {proc.stderr[-800:]}")
    return proc.stdout


def drop_caches() -> None:
    """Containers share the controller's page cache: drop it so each copy reads from disk (cold), as after a reboot."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def raw_copy(state_dir: Path, host: str, source: str) -> tuple[float, int]:
    """Seconds and bytes of `cp -a` + `sync` of source to a scratch folder on the same host (then removed)."""
    drop_caches()
    script = (
        f"set -e; rm -rf /var/tmp/enp-rawcopy; b=$(du -sb {source} | cut -f1); s=$(date +%s.%N); "
        f"cp -a {source} /var/tmp/enp-rawcopy; sync; e=$(date +%s.%N); rm -rf /var/tmp/enp-rawcopy; echo $s $e $b"
    )
    start, end, size = on(state_dir, host, script).split()
    return float(end) - float(start), int(size)


class Payer:
    """One payment every 50 ms through the app; keeps (time acknowledged, receipt) of each success."""

    def __init__(self) -> None:
        self.acked: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            body = {
                "service": "trade_licence",
                "ulb_code": "MP001",
                "amount": 150,
                "method": "upi",
                "payer_name": "Bench RPO",
                "idempotency_key": str(uuid.uuid4()),
            }
            request = urllib.request.Request(  # noqa: S310 (lab address)
                APP + "/api/payments", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=3) as answer:  # noqa: S310 (lab address)
                    paid = json.load(answer)
                self.acked.append((time.time(), paid.get("receipt_no") or paid["payment"]["receipt_no"]))
            except Exception:  # noqa: S110 - the primary is killed under it on purpose
                pass
            self._stop.wait(0.05)

    def start(self) -> Payer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def measure(size: str, wal_mb: int, work: Path, log: Path) -> dict:
    state_dir, releases = work / "lab", work / "releases"
    subprocess.run(
        [sys.executable, str(PROJECT / "scripts/build_release.py"), "--version", "1.0.0", "--out", str(releases)],
        check=True,
        capture_output=True,
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ENP_LAB_DIR=str(state_dir),
        ENP_RELEASE_DIR=str(releases),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    )
    figures: dict = {"size": size}
    figures["lab_up_s"] = playbook(["playbooks/lab_up.yml"], env, log)
    figures["build_seed_backup_s"] = playbook([str(BUILD), "-e", f"app_seed_size={size}"], env, log)

    # WAL after the base backup, by legitimate inserts (the estate's data is insert-only).
    rows = max(1, wal_mb * 1024 * 1024 // 400)
    insert = (
        "INSERT INTO civic.payments (receipt_no, ulb_code, service, amount, method, payer_name) "
        "SELECT 'BENCH-' || g, 'MP001', 'trade_licence', 100, 'upi', repeat('x', 300) FROM generate_series(1, %d) g"
    )
    on(state_dir, "rs-db1", f'runuser -u postgres -- psql -XAtq -d civic -c "{insert % rows}"')
    figures["wal_rows"] = rows

    # The primary dies under load; give the stream a moment to deliver what was acknowledged.
    payer = Payer().start()
    time.sleep(10)
    on(state_dir, "rs-db1", "systemctl kill --signal=SIGKILL postgresql@15-main; systemctl stop postgresql@15-main")
    killed_at = time.time()
    time.sleep(2)
    payer.stop()
    acked = [a for a in payer.acked if a[0] <= killed_at]
    figures["payments_acknowledged"] = len(acked)
    time.sleep(5)
    on(state_dir, "rs-backup1", "runuser -u enp-backup -- /usr/local/sbin/enp-backup wal-push")

    figures["raw_db_s"], figures["raw_db_bytes"] = raw_copy(state_dir, "rs-db1", DATA_DIR)
    figures["raw_docs_s"], figures["raw_docs_bytes"] = raw_copy(state_dir, "rs-app1", STORE)

    drop_caches()
    figures["restore_playbook_s"] = playbook(
        ["playbooks/restore.yml", "-e", "enp_restore_confirm=restore", "-e", f"enp_incident_time={iso(killed_at)}"],
        env,
        log,
    )
    report = json.loads((state_dir / "restore" / "restore-report.json").read_text())
    database, documents = report["database"], next(iter(report["documents"].values()))
    figures["db_copy_s"] = float(database["seconds_copy"])
    figures["db_replay_s"] = float(database["seconds_replay"])
    figures["db_restore_s"] = float(database["seconds_total"])
    figures["docs_restore_s"] = float(documents["seconds"])
    figures["docs_restored"] = documents["documents"]

    present = set(
        on(
            state_dir,
            "rs-db1",
            'runuser -u postgres -- psql -XAtq -d civic -c "SELECT receipt_no FROM civic.payments '
            "WHERE payer_name = 'Bench RPO'\"",
        ).split()
    )
    missing = [when for when, receipt in acked if receipt not in present]
    kept = [when for when, receipt in acked if receipt in present]
    # RPO: acknowledged (committed) payments lost = the time from the last one kept to the last one acknowledged.
    figures["payments_lost"] = len(missing)
    figures["rpo_s"] = round(max(0.0, (max(missing) - max(kept)) if missing and kept else 0.0), 3)
    figures["report_rpo_s"] = report.get("rpo_seconds")
    figures["db_ratio"] = round(figures["raw_db_s"] / figures["db_restore_s"], 2)
    figures["docs_ratio"] = round(figures["raw_docs_s"] / figures["docs_restore_s"], 2)
    return figures


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table(f: dict) -> str:
    mb = 1024 * 1024
    lines = [
        f"restore benchmark, data set {f['size']} (same run, same hosts; caches dropped before each copy)",
        f"{'what':<34}{'bytes':>14}{'seconds':>10}{'MB/s':>9}{'ratio vs raw copy':>19}",
        f"{'database raw copy (cp -a + sync)':<34}{f['raw_db_bytes']:>14,}{f['raw_db_s']:>10.1f}"
        f"{f['raw_db_bytes'] / mb / f['raw_db_s']:>9.1f}{'1.00':>19}",
        f"{'database restore (base + replay)':<34}{f['raw_db_bytes']:>14,}{f['db_restore_s']:>10.1f}"
        f"{f['raw_db_bytes'] / mb / f['db_restore_s']:>9.1f}{f['db_ratio']:>19.2f}",
        f"{'  of which base files':<34}{'':>14}{f['db_copy_s']:>10.1f}",
        f"{'  of which WAL replay':<34}{'':>14}{f['db_replay_s']:>10.1f}",
        f"{'documents raw copy (cp -a + sync)':<34}{f['raw_docs_bytes']:>14,}{f['raw_docs_s']:>10.1f}"
        f"{f['raw_docs_bytes'] / mb / f['raw_docs_s']:>9.1f}{'1.00':>19}",
        f"{'documents restore (verified)':<34}{f['raw_docs_bytes']:>14,}{f['docs_restore_s']:>10.1f}"
        f"{f['raw_docs_bytes'] / mb / f['docs_restore_s']:>9.1f}{f['docs_ratio']:>19.2f}",
        f"RPO achieved: {f['rpo_s']} s ({f['payments_lost']} of {f['payments_acknowledged']} acknowledged payments "
        f"lost when the primary was killed under load; restore report says {f['report_rpo_s']} s)",
        f"target: each ratio >= {TARGET_RATIO}; database RPO <= 5 s",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "large"], default="large")
    parser.add_argument("--wal-mb", type=int, default=512, help="WAL written after the base backup (MB, about)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/restore: needs root (the lab: bridges, overlay mounts, systemd-nspawn)", file=sys.stderr)
        return 3
    work = Path(tempfile.mkdtemp(prefix="enp-bench-restore-", dir="/var/tmp"))
    log = work / "bench.log"
    before = snapshot()
    started = time.monotonic()
    figures: dict = {}
    try:
        figures = measure(args.size, args.wal_mb, work, log)
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyError, ValueError) as error:
        print(f"bench/restore: {error}", file=sys.stderr)
    finally:
        env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ENP_LAB_DIR=str(work / "lab"))
        env["ENP_RELEASE_DIR"] = str(work / "releases")
        try:
            playbook(["playbooks/lab_down.yml", "-e", "enp_lab_down_confirm=down"], env, log)
        except RuntimeError as error:
            print(f"bench/restore: lab-down: {error}", file=sys.stderr)
    markers = [str(work), "198.18.97.", "enp-brs", "vb-rs-", *ADDRESS]
    left = diff(before, snapshot(), markers)
    figures["leftovers"] = left
    figures["wall_s"] = round(time.monotonic() - started, 1)
    if "db_ratio" not in figures:
        print(f"bench/restore: no figures; log kept in {log}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=1) if args.json else table(figures))
    print(f"wall time {figures['wall_s']} s; leftovers: {left or 'none'}; log {log}")
    if not left:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
