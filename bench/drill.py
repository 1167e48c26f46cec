#!/usr/bin/env python3
"""Benchmark (issue 8, item 5): RTO of an emergency rebuild, per phase and in total, against the 15-minute target
and against the more than 12 days the December 2023 incident took by hand.

Either runs the whole drill first (scripts/drill.py: build the lab estate, attack it, enp recover) and then reads
its report, or reads the report of a drill or incident that already ran:

    sudo .venv/bin/python bench/drill.py --size small            # runs make drill's script, then the table
    .venv/bin/python bench/drill.py --incident DRILL-20261206-115115  [--json]

The figures come from the incident's own report (report.json: the journal's phase times), so the benchmark and
the report cannot disagree. A phase that failed and was rerun shows every attempt; the total is detection to the
end of reopen.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
MANUAL_2023_S = 12 * 24 * 3600  # "more than 12 days" of manual restoration (MPSEDC, Dec 2023)


def latest_drill() -> str | None:
    folder = PROJECT / ".enp" / "incidents"
    reports = [p / "report" / "report.json" for p in folder.glob("DRILL-*")]
    newest = sorted((r.stat().st_mtime, r.parents[1].name) for r in reports if r.is_file())
    return newest[-1][1] if newest else None


def table(report: dict[str, Any]) -> list[str]:
    phases = report["timeline"]["phases"]
    rto = report["summary"]["rto"]
    rpo = report["summary"]["rpo"]
    lines = [f"{'phase':<10}{'status':<9}{'seconds':>9}{'share of RTO':>14}"]
    total = rto["seconds"] or 0.0
    for phase in phases:
        seconds = phase.get("duration_seconds") or 0.0
        share = f"{100 * seconds / total:.0f} %" if total else "-"
        lines.append(f"{phase['name']:<10}{phase['status']:<9}{seconds:>9.0f}{share:>14}")
    target = rto["target_seconds"]
    if rto["seconds"] is None:
        lines.append("RTO: not back online")
    else:
        verdict = "met" if rto["met"] else "NOT met"
        lines.append(
            f"RTO {rto['seconds']:.0f} s = {rto['seconds'] / 60:.1f} min (target {target / 60:.0f} min: {verdict}); "
            f"{MANUAL_2023_S / rto['seconds']:.0f} x faster than the 12 days of December 2023"
        )
    rpo_text = f"{rpo['seconds']:.3f} s" if rpo["seconds"] is not None else "not recorded"
    lines.append(f"RPO {rpo_text} (target {rpo['target_seconds']} s: {'met' if rpo['met'] else 'NOT met'})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["small", "large"], help="run the drill with this data set first")
    parser.add_argument("--incident", help="read this incident's report (default: the newest drill)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.size:
        drill = subprocess.run(
            [sys.executable, str(PROJECT / "scripts" / "drill.py"), "--size", args.size], check=False
        )
        if drill.returncode not in (0, 1):  # 1: ran, a target was missed; the table says which
            return drill.returncode
    incident = args.incident or latest_drill()
    if not incident:
        print(
            "bench/drill: no drill report yet; run with --size small (needs root) or give --incident", file=sys.stderr
        )
        return 2
    path = PROJECT / ".enp" / "incidents" / incident / "report" / "report.json"
    if not path.is_file():
        print(f"bench/drill: {path} not found; run `enp report --incident {incident}` first", file=sys.stderr)
        return 2
    report = json.loads(path.read_text(encoding="utf-8"))
    if args.json:
        figures = {
            "incident": incident,
            "phases": [
                {k: p.get(k) for k in ("name", "status", "duration_seconds")} for p in report["timeline"]["phases"]
            ],
            "rto": report["summary"]["rto"],
            "rpo": report["summary"]["rpo"],
        }
        print(json.dumps(figures, indent=1))
    else:
        print(f"drill {incident}")
        print("\n".join(table(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
