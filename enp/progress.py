"""Progress of a playbook run on stderr, for an operator who wants to know "where is it, is it stuck".

On a terminal: one line, redrawn in place every second, with elapsed time, the play, the task and
"host n/N done"; failures and new plays are printed as lines of their own above it. Elsewhere (CI logs,
``2> file``): plain lines only, one when a task finishes (unless every host skipped it), one for every failure,
and a "still running" heartbeat when a task takes long. ``echo=True`` (``enp -v``) shows Ansible's own output instead.

Only the standard library: the handlers are fed runner events (dicts) by :mod:`enp.runner`.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CLEAR_LINE = "\r\x1b[2K"
_DONE_EVENTS = frozenset({"runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable"})
_TASK_EVENTS = frozenset({"playbook_on_task_start", "playbook_on_handler_task_start"})


def format_elapsed(seconds: float) -> str:
    """12s, 3m05s, 1h02m: short and fixed-ish width."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _short(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, without colour codes."""
    line = " ".join(_ANSI.sub("", text).split())
    return _truncate(line, limit)


def _truncate(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Progress:
    """Event and status handlers for :func:`enp.runner.run_playbook` that draw progress on ``stream``."""

    def __init__(
        self,
        title: str,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        echo: bool = False,
        heartbeat: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.echo = echo
        self.heartbeat = heartbeat
        self._clock = clock
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._started_at = clock()
        self._last_line_at = self._started_at
        self._drawn = False
        self.phase = "starting"
        self.play = ""
        self.task = ""
        self._task_started_at = self._started_at
        self._task_hosts: set[str] = set()
        self._task_done: set[str] = set()
        self._task_failed: set[str] = set()
        self._task_skipped: set[str] = set()
        self.failed_hosts: set[str] = set()
        self.unreachable_hosts: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Redraw every second (terminal) or write a heartbeat when quiet for long (log), until close()."""
        if self.echo or self._ticker is not None:
            return
        self._ticker = threading.Thread(target=self._tick_loop, name="enp-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        with self._lock:
            self._finish_task()
            if self._drawn:
                self._write(_CLEAR_LINE)
                self._drawn = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def tick(self) -> None:
        """Called every second by the ticker thread."""
        with self._lock:
            if self.tty:
                self._redraw()
            elif self.task and self._clock() - self._last_line_at >= self.heartbeat:
                self._line(f"TASK {self.task}: still running, {self._counts()}")

    # -- runner handlers ---------------------------------------------------------------------------------------

    def on_status(self, status: str) -> None:
        with self._lock:
            self.phase = status
            if status == "canceling":
                self._line("interrupted: asking ansible-playbook to stop its hosts' tasks and exit")
            elif status == "canceled":
                self._line("ansible-playbook stopped")
            elif self.tty:
                self._redraw()

    def on_event(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            if self.echo:
                self._echo(event)
                return
            kind = event.get("event", "")
            data: Mapping[str, Any] = event.get("event_data") or {}
            host = str(data.get("host", ""))
            if kind == "playbook_on_play_start":
                self._finish_task()
                self.play = str(data.get("name") or data.get("play") or "")
                self._line(f"PLAY {self.play}")
            elif kind in _TASK_EVENTS:
                self._finish_task()
                self.task = str(data.get("name") or data.get("task") or "")
                self._task_started_at = self._clock()
            elif kind == "runner_on_start" and host:
                self._task_hosts.add(host)
            elif kind in _DONE_EVENTS and host:
                self._task_hosts.add(host)
                self._task_done.add(host)
                if kind == "runner_on_skipped":
                    self._task_skipped.add(host)
                self._record_failure(kind, host, data)
            elif kind == "playbook_on_stats":
                self._finish_task()
            if self.tty:
                self._redraw()

    # -- internals ---------------------------------------------------------------------------------------------

    def _record_failure(self, kind: str, host: str, data: Mapping[str, Any]) -> None:
        res: Mapping[str, Any] = data.get("res") or {}
        msg = _short(str(res.get("msg") or ""), 200)
        if kind == "runner_on_unreachable":
            self.unreachable_hosts.add(host)
            self._task_failed.add(host)
            self._line(f"UNREACHABLE {host} in task {self.task!r}: {msg}")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.failed_hosts.add(host)
            self._task_failed.add(host)
            self._line(f"FAILED {host} in task {self.task!r}: {msg}")

    def _counts(self) -> str:
        text = f"host {len(self._task_done)}/{len(self._task_hosts)} done"
        if self._task_failed:
            text += f", {len(self._task_failed)} failed"
        return text

    def _finish_task(self) -> None:
        """Close the current task: in a log, one line with its counts and duration (none if every host skipped)."""
        if self.task and self._task_hosts and not self.tty and self._task_skipped != self._task_hosts:
            took = format_elapsed(self._clock() - self._task_started_at)
            self._line(f"TASK {self.task}: {self._counts()} ({took})")
        self.task = ""
        self._task_hosts.clear()
        self._task_done.clear()
        self._task_failed.clear()
        self._task_skipped.clear()

    def _stamp(self) -> str:
        return f"[{format_elapsed(self._clock() - self._started_at):>6}]"

    def _status_text(self) -> str:
        parts = [f"{self._stamp()} {self.title}"]
        if self.play:
            parts.append(self.play)
        if self.task:
            parts.append(f"{self.task} | {self._counts()}")
        elif not self.play:
            parts.append(self.phase)
        text = " > ".join(parts)
        problems = len(self.failed_hosts | self.unreachable_hosts)
        if problems:
            text += f" | {problems} host{'s' if problems != 1 else ''} failed so far"
        return text

    def _redraw(self) -> None:
        width = shutil.get_terminal_size(fallback=(100, 24)).columns
        self._write(_CLEAR_LINE + _truncate(self._status_text(), max(width - 1, 20)))
        self._drawn = True

    def _line(self, text: str) -> None:
        prefix = _CLEAR_LINE if self._drawn else ""
        self._write(f"{prefix}{self._stamp()} {text}\n")
        self._drawn = False
        self._last_line_at = self._clock()
        if self.tty:
            self._redraw()

    def _echo(self, event: Mapping[str, Any]) -> None:
        text = str(event.get("stdout") or "")
        if not text:
            return
        text = text.replace("\r\n", "\n").replace("\r", "")
        self._write((text if self.tty else _ANSI.sub("", text)) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or a broken pipe must not stop a rebuild
            pass
