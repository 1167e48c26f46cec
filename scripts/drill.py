#!/usr/bin/env python3
"""`make drill`: rehearse the night after an attack in the lab, unattended, and measure it.

1. build the lab estate (inventories/lab), the services, the data set (small or large), hardening, firewall,
   a signed baseline of every host and the backups — the estate as it runs before the attack;
2. the simulated attack (playbooks/lab_attack.yml; lab hosts only): documents encrypted and renamed, ransom
   notes, a cron job, the database tampered;
3. the on-call team's job: `enp incident start`, then `enp recover --yes` (contain, evidence, rebuild, restore
   to the latest clean point, verify, reopen) and `enp report`;
4. prints RTO and RPO against their targets and where the report is; exit 0 only when both are met.

    sudo make drill                 # = .venv/bin/python scripts/drill.py
    .venv/bin/python scripts/drill.py --size large             # the large data set
    .venv/bin/python scripts/drill.py --stage build             # only the estate before the attack

The lab is left running for inspection unless --down is given (make lab-down removes it).
Exit status: 0 both targets met, 1 the drill ran and a target was missed, 2 usage, 3 a step failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = PROJECT / ".venv" / "bin"


def say(text: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
    print(f"\n\033[1m[drill {stamp}] {text}\033[0m", flush=True)


def run(argv: list[str], env: dict[str, str], what: str) -> float:
    """Run one step; on failure say which, where its output is, and how to go on."""
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=PROJECT, env=env, check=False)
    took = time.monotonic() - started
    if proc.returncode != 0:
        print(
            f"\ndrill: {what} failed (exit {proc.returncode}) after {took:.0f} s: {' '.join(argv)}\n"
            "The lab is left as it is for inspection (make lab-status; make lab-down removes it).",
            file=sys.stderr,
        )
        raise SystemExit(3)
    return took


def playbook(name: str, env: dict[str, str], *extra: str) -> list[str]:
    return [str(BIN / "ansible-playbook"), "-i", env["ENP_INVENTORY"], f"playbooks/{name}", *extra]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["small", "large"], default=os.environ.get("SIZE", "small"))
    parser.add_argument("--inventory", default=os.environ.get("INVENTORY", "inventories/lab"))
    parser.add_argument("--down", action="store_true", help="remove the lab at the end")
    parser.add_argument(
        "--stage",
        choices=["all", "build", "attack-and-recover"],
        default="all",
        help="build: only the estate before the attack; attack-and-recover: on an estate built before",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("drill: run as root (it builds containers and bridges): sudo make drill", file=sys.stderr)
        return 2
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ENP_INVENTORY=args.inventory,
    )
    timings: dict[str, float] = {}

    if args.stage != "attack-and-recover":
        build(args, env, timings)
    if args.stage == "build":
        return 0
    return attack_and_recover(args, env, timings)


def build(args: argparse.Namespace, env: dict[str, str], timings: dict[str, float]) -> None:
    say(f"1/4 the estate before the attack ({args.inventory}, data set {args.size})")
    timings["lab_up"] = run(playbook("lab_up.yml", env), env, "building the lab")
    timings["site"] = run(playbook("site.yml", env), env, "building the services")
    timings["seed"] = run(playbook("seed.yml", env, "-e", f"app_seed_size={args.size}"), env, "loading the data set")
    timings["harden"] = run(playbook("harden.yml", env), env, "hardening")
    timings["firewall"] = run(playbook("firewall.yml", env), env, "the zone firewall")
    timings["backup"] = run(playbook("backup.yml", env), env, "the backups")
    # Last, so the baselines include the backup wiring. The drill estate was just built from known-good sources:
    # its capture replaces any older baseline.
    timings["baseline"] = run(
        playbook("baseline_capture.yml", env, "-e", "enp_baseline_replace=true"), env, "capturing the signed baselines"
    )


def attack_and_recover(args: argparse.Namespace, env: dict[str, str], timings: dict[str, float]) -> int:
    incident_id = "DRILL-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")

    say("2/4 the simulated attack (lab hosts only)")
    timings["attack"] = run(
        playbook("lab_attack.yml", env, "-e", "enp_attack_confirm=attack-the-lab"), env, "the simulated attack"
    )
    lab_dir = Path(os.environ.get("ENP_LAB_DIR", PROJECT / ".lab"))
    attack = json.loads((lab_dir / "attack.json").read_text())

    say(f"3/4 the on-call team: incident {incident_id}, then enp recover")
    enp = str(BIN / "enp")
    run(
        [enp, "incident", "start", "--id", incident_id, "--occurred-at", attack["started"], "-i", args.inventory],
        env,
        "recording the incident",
    )
    timings["recover"] = run([enp, "recover", "--yes", "-i", args.inventory], env, "enp recover")
    run([enp, "report", "-i", args.inventory], env, "writing the report")

    say("4/4 figures")
    sys.path.insert(0, str(PROJECT))
    from enp.report import format_summary  # the same lines enp report prints

    incident_dir = PROJECT / ".enp" / "incidents" / incident_id
    report = json.loads((incident_dir / "report" / "report.json").read_text())
    paths = {kind: incident_dir / "report" / f"report.{kind}" for kind in ("html", "md", "json")}
    print("\n".join(format_summary(report, paths)))
    summary = report["summary"]
    met = bool(summary["rto"]["met"]) and bool(summary["rpo"]["met"])
    (incident_dir / "drill.json").write_text(
        json.dumps(
            {"size": args.size, "timings_before_attack": timings, "rto": summary["rto"], "rpo": summary["rpo"]},
            indent=1,
        )
        + "\n"
    )
    if args.down:
        run(playbook("lab_down.yml", env, "-e", "enp_lab_down_confirm=down"), env, "removing the lab")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
