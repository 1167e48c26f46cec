"""The recovery report in a real browser: headless Debian Chromium renders it with no console error.

Three looks at the sample report (tests/unit/data/recovery_run_sample.json rendered by enp.report):

* ``--dump-dom``: the DOM Chromium built contains the headline, the timeline SVG with a bar per phase and the
  CERT-In section;
* the DevTools protocol over ``--remote-debugging-pipe`` (stdlib only): no console error or warning, no uncaught
  exception, no log entry of level error (failed loads, Content-Security-Policy violations). That this check
  CAN fail is shown on pages that misbehave on purpose;
* ``--screenshot``: a PNG of the whole page, of the expected size and not blank. Set ENP_REPORT_SCREENSHOT to a
  path to keep it (docs/ keeps one of a drill's report).

No root and no lab needed; Chromium runs without its sandbox, offline (every flag that makes it phone home off),
each time with a new profile directory. Chromium missing is a failure, not a skip: `make test` installs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from enp import report as rp

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("ENP_CHROMIUM", "/usr/bin/chromium"))
SAMPLE = Path(__file__).resolve().parents[1] / "unit" / "data" / "recovery_run_sample.json"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
WIDTH = 1280
TIMEOUT_S = 90


def chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package with `apt-get install -y chromium` "
            "(scripts/setup.sh does, via make setup / make test), or point ENP_CHROMIUM at a chromium binary."
        )
    return CHROMIUM


@contextmanager
def profile_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="enp-chromium-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with profile_dir() as profile:
        return subprocess.run(
            [str(chromium()), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )


# --------------------------------------------------------------------------------------------------------------
# The DevTools protocol over a pipe: Chromium reads commands on fd 3 and writes replies and events on fd 4,
# each message JSON followed by a NUL byte.


class DevTools:
    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def onto_3_and_4() -> None:  # in the child, before exec: move the pipe ends to fd 3 and 4
            low, high = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(low, 3)
            os.dup2(high, 4)

        self.proc = subprocess.Popen(
            [str(chromium()), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=onto_3_and_4,  # noqa: PLW1509 - single-threaded at this point; only dup2 runs
            pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_child, 65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        self._replies[message["id"]] = message
                        self._lock.notify_all()
                else:
                    self.events.put(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        with self._lock:
            if not self._lock.wait_for(lambda: ident in self._replies, timeout=TIMEOUT_S):
                raise TimeoutError(f"Chromium did not answer {method} within {TIMEOUT_S} s")
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def close(self) -> None:
        with suppress(OSError, TimeoutError, RuntimeError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        self._reader.join(timeout=5)
        os.close(self._from_child)


def _problem(event: dict[str, Any]) -> str | None:
    """A console error/warning, an uncaught exception or an error log entry, as one line; None for the rest."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
        return f"console.{params['type']}: {args}"
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}"
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
        entry = params["entry"]
        return f"log {entry['level']} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
    return None


def load_in_browser(url: str, settle_s: float = 1.0) -> tuple[list[str], dict[str, Any]]:
    """Open url in a fresh headless Chromium; return (console problems, facts about the page)."""
    with profile_dir() as profile:
        tools = DevTools(profile)
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                tools.send(f"{domain}.enable", session=session)
            tools.send("Page.navigate", {"url": url}, session=session)
            events: list[dict[str, Any]] = []
            loaded_at: float | None = None
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                if loaded_at is not None and time.monotonic() > loaded_at + settle_s:
                    break
                try:
                    event = tools.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if event.get("sessionId") != session:
                    continue
                events.append(event)
                if event.get("method") == "Page.loadEventFired" and loaded_at is None:
                    loaded_at = time.monotonic()
            assert loaded_at is not None, f"{url} did not finish loading within {TIMEOUT_S} s"
            facts = tools.send(
                "Runtime.evaluate",
                {
                    "expression": "JSON.stringify({height: document.documentElement.scrollHeight,"
                    " title: document.title, bars: document.querySelectorAll('svg.timeline rect.bar').length})",
                    "returnByValue": True,
                },
                session=session,
            )
        finally:
            tools.close()
    problems = [p for p in map(_problem, events) if p]
    return problems, json.loads(facts["result"]["value"])


# --------------------------------------------------------------------------------------------------------------
# PNG checks (stdlib only)


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decoded image data) of a non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


# --------------------------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    run = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return rp.write_reports(run, tmp_path_factory.mktemp("report"))


def test_chromium_renders_the_report_dom(sample_report: dict[str, Path]) -> None:
    done = run_chromium("--dump-dom", sample_report["html"].as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    dom = done.stdout
    assert 'id="headline"' in dom and "RTO achieved" in dom and "14 min 18 s" in dom
    assert "<svg" in dom and dom.count('class="bar"') == 6
    assert "CERT-In incident report (pre-filled)" in dom
    assert "<script" not in dom


def test_the_report_has_no_console_errors(sample_report: dict[str, Path]) -> None:
    problems, facts = load_in_browser(sample_report["html"].as_uri())
    assert problems == [], "\n".join(problems)
    assert facts["title"] == "Recovery report ENP-LAB-2026-12-06-01"
    assert facts["bars"] == 6
    assert facts["height"] > 2000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<script>console.error('deliberate console error')</script>", "console.error: deliberate console error"),
        ("<script>console.warn('deliberate warning')</script>", "console.warning: deliberate warning"),
        ("<script>throw new Error('deliberate exception')</script>", "uncaught exception: Error: deliberate exception"),
        ('<img src="missing-picture.png" alt="">', "ERR_FILE_NOT_FOUND"),
        (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
            "<script>document.title = 'ran'</script>",
            "Content Security Policy",
        ),
    ],
)
def test_the_console_check_catches_a_misbehaving_page(tmp_path: Path, body: str, expected: str) -> None:
    page = tmp_path / "bad.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>bad</title></head><body>{body}<p>x</p></body></html>")
    problems, _ = load_in_browser(page.as_uri(), settle_s=0.5)
    assert any(expected in p for p in problems), problems


def test_the_console_check_passes_a_quiet_page(tmp_path: Path) -> None:
    page = tmp_path / "quiet.html"
    page.write_text("<!DOCTYPE html><html><head><title>quiet</title></head><body><script>console.log('ok')</script>")
    problems, facts = load_in_browser(page.as_uri(), settle_s=0.5)
    assert problems == [] and facts["title"] == "quiet"


def test_screenshot_of_the_report(sample_report: dict[str, Path], tmp_path: Path) -> None:
    _, facts = load_in_browser(sample_report["html"].as_uri(), settle_s=0.2)
    height = min(int(facts["height"]), 12000)
    shot = tmp_path / "report.png"
    done = run_chromium(f"--window-size={WIDTH},{height}", f"--screenshot={shot}", sample_report["html"].as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-3000:]
    data = shot.read_bytes()
    width, png_height, distinct = png_facts(data)
    assert (width, png_height) == (WIDTH, height)
    assert len(data) > 50_000, f"suspiciously small screenshot: {len(data)} bytes"
    assert distinct > 100, "the screenshot looks blank"
    keep = os.environ.get("ENP_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
