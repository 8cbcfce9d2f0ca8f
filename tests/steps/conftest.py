"""Fixtures for the built-in step tests: process probes, a loopback HTTP server, Engines.

Everything is real: subprocesses, an HTTP server on 127.0.0.1 in a thread, and the
session's test databases (with the wfed schema: `make_engine` in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wfed import Engine

QUEUE = "steps-test"
"""Workflows of these tests go to a queue no daemon of another test serves."""

# -- processes ------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


class Procs:
    """Probes for the processes a test command starts (Linux /proc)."""

    @staticmethod
    def state(pid: int) -> tuple[str, int] | None:
        """(state letter, parent pid) of a process, or None when it no longer exists."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            # Gone before the open, or between the open and the read (ESRCH).
            return None
        fields = stat[stat.rfind(b")") + 2 :].split()
        return fields[0].decode(), int(fields[1])

    def alive(self, pid: int) -> bool:
        """Whether a process exists and is not a zombie."""
        state = self.state(pid)
        return state is not None and state[0] not in {"Z", "X"}

    def assert_gone(self, *pids: int, within: float = 10.0) -> None:
        """Each pid is dead: gone, or at most a zombie left to init (never one of ours, so
        nothing we started is left unreaped). A SIGKILL takes effect when its process is
        next scheduled, which on a busy machine may be a moment after it was sent."""
        deadline = time.monotonic() + within
        for pid in pids:
            while (state := self.state(pid)) is not None and state[0] not in {"Z", "X"}:
                if time.monotonic() > deadline:
                    raise AssertionError(f"process {pid} is still alive (state {state[0]})")
                time.sleep(0.01)
            if state is not None:
                assert state[1] != os.getpid(), f"process {pid} is a zombie of ours: never reaped"

    @staticmethod
    async def written(path: Path, within: float = 10.0) -> str:
        """What a test command wrote into `path`, once the file exists."""
        deadline = time.monotonic() + within
        while (text := _read(path)) is None:
            assert time.monotonic() < deadline, f"{path} never appeared"
            await asyncio.sleep(0.02)
        return text

    async def pids(self, path: Path, within: float = 10.0) -> list[int]:
        """The pids a test command wrote (atomically, with mv) into `path`, once it exists."""
        return [int(pid) for pid in (await self.written(path, within)).split()]

    @staticmethod
    def family(pidfile: Path) -> str:
        """A /bin/sh script whose process group has a grandchild: it records its own pid
        and the grandchild's in `pidfile`, then sleeps for long."""
        return (
            "sleep 300 & "
            f'echo "$$ $!" > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"; '
            "sleep 300"
        )

    @staticmethod
    def stubborn(pidfile: Path, termfile: Path) -> list[str]:
        """A command (argv) whose whole group outlives SIGTERM: a Python process that notes
        each SIGTERM in `termfile` and goes on, and a child `sleep` that ignores it. Their
        pids go into `pidfile`; left alone, both end by themselves after 300 s."""
        return [sys.executable, "-c", _STUBBORN, str(pidfile), str(termfile)]


_STUBBORN = """
import os, signal, subprocess, sys

pidfile, termfile = sys.argv[1:]
signal.alarm(300)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child
child = subprocess.Popen(["sleep", "300"])


def noted(signum, frame):
    with open(termfile, "a") as out:
        print("TERM", file=out)


signal.signal(signal.SIGTERM, noted)
with open(pidfile + ".tmp", "w") as out:
    out.write(f"{os.getpid()} {child.pid}")
os.replace(pidfile + ".tmp", pidfile)
while True:
    signal.pause()
"""


@pytest.fixture
def procs() -> Procs:
    """Process probes: `family(pidfile)` and `stubborn(…)` commands, `await pids(pidfile)`,
    `await written(path)`, `alive(pid)`, `assert_gone(…)`."""
    return Procs()


# -- HTTP -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json, /text, /big, /status/<code>, /slow, /echo (any method)."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if path == "/json":
            payload = {"name": "intweb1", "ports": [80, 443], "query": self.path}
            self._send(200, json.dumps(payload).encode(), "application/json", ETag='"v1"')
        elif path == "/text":
            self._send(200, "plain text ✓".encode(), "text/plain; charset=utf-8")
        elif path == "/big":
            self._send(200, b"x" * (200 * 1024), "application/json")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, b'{"error": "the backend is on fire"}', "application/json")
        elif path == "/slow":
            self.server.release.wait(10)
            # The client has usually given up (its timeout is what the test is about).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(200, b"late", "text/plain")
        elif path == "/echo":
            echo = {
                "method": self.command,
                "body": received.decode(),
                "content_type": self.headers.get("Content-Type"),
                "x_token": self.headers.get("X-Token"),
            }
            self._send(201, json.dumps(echo).encode(), "application/json", Location="/echo/1")
        else:
            self._send(404, b"no such route", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route  # noqa: N815 - http.server names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()


@pytest.fixture
def http_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT`) of a real HTTP server on loopback."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- engines --------------------------------------------------------------------------


EngineFactory = Callable[..., Engine]


@pytest.fixture
async def engine(sqlite_url: str, make_engine: EngineFactory) -> Engine:
    """An Engine on the session's SQLite database with the built-in and example steps;
    it notices stop requests within 0.2 s."""
    return make_engine(sqlite_url, step_modules=["wfed.examples"], control_interval=0.2)


CreateFn = Callable[..., Awaitable[str]]


@pytest.fixture
def create(engine: Engine) -> CreateFn:
    """`await create(steps, context=None)`: a new pending workflow (unique name, a queue
    of its own); returns its name."""

    async def make(steps: list[Any], context: dict[str, Any] | None = None) -> str:
        name = f"steps-{uuid.uuid4().hex[:12]}"
        await engine.create_workflow(name, context, steps, queue=QUEUE)
        return name

    return make
