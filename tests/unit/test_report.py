"""enp.report: RTO/RPO, the timeline plot, the CERT-In deadline, escaping of hostile values, schema errors."""

from __future__ import annotations

import copy
import itertools
import json
import re
import stat
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from enp import report as rp

SAMPLE = Path(__file__).parent / "data" / "recovery_run_sample.json"
GENERATED = datetime(2026, 12, 6, 8, 30, tzinfo=UTC)


def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def minimal(**incident: Any) -> dict[str, Any]:
    return {"incident": {"id": "INC-1", "detected_at": "2026-12-06T07:53:40Z", **incident}, "phases": []}


def phase(name: str, start: str, end: str, status: str = "done", **extra: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "started_at": start, "ended_at": end, **extra}


def run_with(phases: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    run = minimal()
    run["phases"] = phases
    run.update(top)
    return run


# --------------------------------------------------------------------------------------------------------------
# The sample


def test_sample_renders_all_three_faces_with_rto_and_rpo_met() -> None:
    report = rp.render(sample(), generated_at=GENERATED)
    summary = report.json["summary"]
    # detected 07:53:40, reopen ended 08:07:58 -> 14 min 18 s
    assert summary["rto"]["seconds"] == 858 and summary["rto"]["met"] is True
    assert summary["rpo"]["seconds"] == 0 and summary["rpo"]["met"] is True
    assert summary["outage_seconds"] == 1078  # attack start 07:50:00 to reopen end
    assert "14 min 18 s" in report.html and "14 min 18 s" in report.markdown
    assert report.html.startswith("<!DOCTYPE html>") and "<svg" in report.html
    assert report.json["generated_at"] == "2026-12-06T08:30:00Z"
    json.dumps(report.json)  # serialisable


def test_decision_and_restore_report_are_embedded_verbatim() -> None:
    run = sample()
    data = rp.render(run).json
    assert data["decision"] == run["decision"]
    assert data["restore"] == run["restore"]
    assert data["clean_point"]["base_backup"] == "20261206T010000F"
    assert [t["xid"] for t in data["clean_point"]["malicious_transactions"]] == [48213, 48214]


def test_decision_falls_back_to_the_one_inside_the_restore_report() -> None:
    run = sample()
    del run["decision"]
    data = rp.render(run).json
    assert data["decision"] == run["restore"]["decision"]
    assert data["clean_point"]["explanation"] == [line.strip() for line in run["restore"]["decision"]["explanation"]]


# --------------------------------------------------------------------------------------------------------------
# RTO and RPO


@pytest.mark.parametrize(
    ("phases", "seconds", "met"),
    [
        # exactly the target is met; one second over is not
        ([phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:08:40Z")], 900, True),
        ([phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:08:41Z")], 901, False),
        # a time in IST is the same instant
        ([phase("reopen", "2026-12-06T13:30:00+05:30", "2026-12-06T13:33:40+05:30")], 600, True),
        # a retried reopen: the last one counts
        (
            [
                phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:01:00Z", "failed"),
                phase("reopen", "2026-12-06T08:20:00Z", "2026-12-06T08:23:40Z"),
            ],
            1800,
            False,
        ),
        # not back: no RTO achieved, and that is not "met"
        ([phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:01:00Z", "failed")], None, None),
        ([phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:01:00Z", "dry-run")], None, None),
        ([phase("restore", "2026-12-06T08:00:00Z", "2026-12-06T08:01:00Z")], None, None),
    ],
)
def test_rto_is_detection_to_the_end_of_reopen(phases: list[dict[str, Any]], seconds: float | None, met: bool) -> None:
    data = rp.render(run_with(phases)).json
    assert data["summary"]["rto"]["seconds"] == seconds
    assert data["summary"]["rto"]["met"] is met
    assert data["summary"]["recovered"] is (seconds is not None)
    lines = rp.format_summary(data)
    expected = {True: f"{rp.format_duration(seconds)} (target 15 min): MET", False: "(target 15 min): NOT MET"}
    assert lines[1].endswith(expected.get(met, "RTO not back (target 15 min): NOT MET")), lines


def test_rto_target_comes_from_the_run() -> None:
    phases = [phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:08:40Z")]
    data = rp.render(run_with(phases, targets={"rto_seconds": 600, "rpo_seconds": 5})).json
    assert data["summary"]["rto"]["seconds"] == 900 and data["summary"]["rto"]["met"] is False


@pytest.mark.parametrize(
    ("restore", "seconds", "met"),
    [
        ({"rpo_seconds": 0.0}, 0.0, True),
        ({"rpo_seconds": 5}, 5.0, True),
        ({"rpo_seconds": "12.5"}, 12.5, False),  # Ansible may template numbers as text
        ({"rpo_seconds": None}, None, None),
        (None, None, None),
    ],
)
def test_rpo_comes_from_the_restore_report(restore: dict[str, Any] | None, seconds: float | None, met: bool) -> None:
    run = minimal()
    if restore is not None:
        run["restore"] = restore
    data = rp.render(run).json
    assert data["summary"]["rpo"]["seconds"] == seconds
    assert data["summary"]["rpo"]["met"] is met


def test_not_met_is_shown_as_not_met_everywhere() -> None:
    run = sample()
    run["restore"]["rpo_seconds"] = 42
    run["phases"][-1]["ended_at"] = "2026-12-06T08:20:00Z"
    report = rp.render(run)
    assert report.json["summary"]["rto"]["met"] is False and report.json["summary"]["rpo"]["met"] is False
    assert report.html.count('class="badge notmet">NOT MET<') == 2
    assert "| RTO (detection to reopen) | 26 min 20 s | 15 min | NOT MET |" in report.markdown
    assert "| RPO (data lost) | 42 s | 5 s | NOT MET |" in report.markdown


# --------------------------------------------------------------------------------------------------------------
# Escaping: every value may come from a compromised host


class Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def hostile_run() -> dict[str, Any]:
    run = sample()
    run["incident"]["id"] = "INC<script>1"
    run["incident"]["declared_by"] = HOSTILE
    run["incident"]["organisation"] = {"name": HOSTILE}
    run["incident"]["indicators"].append({"type": "url", "value": HOSTILE})
    run["phases"][0]["hosts"].append('web1" onmouseover="alert(1)')
    run["phases"][0]["summary"] = HOSTILE + "\x1b[2J\x1b]0;owned\x07"
    run["drift_findings"].append(
        {"host": "web1", "path": f"/var/www/{HOSTILE}", "kind": "file-added", "detail": "| broken | table\nrow"}
    )
    run["evidence"][0]["where"] = "[click](http://evil.example/)" + HOSTILE
    run["decision"]["explanation"].append(HOSTILE)
    run["not_applicable"].append({"what": HOSTILE, "why": "**bold** `code` ![x](http://evil.example/x.png)"})
    run["services"][0]["service"] = HOSTILE
    return run


def test_hostile_strings_never_appear_unescaped_in_the_html() -> None:
    page = rp.render(hostile_run()).html
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert 'onmouseover="' not in page
    assert "\x1b" not in page and "\x07" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "/var/www/&lt;script&gt;" in page
    # Nothing can run or load: no script, image, frame or link element, no event handler, links only to anchors.
    tags = Tags()
    tags.feed(page)
    assert not {"script", "img", "iframe", "link", "object", "embed", "form", "base"} & {t for t, _ in tags.seen}
    attrs = [(t, a, v) for t, pairs in tags.seen for a, v in pairs]
    assert not [x for x in attrs if x[1].startswith("on") or x[1] in ("src", "srcset", "action", "formaction")]
    assert {v for t, a, v in attrs if a == "href"} == {"#cert-in"}
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_strings_are_inert_in_the_markdown() -> None:
    text = rp.render(hostile_run()).markdown
    assert not re.search(r"(?<!\\)<(script|img)", text, re.I)
    assert r"\<script\>alert" in text
    assert not re.search(r"(?<!\\)\]\(", text)  # no live link or image
    assert "\x1b" not in text
    finding_row = next(line for line in text.splitlines() if "/var/www/" in line)
    # the pipes and newline inside a value neither split nor end the row
    assert finding_row.count("|") - finding_row.count(r"\|") == 6
    assert r"\| broken \| table row" in finding_row


def test_terminal_summary_has_no_control_characters() -> None:
    run = hostile_run()
    run["incident"]["id"] = "INC\x1b[31m-1\r\n"
    lines = rp.format_summary(rp.render(run), {"html": Path("/tmp/r/report.html")})
    assert all(not re.search(r"[\x00-\x1f\x7f]", line) for line in lines), lines
    assert lines[-1] == "Report (html): /tmp/r/report.html"


# --------------------------------------------------------------------------------------------------------------
# The timeline plot


def svg_bars(page: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', m)) for m in re.findall(r"<rect class=\"bar\"([^>]*)>", page)]


def test_every_phase_is_a_bar_with_width_proportional_to_its_duration() -> None:
    run = sample()
    report = rp.render(run)
    svg = re.search(r"<svg.*?</svg>", report.html, re.S)
    assert svg, "no inline SVG"
    bars = svg_bars(svg.group(0))
    assert [b["data-phase"] for b in bars] == [p["name"] for p in run["phases"]]
    for bar, p in zip(bars, run["phases"], strict=True):
        duration = (datetime.fromisoformat(p["ended_at"]) - datetime.fromisoformat(p["started_at"])).total_seconds()
        assert float(bar["data-seconds"]) == duration
        assert f">{p['name']}</text>" in svg.group(0)  # labelled
    px_per_second = {round(float(b["width"]) / float(b["data-seconds"]), 4) for b in bars}
    assert len(px_per_second) == 1, px_per_second  # one scale for all bars
    # To scale in position too: each bar starts where the previous ended (the sample's phases are back to back).
    for before, after in itertools.pairwise(bars):
        assert float(before["x"]) + float(before["width"]) == pytest.approx(float(after["x"]), abs=0.01)
    # The longest phase has the widest bar.
    assert max(bars, key=lambda b: float(b["width"]))["data-phase"] == "evidence"


def test_timeline_shows_status_and_durations_and_handles_skipped_phases() -> None:
    phases = [
        phase("contain", "2026-12-06T07:55:00Z", "2026-12-06T07:56:00Z"),
        {"name": "evidence", "status": "skipped"},
        phase("rebuild", "2026-12-06T07:56:00Z", "2026-12-06T08:06:00Z", "failed"),
    ]
    report = rp.render(run_with(phases))
    bars = svg_bars(report.html)
    assert [(b["data-phase"], b["data-status"]) for b in bars] == [("contain", "done"), ("rebuild", "failed")]
    assert float(bars[1]["width"]) == pytest.approx(10 * float(bars[0]["width"]), abs=0.01)
    assert ">evidence</text>" in report.html and "skipped (no times)" in report.html
    assert "10 min · failed" in report.html
    assert "| rebuild | failed |" in report.markdown and "| 10 min |" in report.markdown


# --------------------------------------------------------------------------------------------------------------
# CERT-In


@pytest.mark.parametrize(
    ("detected", "due_utc", "due_ist", "shown"),
    [
        ("2026-12-06T07:53:40Z", "2026-12-06T13:53:40Z", "2026-12-06T19:23:40+05:30", "19:23 IST"),
        # crosses midnight in UTC and in IST
        ("2026-12-06T20:15:00Z", "2026-12-07T02:15:00Z", "2026-12-07T07:45:00+05:30", "07:45 IST"),
        # given in IST: 23:00 IST is 17:30 UTC; due 23:30 UTC = 05:00 IST the next day
        ("2026-12-06T23:00:00+05:30", "2026-12-06T23:30:00Z", "2026-12-07T05:00:00+05:30", "05:00 IST"),
    ],
)
def test_cert_in_report_is_due_six_hours_after_detection_in_utc_and_ist(
    detected: str, due_utc: str, due_ist: str, shown: str
) -> None:
    report = rp.render(minimal(detected_at=detected))
    cert = report.json["cert_in"]
    assert cert["due_at"] == due_utc and cert["due_at_ist"] == due_ist
    assert f'<div class="v">{shown}</div>' in report.html
    assert due_ist[:10] + " " + due_ist[11:19] + " IST" in report.html
    assert due_ist[:10] + " " + due_ist[11:19] + " IST" in report.markdown


def test_format_time_shows_both_zones_and_the_ist_date_when_it_differs() -> None:
    assert rp.format_time(datetime(2026, 12, 6, 7, 53, 40, tzinfo=UTC)) == "2026-12-06 07:53:40 UTC (13:23:40 IST)"
    assert (
        rp.format_time(datetime(2026, 12, 6, 20, 0, tzinfo=UTC)) == "2026-12-06 20:00:00 UTC (2026-12-07 01:30:00 IST)"
    )


@pytest.mark.parametrize(("sent", "on_time"), [("2026-12-06T13:53:40Z", True), ("2026-12-06T13:53:41Z", False)])
def test_cert_in_report_sent_on_time_or_late(sent: str, on_time: bool) -> None:
    report = rp.render(minimal(cert_in_reported_at=sent))
    assert report.json["cert_in"]["on_time"] is on_time
    assert ("on time." if on_time else "LATE.") in report.html


def test_cert_in_form_has_the_nine_fields_pre_filled_from_the_run() -> None:
    fields = rp.render(sample()).json["cert_in"]["fields"]
    assert [f["number"] for f in fields] == list(range(1, 10))
    by_number = {f["number"]: " ".join(f["value"]) for f in fields}
    assert "ransomware" in by_number[1]
    assert "detected: 2026-12-06 07:53:40 UTC (13:23:40 IST)" in by_number[2]
    assert "occurred: 2026-12-06 07:50:00 UTC (13:20:00 IST)" in by_number[2]
    assert "Urban Administration" in by_number[3]
    assert "db1" in by_number[4] and "on-premises" in by_number[4]
    assert "413 of 413" in by_number[5]
    assert "/etc/cron.d/.sync" in by_number[6] and "48213" in by_number[6]
    assert "contain (done)" in by_number[7]
    assert "soc@example.invalid" in by_number[8]
    assert "hardening score" in by_number[9]


# --------------------------------------------------------------------------------------------------------------
# Missing optional sections


def test_a_minimal_run_renders_not_recorded_instead_of_crashing() -> None:
    report = rp.render(minimal())
    data = report.json
    for key in ("clean_point", "drift_findings", "hardening", "services", "evidence", "not_applicable"):
        assert data[key] is None, key
    assert data["summary"]["rto"]["seconds"] is None and data["summary"]["rpo"]["seconds"] is None
    sections = re.split(r"<h2 ", report.html)[1:]
    assert len(sections) == 8
    for section in sections[1:7]:  # restore point .. not applicable
        assert "not recorded" in section, section[:80]
    assert "no phase has run yet" in sections[0]
    md_sections = re.split(r"^## ", report.markdown, flags=re.M)[2:]
    for section in md_sections[1:7]:
        assert "not recorded" in section, section[:80]
    fields = {f["number"]: f["value"] for f in data["cert_in"]["fields"]}
    assert fields[1] == ["not recorded"] and fields[3] == ["not recorded"] and fields[8] == ["not recorded"]


def test_empty_lists_say_none_not_not_recorded() -> None:
    run = minimal()
    run.update(drift_findings=[], evidence=[], services=[], not_applicable=[])
    page = rp.render(run).html
    assert "none: every host matched its signed baseline" in page
    assert "none collected" in page


def test_a_section_of_the_sample_can_be_missing() -> None:
    run = sample()
    for key in ("decision", "restore", "hardening", "evidence"):
        partial = copy.deepcopy(run)
        del partial[key]
        assert rp.render(partial).html  # no crash


# --------------------------------------------------------------------------------------------------------------
# Schema errors name the field


def broken(path: str, value: Any) -> dict[str, Any]:
    run = sample()
    *parents, last = path.split(".")
    node: Any = run
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return run


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("incident.detected_at", KeyError, "incident.detected_at: required, missing"),
        ("incident.id", "  ", "incident.id: required, empty"),
        ("incident.detected_at", "2026-12-06 07:53", "incident.detected_at: time '2026-12-06 07:53' has no zone"),
        ("incident.occurred_at", "yesterday", "incident.occurred_at: expected an ISO 8601 time with zone"),
        ("incident.detcted_at", "2026-12-06T07:53:40Z", "incident: unknown key(s) detcted_at"),
        ("drift_finding", [], "(top level): unknown key(s) drift_finding"),
        ("phases.1.name", "evidance", "phases[1].name: unknown phase 'evidance'"),
        ("phases.2.status", "ok", "phases[2].status: unknown status 'ok'"),
        ("phases.3.ended_at", "2026-12-06T08:00:00Z", "phases[3].ended_at: 2026-12-06T08:00:00Z is before started_at"),
        ("phases.0.started_at", KeyError, "phases[0].started_at: required, missing"),
        ("phases", {"name": "contain"}, "phases: expected a list, got dict"),
        ("hardening.after.db1", "high", "hardening.after.db1: expected a number, got 'high'"),
        ("targets.rto_seconds", "fast", "targets.rto_seconds: expected a number"),
        ("restore.rpo_seconds", "n/a", "restore.rpo_seconds: expected a number"),
        ("evidence.0.collected_at", "06/12/2026", "evidence[0].collected_at: expected an ISO 8601 time"),
        ("services.1", "db2", "services[1]: expected an object, got str"),
        ("incident", KeyError, "incident: required, missing"),
        ("format", "enp-recovery-run/2", "format: expected 'enp-recovery-run/1'"),
    ],
)
def test_schema_errors_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(rp.RunError) as caught:
        rp.render(broken(path, value))
    assert message in str(caught.value)
    assert str(caught.value).startswith("recovery run: ")


def test_skipped_phase_needs_no_times() -> None:
    data = rp.render(run_with([{"name": "evidence", "status": "skipped", "summary": "no disk images in the lab"}])).json
    (only,) = data["timeline"]["phases"]
    assert only["duration_seconds"] is None and only["started_at"] is None


# --------------------------------------------------------------------------------------------------------------
# Formatting helpers and files


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "not recorded"),
        (0, "0 s"),
        (2.44, "2.4 s"),
        (45, "45 s"),
        (59.6, "60 s"),
        (60, "1 min"),
        (858, "14 min 18 s"),
        (3725, "1 h 02 min 05 s"),
        (7200, "2 h 00 min"),
        (-63.4, "-1 min 03 s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert rp.format_duration(seconds) == text


def test_markdown_timeline_is_a_table_with_durations() -> None:
    text = rp.render(sample()).markdown
    rows = [line for line in text.splitlines() if line.startswith("| ") and " done |" in line]
    by_phase: dict[str, str] = {}
    for row in rows:  # the timeline table comes before the steps table
        by_phase.setdefault(row.split("|")[1].strip(), row)
    assert set(rp.PHASES) <= set(by_phase)
    assert "| 3 min 19 s | ████████████████████████ |" in by_phase["evidence"]  # the longest: the full bar
    assert "T+1 min 30 s" in by_phase["contain"]  # 07:55:10 is 90 s after detection


def test_write_reports_writes_three_files_atomically(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "ENP-1"
    paths = rp.write_reports(sample(), out, generated_at=GENERATED)
    assert set(paths) == {"json", "markdown", "html"}
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]  # no temp left
    assert json.loads(paths["json"].read_text())["summary"]["rto"]["seconds"] == 858
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(paths["html"].stat().st_mode) == 0o640
    # A second write replaces the files in place.
    rp.write_reports(sample(), out, generated_at=GENERATED)
    assert len(list(out.iterdir())) == 3


def test_write_reports_writes_nothing_for_an_invalid_run(tmp_path: Path) -> None:
    with pytest.raises(rp.RunError):
        rp.write_reports({"phases": []}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_format_summary_names_rto_rpo_deadline_and_paths() -> None:
    report = rp.render(sample())
    lines = rp.format_summary(report, {"html": Path("r/report.html"), "markdown": Path("r/report.md")})
    assert lines == [
        "Incident ENP-LAB-2026-12-06-01: back online",
        "RTO 14 min 18 s (target 15 min): MET",
        "RPO 0 s (target 5 s): MET",
        "CERT-In report due by 2026-12-06 13:53:40 UTC (19:23:40 IST)",
        "Report (html): r/report.html",
        "Report (markdown): r/report.md",
    ]


def test_an_unsent_cert_in_report_past_its_deadline_is_overdue() -> None:
    late = datetime(2026, 12, 6, 13, 53, 41, tzinfo=UTC)  # one second after detection + 6 h
    report = rp.render(minimal(), generated_at=late)
    assert report.json["cert_in"]["overdue"] is True
    assert "<b>OVERDUE</b>, not recorded as sent" in report.html
    assert "OVERDUE, not recorded as sent" in report.markdown
    assert rp.format_summary(report)[-1].endswith("(19:23:40 IST) - OVERDUE")
    in_time = rp.render(minimal(), generated_at=datetime(2026, 12, 6, 13, 53, 40, tzinfo=UTC))
    assert in_time.json["cert_in"]["overdue"] is False and "OVERDUE" not in in_time.html


def test_odd_shapes_in_the_verbatim_restore_files_do_not_crash_or_are_named() -> None:
    run = sample()
    run["decision"]["explanation"] = "one sentence, not a list"
    run["decision"]["evidence"]["transactions"] = None
    data = rp.render(run).json
    assert data["clean_point"]["explanation"] == ["one sentence, not a list"]
    assert data["clean_point"]["malicious_transactions"] == []
    run["restore"]["database"]["seconds_copy"] = "fast"
    with pytest.raises(rp.RunError, match=r"restore\.database\.seconds_copy: expected a number"):
        rp.render(run)


def test_drift_findings_are_most_serious_first_and_take_baseline_compare_names() -> None:
    run = minimal()
    run["drift_findings"] = [
        {"host": "web1", "path": "/etc/nginx/x", "kind": "config-drift", "severity": "medium", "detail": "d"},
        {"host": "db1", "kind": "new-persistence", "severity": "critical", "key": "evil.service", "reason": "added"},
        {"host": "app1", "path": "/tmp/x", "kind": "file-added", "detail": "no severity"},
    ]
    findings = rp.render(run).json["drift_findings"]
    assert [f["host"] for f in findings] == ["db1", "web1", "app1"]
    assert findings[0]["path"] == "evil.service" and findings[0]["detail"] == "added"


def test_axis_ticks_count_from_detection_in_whole_steps() -> None:
    phases = [
        phase("contain", "2026-12-06T07:51:40Z", "2026-12-06T07:55:00Z"),  # started 2 min before detection
        phase("reopen", "2026-12-06T07:55:00Z", "2026-12-06T08:03:40Z"),
    ]
    page = rp.render(run_with(phases)).html
    ticks = re.findall(r'class="tick"[^>]*>([^<]*)<', page)
    assert "T-2 min" in ticks and "T+0 min" in ticks and "T+14 min" in ticks, ticks
    assert all(re.fullmatch(r"T[+-]\d+ min", t) for t in ticks), ticks
    long_run = [phase("rebuild", "2026-12-06T08:00:00Z", "2026-12-06T13:00:00Z")]
    ticks = re.findall(r'class="tick"[^>]*>([^<]*)<', rp.render(run_with(long_run)).html)
    assert ticks[:3] == ["T+0 h", "T+1 h", "T+2 h"], ticks


def test_an_estate_not_reopened_says_so_at_the_top() -> None:
    report = rp.render(run_with([phase("reopen", "2026-12-06T08:00:00Z", "2026-12-06T08:01:00Z", "dry-run")]))
    assert '<div class="k">RTO achieved</div><div class="v">not back</div>' in report.html
    assert "NOT back online: the last reopen phase was a dry run only" in report.html
    assert "| RTO (detection to reopen) | not back | 15 min | NOT MET |" in report.markdown


def test_times_in_the_verbatim_decision_that_are_not_times_are_shown_as_text() -> None:
    run = sample()
    run["decision"]["earliest_malicious_change"] = "<b>soon</b>"
    run["decision"]["evidence"]["transactions"][0]["commit_time"] = "garbage"
    report = rp.render(run)
    assert "&lt;b&gt;soon&lt;/b&gt;" in report.html and "<b>soon" not in report.html
    assert "committed garbage" in " ".join(report.json["cert_in"]["fields"][5]["value"])
