"""A local HTTP server that receives webhook POSTs for the notification tests: it keeps
every request, and answers each path as the test scripted it (a status code, or hanging
until the test ends)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"
"""A scripted reply: never answer (until the receiver closes)."""
HANG_LIMIT = 60.0
GATED = "gated"
"""A scripted reply: 200 once the test opens the receiver's `gate`."""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """The server's requests and scripts; `url(path)` is where a webhook points."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        self.scripts: dict[str, list[int | str]] = {}
        self.hanging = 0
        self.closed = threading.Event()
        self.gate = threading.Event()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def script(self, path: str, *replies: int | str) -> None:
        """Answer the next POSTs to `path` with these, in order; 200 afterwards."""
        with self.lock:
            self.scripts[path] = list(replies)

    def to(self, path: str) -> list[Any]:
        """The bodies POSTed to `path`, in the order they came."""
        with self.lock:
            return [r.body for r in self.requests if r.path == path]

    def _next_reply(self, path: str) -> int | str:
        with self.lock:
            replies = self.scripts.get(path)
            return replies.pop(0) if replies else 200


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        receiver = self.server.receiver
        with receiver.lock:
            receiver.requests.append(
                Received(self.path, dict(self.headers.items()), json.loads(raw or b"null"))
            )
        reply = receiver._next_reply(self.path)
        if reply == HANG:
            with receiver.lock:
                receiver.hanging += 1
            receiver.closed.wait(HANG_LIMIT)
            return
        if reply == GATED:
            receiver.gate.wait(HANG_LIMIT)
            reply = 200
        self.send_response(int(reply))
        self.send_header("Content-Type", "text/plain")
        text = b"ok" if int(reply) < 300 else b"receiver says no"
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many POSTs at once (some of them hanging): a full listen backlog would reset
    # connections, which a notifier counts as failed tries.
    request_queue_size = 128
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a hanging reply: nothing to report


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port) for the length of the block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    receiver = Receiver(server)
    server.receiver = receiver
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="notify-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.closed.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def eventually(
    condition: Callable[[], Any], limit: float = 30.0, what: str = "condition"
) -> None:
    """Wait until `condition()` (sync or async) holds; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.02)
