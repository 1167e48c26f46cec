"""Pure helpers of bench/baseline: the AIDE configuration we write, AIDE's and ansible-playbook's output, the
manifests' statistics, the speed ratios and the table. No I/O: tests/unit/test_bench_baseline.py covers them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Attributes AIDE checks, chosen to match what a manifest entry records (type, mode, uid, gid, size, sha256,
# link target) plus mtime and inode, which our hash cache keys on: p perms, u uid, g gid, s size, m mtime,
# i inode, l link name, ftype file type, sha256 content.
AIDE_ATTRIBUTES = "p+u+g+s+m+i+l+ftype+sha256"
AIDE_GROUP = "ENPBENCH"

# Evidence each tool covers. AIDE records files only; ours records every manifest section the host has.
AIDE_EVIDENCE = ("files",)
EVIDENCE_SHORT = {"authorized_keys": "keys", "kernel_modules": "modules", "groups": "users"}

AIDE_EXIT = {
    0: "no differences",
    14: "error writing the database",
    15: "invalid argument",
    16: "unimplemented function",
    17: "invalid configuration",
    18: "I/O error",
    19: "version mismatch",
}


# ------------------------------------------------------------------------------------------- AIDE config


def glob_to_aide_regex(path: str) -> str:
    """A path or shell glob (roles/baseline skip_paths) as an AIDE regular expression of the same subtree.

    The capture's SkipMatcher excludes a plain path and everything below it, and matches a glob against the
    whole path with fnmatch (where `*` also crosses `/`); AIDE matches a regex from the start of the path, so
    the subtree needs `(/|$)` at the end, and regex characters in names are escaped.
    """
    out = []
    for char in path.rstrip("/") or "/":
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char in r".^$+{}()|\[]":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out) + "(/|$)"


def aide_config(paths: Iterable[str], skip_paths: Iterable[str], db_dir: str) -> str:
    """An AIDE configuration that watches exactly the trees the capture scans, without its skipped paths."""
    lines = [
        "# Written by bench/baseline.py: the same trees as roles/baseline baseline_paths, the same exclusions.",
        f"database_in=file:{db_dir}/aide.db.gz",
        f"database_out=file:{db_dir}/aide.db.new.gz",
        "gzip_dbout=yes",
        "report_url=stdout",
        f"{AIDE_GROUP} = {AIDE_ATTRIBUTES}",
    ]
    lines += [f"{glob_to_aide_regex(p)} {AIDE_GROUP}" for p in sorted({p.rstrip("/") or "/" for p in paths})]
    lines += [f"!{glob_to_aide_regex(p)}" for p in sorted(set(skip_paths))]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- AIDE output


@dataclass
class AideResult:
    entries: int | None = None  # init: "Number of entries"; check: "Total number of entries"
    added: int | None = None
    removed: int | None = None
    changed: int | None = None
    differences: bool | None = None  # check: AIDE's own verdict
    errors: list[str] = field(default_factory=list)

    @property
    def found(self) -> int | None:
        if self.added is None and self.removed is None and self.changed is None:
            return None
        return (self.added or 0) + (self.removed or 0) + (self.changed or 0)


_COUNT = re.compile(r"^\s*(Number of entries|Total number of entries|Added entries|Removed entries|Changed entries)"
                    r"\s*:\s*(\d+)\s*$", re.MULTILINE)  # fmt: skip


def parse_aide(text: str) -> AideResult:
    """AIDE 0.17/0.18 output of --init or --check (the summary; the detailed list is not needed)."""
    result = AideResult()
    for name, number in _COUNT.findall(text):
        value = int(number)
        if name in ("Number of entries", "Total number of entries"):
            result.entries = value if result.entries is None else result.entries
        elif name == "Added entries":
            result.added = value
        elif name == "Removed entries":
            result.removed = value
        else:
            result.changed = value
    if "AIDE found NO differences" in text:
        result.differences = False
        result.added = result.added or 0
        result.removed = result.removed or 0
        result.changed = result.changed or 0
    elif re.search(r"AIDE found differences", text):
        result.differences = True
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"^(ERROR|WARNING|Couldn't|Cannot|aide: )", stripped, re.IGNORECASE) or "cannot open" in stripped:
            result.errors.append(stripped[:200])
    return result


def aide_exit_meaning(rc: int | None, check: bool) -> str:
    """AIDE's exit status: --check sets bits 1 added, 2 removed, 4 changed; 14-19 are errors."""
    if rc is None:
        return "timed out"
    if rc in AIDE_EXIT and (rc != 0 or check):
        return AIDE_EXIT[rc]
    if check and 0 < rc < 8:
        bits = [name for bit, name in ((1, "added"), (2, "removed"), (4, "changed")) if rc & bit]
        return "differences: " + ", ".join(bits)
    return "ok" if rc == 0 else f"exit {rc}"


def markers_in(text: str, prefix: str = "bench") -> dict[str, str]:
    """`bench.NAME=VALUE` lines printed by our scripts on the hosts."""
    found = {}
    for line in text.splitlines():
        if line.startswith(prefix + ".") and "=" in line:
            name, _, value = line[len(prefix) + 1 :].partition("=")
            found[name.strip()] = value.strip()
    return found


# ------------------------------------------------------------------------------------------- our side


def manifest_stats(tail: str) -> dict[str, Any]:
    """The `stats` object of a canonical manifest, from the end of the file (stats is its last key, so a
    million-file manifest need not be parsed to read it). Empty when the tail holds no complete stats."""
    index = tail.rfind('"stats":')
    if index < 0:
        return {}
    text = tail[index + len('"stats":') :].rstrip().removesuffix("}")
    try:
        stats = json.loads(text)
    except ValueError:
        return {}
    return stats if isinstance(stats, dict) else {}


_STATISTICS = re.compile(
    r"(?P<files>\d+) files in (?P<seconds>[\d.]+) s \((?P<fps>[\d.]+) files/s; (?P<hashed>\d+) hashed,"
    r" (?P<reused>\d+) from the cache\); skipped: (?P<skipped>[^'\"]*)"
)


def capture_statistics(output: str) -> dict[str, Any]:
    """The last "Baseline | Capture | Statistics" message of a baseline_capture.yml run, as manifest-like stats.

    The stored manifest keeps the stats of the capture that wrote it: an unchanged host keeps its file, so a
    second capture's numbers are only in the play's output (the YAML callback quotes the message and may fold
    it over lines)."""
    flat = re.sub(r"\s*\n\s*", " ", output)
    found = list(_STATISTICS.finditer(flat))
    if not found:
        return {}
    m = found[-1]
    skipped = m.group("skipped").strip()
    names = [] if skipped == "nothing" else [s.strip() for s in skipped.split(",") if s.strip()]
    return {
        "files": int(m.group("files")),
        "seconds": float(m.group("seconds")),
        "files_per_second": float(m.group("fps")),
        "hashed": int(m.group("hashed")),
        "reused": int(m.group("reused")),
        "skipped": {name: "(named in the play output)" for name in names},
    }


# profile_tasks pads the name with dashes to a fixed width: a long name gets a single "-" before the time.
_PROFILE = re.compile(r"^(?P<name>.+?) -+ (?P<seconds>\d+\.\d+)s\s*$", re.MULTILINE)


def task_seconds(output: str, needle: str) -> float | None:
    """Seconds of the task whose name contains `needle`, from ansible.posix.profile_tasks' summary (the
    lines `role : Task name ------ 12.34s`, or `... - 219.30s` for a long name, after the play recap); the sum
    when several tasks match."""
    recap = output.rfind("PLAY RECAP")
    lines = _PROFILE.finditer(output[recap:] if recap >= 0 else output)
    found = [float(m.group("seconds")) for m in lines if needle in m.group("name")]
    return round(sum(found), 2) if found else None


def evidence_of(stats: Mapping[str, Any], sections: Iterable[str]) -> list[str]:
    """Kinds of evidence a capture recorded: every section it collected (those not in stats.skipped)."""
    skipped = stats.get("skipped") or {}
    kinds: list[str] = []
    for section in sections:
        if section in skipped:
            continue
        short = EVIDENCE_SHORT.get(section, section)
        if short not in kinds:
            kinds.append(short)
    return kinds


def report_summary(report: Mapping[str, Any]) -> tuple[int | None, dict[str, int]]:
    """(total findings, by kind) of an enp-baseline-findings/1 report."""
    summary = report.get("summary") or {}
    total = summary.get("total")
    if total is None and isinstance(report.get("findings"), list):
        total = len(report["findings"])
    return total, dict(summary.get("by_kind") or {})


# ------------------------------------------------------------------------------------------- the table


@dataclass
class Row:
    host: str
    files: int | None
    tool: str  # "ours" or "AIDE"
    step: str  # "capture cold", "capture warm", "verify unchanged", "verify 1% changed", "init", "check ..."
    seconds: float | None  # the tool's own work (see the README)
    e2e_seconds: float | None = None  # wall time including Ansible/SSH/fetch/sign
    cache: str = ""  # "cold" (page cache dropped) or "warm"
    found: int | None = None  # findings (ours) / added+removed+changed entries (AIDE)
    hashed: int | None = None  # files whose content was read (ours: not from the hash cache)
    pair: str = ""  # the step of the other tool this row is compared with
    evidence: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def files_per_second(self) -> float | None:
        if not self.files or not self.seconds:
            return None
        return self.files / self.seconds


def speed_ratio(ours: Row, aide: Row) -> float | None:
    """How many times faster ours is (files/s ours ÷ files/s AIDE; > 1: ours is faster)."""
    if ours.files_per_second is None or aide.files_per_second is None:
        return None
    return ours.files_per_second / aide.files_per_second


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def render_table(rows: list[Row]) -> str:
    """One table: host, files, tool, step, cache, seconds, files/s, end-to-end, found, ratio, evidence."""
    by_key = {(r.host, r.tool, r.step): r for r in rows}
    header = ["host", "files", "tool", "step", "cache", "s", "files/s", "e2e s", "read", "found", "ours/AIDE"]
    header.append("evidence")
    body = []
    for r in rows:
        ratio = ""
        if r.tool == "ours" and r.pair:
            other = by_key.get((r.host, "AIDE", r.pair))
            value = speed_ratio(r, other) if other else None
            ratio = f"{value:.2f}x vs {r.pair}" if value is not None else "-"
        body.append(
            [
                r.host,
                _fmt(r.files),
                r.tool,
                r.step,
                r.cache,
                _fmt(r.seconds, 2),
                _fmt(r.files_per_second, 0),
                _fmt(r.e2e_seconds, 1),
                _fmt(r.hashed),
                _fmt(r.found),
                ratio,
                ", ".join(r.evidence) + (f" ({len(r.evidence)})" if len(r.evidence) > 1 else ""),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    right = {1, 5, 6, 7, 8, 9}

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])
