"""Where the daemon's log lines go: written once per turn of the event loop (see
`LineOutput`), not once per line."""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from typing import Any, TextIO


class LineOutput:
    """Where log lines go. A line logged on a running event loop joins the others of the
    same turn of the loop, and they are written together as the loop's next callback: a
    write and a flush per turn instead of per line. A line logged elsewhere (another
    thread, no loop, the standard library's logging) is written at once, after whatever
    was gathered before it, so the order of lines is kept.

    Lines wait for the loop no longer than its turn, unless a step blocks the loop: a
    thread then writes them after `BACKSTOP` seconds, so a wedged daemon's last lines
    still reach the journal. What is gathered is written at exit as well; a kill -9 loses
    at most the lines of the turn it cut short."""

    BACKSTOP = 0.5

    def __init__(self, stream: TextIO, *, per_loop_turn: bool) -> None:
        self._stream = stream
        self._per_loop_turn = per_loop_turn
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._flushes = 0
        self._backstop: threading.Thread | None = None
        if per_loop_turn:
            atexit.register(self.flush)

    def logger(self, *_args: Any) -> LineOutput:
        """structlog's logger factory: every logger writes here."""
        return self

    def msg(self, message: str) -> None:
        loop = asyncio._get_running_loop() if self._per_loop_turn else None
        with self._lock:
            self._lines.append(message)
            if loop is None:
                self._flush_locked()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self.flush)
                if self._backstop is None:
                    self._backstop = threading.Thread(
                        target=self._write_stuck_lines, name="wfed-log-backstop", daemon=True
                    )
                    self._backstop.start()

    # structlog calls its logger's method of the line's level.
    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg

    def write(self, text: str) -> None:
        """The standard library's handler writes here (with the line's newline)."""
        self.msg(text.removesuffix("\n"))

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._flush_scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        self._flushes += 1
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            # The journal's pipe is gone or the stream closed: there is nowhere to say
            # so, and failing the caller would fail a step's commit over a log line.
            pass

    def _write_stuck_lines(self) -> None:
        seen = -1
        while True:
            time.sleep(self.BACKSTOP)
            with self._lock:
                if self._lines and self._flushes == seen:
                    self._flush_locked()  # gathered a whole BACKSTOP ago: the loop is stuck
                seen = self._flushes
