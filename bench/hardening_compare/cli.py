"""The benchmark: build the lab, give every host the same service, harden each its own way, audit, tear down.

    sudo .venv/bin/python bench/hardening_compare.py --devsec /work/anchors/ansible-collection-hardening \
        --lockdown /work/anchors/DEBIAN12-CIS --json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import lab, variants
from .parsing import first_failure, parse_lynis_report, parse_oscap_results, play_recap
from .report import (
    NOT_RUN,
    THIS_RUN,
    Health,
    VariantResult,
    health_dict,
    notes,
    reference_row,
    render_table,
)

WORK_PARENT = Path("/var/tmp")  # noqa: S108 - mkdtemp below makes a private folder in it
NO_SCAP = (
    "OpenSCAP: no Debian 12 content available (Debian's ssg-debian 0.1.65 carries no Debian 12 profile); "
    "give --scap-content PATH (an SCAP data stream) to run `oscap xccdf eval` on each host"
)


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    inventory: Path
    state_dir: Path
    addresses: dict[str, str] = field(default_factory=dict)  # host -> address
    anchors: dict[str, variants.Anchor] = field(default_factory=dict)
    anchor_paths: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lynis_version: str = ""


# ---------------------------------------------------------------- arguments and pre-flight


def variants_arg(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in variants.VARIANTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(variants.VARIANTS)} (comma-separated)")
    return [v for v in variants.VARIANTS if v in chosen]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/hardening_compare.py",
        description="Lynis hardening index, warnings, suggestions and service health after each hardening variant.",
    )
    parser.add_argument(
        "--variants",
        type=variants_arg,
        default=list(variants.VARIANTS),
        help="comma-separated subset of untouched,devsec,lockdown,ours (default: all)",
    )
    parser.add_argument("--devsec", type=Path, help="checkout of github.com/dev-sec/ansible-collection-hardening")
    parser.add_argument("--lockdown", type=Path, help="checkout of github.com/ansible-lockdown/DEBIAN12-CIS")
    parser.add_argument(
        "--no-overrides",
        action="store_true",
        help="run the anchors with none of the documented overrides (to see where they stop on these hosts)",
    )
    parser.add_argument("--scap-content", type=Path, help="SCAP data stream to evaluate with oscap on each host")
    parser.add_argument("--scap-profile", default="", help="XCCDF profile id for --scap-content (default: oscap's)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up for inspection (prints how to remove it)")
    parser.add_argument(
        "--json", nargs="?", const="", default=None, metavar="PATH", help="also write JSON (default WORKDIR/...json)"
    )
    parser.add_argument("--workdir", type=Path, help="inventory, state, logs, reports (default /var/tmp/...)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per playbook run (default 1800)")
    parser.add_argument("--down-timeout", type=float, default=300, help="seconds for lab_down (default 300)")
    parser.add_argument("--lynis-timeout", type=float, default=900, help="seconds per Lynis audit (default 900)")
    return parser.parse_args(argv)


def preflight() -> None:
    """Refuse (exit 3) when we cannot run or a previous run of this benchmark is still up."""
    if os.geteuid() != 0:
        print(
            "bench/hardening_compare.py needs root: the lab creates bridges, overlay mounts and systemd-nspawn hosts.\n"
            "Run it as root, e.g. `sudo .venv/bin/python bench/hardening_compare.py`.",
            file=sys.stderr,
        )
        sys.exit(3)
    if not (lab.VENV_BIN / "ansible-playbook").exists():
        print(f"{lab.VENV_BIN}/ansible-playbook is missing: run `make setup` first.", file=sys.stderr)
        sys.exit(3)
    stale = sorted(
        p.name
        for p in Path("/sys/class/net").iterdir()
        if p.name == lab.BRIDGE or p.name.startswith(f"vb-{lab.HOST_PREFIX}")
    )
    if stale:
        states = sorted(str(p) for p in WORK_PARENT.glob("enp-bench-hardening-*/state"))
        print(
            f"interfaces {', '.join(stale)} already exist: an earlier hardening_compare run (--keep?) is still up.\n"
            "Remove it with its own records, for each state folder below:\n"
            f"  ENP_LAB_DIR=STATE ANSIBLE_CONFIG={lab.PROJECT}/ansible.cfg {lab.VENV_BIN}/ansible-playbook "
            "-i STATE/../inventory playbooks/lab_down.yml -e enp_lab_down_confirm=down\n  "
            + "\n  ".join(states or ["(none found under /var/tmp; look for the --workdir you gave)"]),
            file=sys.stderr,
        )
        sys.exit(3)


def app_password(state_dir: Path) -> str:
    """The lab's random app-role password (ansible.builtin.password lookup file: `PASSWORD[ salt=...]`)."""
    text = (state_dir / "secrets" / "postgresql_app_password").read_text().strip()
    return text.split(" salt=")[0].split(" ident=")[0]


def postgres_names() -> tuple[str, str]:
    defaults = yaml.safe_load((lab.PROJECT / "roles" / "postgresql" / "defaults" / "main.yml").read_text())
    return defaults.get("postgresql_database", "civic"), defaults.get("postgresql_app_user", "civic_app")


# ---------------------------------------------------------------- phases


def phase(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def lab_up(ctx: Context, env: dict[str, str]) -> lab.PlaybookRun:
    return lab.run_playbook(
        "playbooks/lab_up.yml", ctx.inventory, env, ctx.workdir / "lab_up.log", ctx.args.timeout, "lab_up"
    )


def probe_all(
    ctx: Context, hosts: list[str], with_lynis: bool
) -> dict[str, tuple[object, lab.LynisRun | None, dict[str, object]]]:
    """Probe hosts in parallel: health, and (after hardening) Lynis and OpenSCAP. host -> (health, lynis, scap)."""
    password = app_password(ctx.state_dir)
    database, app_user = postgres_names()
    key = ctx.state_dir / "ssh" / "id_ed25519"

    def one(host: str) -> tuple[object, lab.LynisRun | None, dict[str, object]]:
        try:
            return measure(host)
        except Exception as exc:  # one host's probe error must not lose the other hosts' results
            print(f"      ! {host}: probe failed: {exc!r}", flush=True)
            return Health(via=f"nothing: the probe raised {exc!r}"), None, {}

    def measure(host: str) -> tuple[object, lab.LynisRun | None, dict[str, object]]:
        health, runner = lab.probe_health(host, ctx.addresses[host], key, ctx.state_dir, password, database, app_user)
        lynis_run, scap = None, {}
        if with_lynis and runner is not None:
            lynis_run = lab.run_lynis(runner, ctx.args.lynis_timeout)
            (ctx.workdir / "lynis").mkdir(exist_ok=True)
            (ctx.workdir / "lynis" / f"{host}.dat").write_text(lynis_run.report)
            (ctx.workdir / "lynis" / f"{host}.screen.txt").write_text(lynis_run.screen)
            print(f"      {host}: Lynis done in {lynis_run.seconds:.0f}s", flush=True)
            if ctx.args.scap_content:
                scap = lab.run_oscap(runner, ctx.args.scap_content, ctx.args.scap_profile, ctx.args.lynis_timeout)
        return health, lynis_run, scap

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(hosts)))
    try:
        futures = {host: pool.submit(one, host) for host in hosts}
        return {host: future.result() for host, future in futures.items()}
    finally:
        # On Ctrl-C do not wait for running audits: lab_down stops the hosts and their SSH sessions end.
        pool.shutdown(wait=False, cancel_futures=True)


def harden(ctx: Context, result: VariantResult, env: dict[str, str]) -> None:
    """Apply one variant to its host; a failure is recorded and the host is scored as the variant left it."""
    if result.variant == "untouched":
        result.status = "untouched"
        return
    if result.variant == "ours":
        playbook: Path = lab.PROJECT / variants.HARDEN_PLAYBOOK
        if not playbook.is_file():
            result.status, result.note = NOT_RUN, f"ours: {variants.HARDEN_PLAYBOOK} not present (scored as left)"
            return
        run_env = env
    else:
        playbook = ctx.workdir / f"{result.variant}-playbook.yml"
        overrides = variants.overrides_for(result.variant, not ctx.args.no_overrides)
        playbook.write_text(variants.anchor_playbook(result.variant, overrides))
        run_env = lab.ansible_env(ctx.state_dir, ctx.workdir, ctx.anchor_paths)
    run = lab.run_playbook(
        playbook,
        ctx.inventory,
        run_env,
        ctx.workdir / f"harden-{result.variant}.log",
        ctx.args.timeout,
        f"harden {result.variant}",
        ["-l", result.host],
    )
    result.harden_seconds, result.harden_rc, result.log = round(run.seconds, 1), run.rc, str(run.log)
    result.recap = play_recap(run.output).get(result.host, {})
    if run.rc == 0:
        result.status = "applied"
        return
    result.status = "failed"
    failure = first_failure(run.output, result.host) or first_failure(run.output)
    if run.rc is None:
        result.note = f"{result.variant}: stopped after {ctx.args.timeout:.0f}s; scored as left"
    elif failure:
        result.failure = asdict(failure)
        result.note = f"{result.variant}: {failure.short()}; scored as left"
    else:
        result.note = f"{result.variant}: ansible-playbook rc={run.rc} (see {run.log}); scored as left"
    print(f"      ! {result.note}", flush=True)


def run_lab(ctx: Context, results: dict[str, VariantResult], to_run: list[str]) -> None:
    env = lab.ansible_env(ctx.state_dir, ctx.workdir)
    total = 6
    hosts = [variants.HOSTS[v] for v in to_run]

    phase(1, total, f"lab up: {len(hosts)} fresh Debian 12 hosts ({', '.join(hosts)}) on {lab.BRIDGE}, apt_baseline")
    up = lab_up(ctx, env)
    ctx.timings["lab_up_s"] = round(up.seconds, 1)
    if up.rc != 0:
        failure = first_failure(up.output)
        why = f"lab_up failed: {failure.short() if failure else f'rc={up.rc}'} (log {up.log})"
        ctx.errors.append(why)
        for v in to_run:
            results[v].status, results[v].note = NOT_RUN, why
        return

    phase(2, total, "the same estate service on every host: pki + postgresql primary, Lynis from the mirror")
    services = lab.run_playbook(
        lab.SERVICES_PLAYBOOK, ctx.inventory, env, ctx.workdir / "services.log", ctx.args.timeout, "services"
    )
    ctx.timings["services_s"] = round(services.seconds, 1)
    if services.rc != 0:
        recap = play_recap(services.output)
        for v in list(to_run):
            host = variants.HOSTS[v]
            if recap.get(host, {}).get("failed", 1) or recap.get(host, {}).get("unreachable", 0):
                failure = first_failure(services.output, host)
                what = failure.short() if failure else "see the log"
                why = f"services playbook failed on {host}: {what} ({services.log})"
                ctx.errors.append(why)
                results[v].status, results[v].note = NOT_RUN, why
                to_run.remove(v)
    if not to_run:
        return

    phase(3, total, "health before hardening (fresh SSH login, sudo, sshd -t, failed units, TLS query as the app role)")
    started = time.monotonic()
    for host, (health, _, _) in probe_all(ctx, [variants.HOSTS[v] for v in to_run], with_lynis=False).items():
        results[host.removeprefix(lab.HOST_PREFIX)].before = health  # type: ignore[assignment]
    ctx.timings["probe_before_s"] = round(time.monotonic() - started, 1)

    phase(4, total, "hardening, one variant at a time (wall time per variant)")
    for v in to_run:
        print(f"   {v} on {variants.HOSTS[v]}", flush=True)
        try:
            harden(ctx, results[v], env)
        except (OSError, ValueError, KeyError) as exc:  # the harness's own trouble with one variant: record, go on
            results[v].status, results[v].note = "failed", f"{v}: the harness could not run it: {exc!r}"
            ctx.errors.append(results[v].note)
        if results[v].harden_seconds is not None:
            print(f"      {v}: {results[v].status} in {results[v].harden_seconds:.1f}s", flush=True)

    phase(5, total, f"after hardening: the same probes, then `{lab.LYNIS_COMMAND}` on every host in parallel")
    started = time.monotonic()
    for host, (health, lynis_run, scap) in probe_all(ctx, [variants.HOSTS[v] for v in to_run], with_lynis=True).items():
        result = results[host.removeprefix(lab.HOST_PREFIX)]
        result.after = health  # type: ignore[assignment]
        result.source = THIS_RUN
        result.scap = scap
        if lynis_run is None:
            result.lynis_error = f"not run: {health.via}"  # type: ignore[attr-defined]
            continue
        report = parse_lynis_report(lynis_run.report)
        result.lynis_seconds = round(lynis_run.seconds, 1)
        result.lynis_error = lynis_run.error
        if not report.complete:
            result.lynis_error = (result.lynis_error + "; " if result.lynis_error else "") + "report incomplete"
        result.hardening_index = report.hardening_index
        result.warnings = len(report.warnings) if report.complete else None
        result.suggestions = len(report.suggestions) if report.complete else None
        result.warning_ids, result.suggestion_ids = report.ids("warnings"), report.ids("suggestions")
        result.lynis_version = report.lynis_version
        ctx.lynis_version = ctx.lynis_version or report.lynis_version
    ctx.timings["probe_after_and_lynis_s"] = round(time.monotonic() - started, 1)


def teardown(ctx: Context, before: dict[str, list[str]], hosts: list[str]) -> dict[str, object]:
    outcome: dict[str, object] = {}
    down_cmd = (
        f"ENP_LAB_DIR={ctx.state_dir} ANSIBLE_CONFIG={lab.PROJECT}/ansible.cfg {lab.VENV_BIN}/ansible-playbook "
        f"-i {ctx.inventory} playbooks/lab_down.yml -e enp_lab_down_confirm=down   (cwd {lab.PROJECT})"
    )
    if ctx.args.keep:
        print(f"\n[6/6] --keep: the lab stays up (ssh -i {ctx.state_dir}/ssh/id_ed25519 enp@ADDRESS)", flush=True)
        print(f"      remove it later with:\n        {down_cmd}", flush=True)
        outcome["kept"] = True
        outcome["down_command"] = down_cmd
        return outcome
    print("\n[6/6] lab down (always; Ctrl-C is ignored until it is done)", flush=True)
    env = lab.ansible_env(ctx.state_dir, ctx.workdir)
    with lab.interrupts_deferred():
        down = lab.run_playbook(
            "playbooks/lab_down.yml",
            ctx.inventory,
            env,
            ctx.workdir / "lab_down.log",
            ctx.args.down_timeout,
            "lab_down",
            lab.DOWN_EXTRA,
        )
        ctx.timings["lab_down_s"] = round(down.seconds, 1)
        ours, unrelated = lab.leftovers(before, lab.our_markers(ctx.state_dir, ctx.workdir, hosts))
    outcome.update(down_rc=down.rc, leftovers=ours, unrelated_changes=unrelated)
    if down.rc != 0 or ours:
        print(f"      ! teardown incomplete (rc={down.rc}); retry with:\n        {down_cmd}", flush=True)
        outcome["down_command"] = down_cmd
    return outcome


# ---------------------------------------------------------------- report


def print_overrides(ctx: Context, ran: list[str]) -> None:
    for variant in ("devsec", "lockdown"):
        if variant not in ran:
            continue
        overrides = variants.overrides_for(variant, not ctx.args.no_overrides)
        if not overrides:
            print(f"{variant}: run as shipped, no variable overrides (--no-overrides)")
            continue
        print(f"{variant}: variable overrides (play vars; the anchor's code is unchanged):")
        for names, value, reason in variants.group_overrides(overrides):
            shown = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            rendered = json.dumps(value) if not isinstance(value, str) or "{{" not in value else "<all non-net.* keys>"
            print(f"  {shown} = {rendered}: {reason}")


def comparisons(results: dict[str, VariantResult]) -> list[str]:
    """Differences of hardening index measured in this same run (never against reference figures)."""
    measured = {
        v: r.hardening_index for v, r in results.items() if r.source == THIS_RUN and r.hardening_index is not None
    }
    lines = []
    base = measured.get("untouched")
    for v in ("devsec", "lockdown", "ours"):
        if v in measured and base is not None:
            lines.append(f"{v} vs untouched (same run): {measured[v] - base:+d} points ({measured[v]} vs {base})")
    if "ours" in measured:
        for anchor in ("devsec", "lockdown"):
            if anchor in measured:
                lines.append(f"ours vs {anchor} (same run): {measured['ours'] - measured[anchor]:+d} points")
    return lines


def scap_lines(ctx: Context, results: dict[str, VariantResult]) -> list[str]:
    if not ctx.args.scap_content:
        return [NO_SCAP]
    lines = []
    for r in results.values():
        if not r.scap:
            continue
        if not r.scap.get("available"):
            lines.append(f"OpenSCAP on {r.host}: not available - {r.scap.get('reason')}")
        elif "error" in r.scap:
            lines.append(f"OpenSCAP on {r.host}: {r.scap['error']}")
        else:
            counts = parse_oscap_results(str(r.scap.get("stdout", "")))
            r.scap["results"] = counts
            summary = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
            lines.append(f"OpenSCAP on {r.host}: rc={r.scap.get('rc')} {summary}")
    return lines or ["OpenSCAP: not run (no host was measured)"]


def print_report(ctx: Context, results: dict[str, VariantResult], ran: list[str], total: float) -> list[str]:
    version = f"Lynis {ctx.lynis_version}" if ctx.lynis_version else "Lynis"
    print(
        f"\n== Hardening compare: {version} `{lab.LYNIS_COMMAND}` on fresh, identical Debian 12 lab hosts "
        "(systemd-nspawn), each a PostgreSQL primary (roles apt_baseline, pki, postgresql) =="
    )
    print(render_table(list(results.values())))
    print()
    for line in notes(list(results.values())):
        print(line)
    print()
    print_overrides(ctx, ran)
    refs = ", ".join(f"{v} {ref.hardening_index}" for v, ref in variants.REFERENCE.items())
    print(f"reference figures (measured earlier on identical lab hosts, not this run): {refs}")
    compared = comparisons(results)
    for line in compared:
        print(line)
    scap = scap_lines(ctx, results)
    for line in scap:
        print(line)
    print(
        "columns: hardening index/warnings/suggestions from /var/log/lynis-report.dat (hardening_index=, warning[]=,"
        " suggestion[]= lines); services healthy = TLS login as the app role and a query through the host's address;"
        " SSH still works = a new SSH connection as the Ansible user plus `sudo -n true`; failed units ="
        " `systemctl --failed` after hardening (change vs before); wall time = the hardening playbook."
    )
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in ctx.timings.items())
    print(f"timings: {timing}; total {total:.0f}s")
    load = os.getloadavg()[0]
    if load > 1.5:
        print(f"note: load average {load:.2f} at the end (others busy on the machine): wall times are noisy")
    return compared + scap


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    anchors: dict[str, variants.Anchor] = {}
    for variant, path in (("devsec", args.devsec), ("lockdown", args.lockdown)):
        if variant in args.variants and path is not None:
            try:
                anchors[variant] = variants.check_anchor(variant, path)
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 2
    if args.scap_content and not args.scap_content.is_file():
        print(f"--scap-content {args.scap_content}: no such file", file=sys.stderr)
        return 2
    preflight()

    harden_present = (lab.PROJECT / variants.HARDEN_PLAYBOOK).is_file()
    results: dict[str, VariantResult] = {}
    to_run: list[str] = []
    for v in variants.VARIANTS:
        anchor = anchors.get(v)
        skips = variants.lockdown_container_skips(anchor.path) if v == "lockdown" and anchor else None
        if v in ("devsec", "lockdown") and anchor is None:
            why = "not requested (--variants)" if v not in args.variants else f"no --{v} PATH given"
            results[v] = reference_row(v, f"{v}: {why}; reference figure shown")
            continue
        if v not in args.variants:
            if v == "untouched":
                results[v] = reference_row(v, "untouched: not requested (--variants); reference figure shown")
            continue
        results[v] = VariantResult(variant=v, label=variants.label(v, anchor, skips), host=variants.HOSTS[v])
        results[v].overrides = [asdict(o) for o in variants.overrides_for(v, not args.no_overrides)]
        if v == "ours" and not harden_present:
            results[v].status = NOT_RUN
            results[v].note = f"ours: {variants.HARDEN_PLAYBOOK} not present"
            continue
        to_run.append(v)

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="enp-bench-hardening-", dir=WORK_PARENT))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, workdir, workdir / "inventory", workdir / "state", anchors=anchors)
    print(f"hardening_compare: variants to run: {', '.join(to_run) or 'none'}; work folder {workdir}", flush=True)
    for r in results.values():
        if r.status in (NOT_RUN, "reference"):
            print(f"   {r.note}", flush=True)
    print(f"   load average before: {os.getloadavg()[0]:.2f}", flush=True)
    signal.signal(signal.SIGINT, lab.raise_interrupted)
    signal.signal(signal.SIGTERM, lab.raise_interrupted)
    started = time.monotonic()
    interrupted = False
    teardown_outcome: dict[str, object] = {}
    anchor_tmp = Path(tempfile.mkdtemp(prefix="enp-hc-anchors-"))  # under /tmp, outside the repository
    before = lab.snapshot()
    try:
        if to_run:
            ctx.anchor_paths = variants.link_anchors(anchor_tmp, {v: a for v, a in anchors.items() if v in to_run})
            ctx.addresses = lab.write_inventory(ctx.inventory, to_run)
            run_lab(ctx, results, to_run)
    except lab.Interrupted as exc:
        interrupted = True
        print(f"\ninterrupted ({exc}): tearing down; partial results follow", flush=True)
    except Exception as exc:  # a harness bug still tears down and reports what was measured
        ctx.errors.append(f"harness error: {exc!r}")
        traceback.print_exc()
        print("\nharness error: tearing down; partial results follow", flush=True)
    finally:
        if ctx.inventory.exists():
            teardown_outcome = teardown(ctx, before, [variants.HOSTS[v] for v in variants.VARIANTS])
        shutil.rmtree(anchor_tmp, ignore_errors=True)
    total = time.monotonic() - started
    extra_lines = print_report(ctx, results, to_run, total)
    left = teardown_outcome.get("leftovers")
    if not teardown_outcome.get("kept") and ctx.inventory.exists():
        print("leftovers: none" if not left else f"leftovers: {left}")
    if args.json is not None:
        path = Path(args.json) if args.json else workdir / "hardening_compare.json"
        payload = {
            "benchmark": "bench/hardening_compare.py",
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
            "lynis": {"version": ctx.lynis_version, "command": lab.LYNIS_COMMAND, "report": lab.LYNIS_REPORT},
            "anchors": {v: a.to_dict() for v, a in anchors.items()},
            "overrides_enabled": not args.no_overrides,
            "reference": {v: asdict(r) for v, r in variants.REFERENCE.items()},
            "timings": ctx.timings,
            "total_seconds": round(total, 1),
            "interrupted": interrupted,
            "errors": ctx.errors,
            "summary": extra_lines,
            "teardown": teardown_outcome,
            "variants": [
                {**asdict(r), "before": health_dict(r.before), "after": health_dict(r.after)} for r in results.values()
            ],
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"json: {path}")
    print(f"logs: {workdir}/*.log, Lynis reports: {workdir}/lynis/")
    if interrupted:
        return 130
    measured_all = all(results[v].hardening_index is not None for v in to_run)
    clean = teardown_outcome.get("kept") or (teardown_outcome.get("down_rc") == 0 and not left)
    return 0 if measured_all and clean and not ctx.errors else 1
