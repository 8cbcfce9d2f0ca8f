"""A TCP proxy that breaks connections: put between the daemons and their database, it
forwards bytes both ways and, now and then, resets a connection mid-stream (both sides
get a TCP RST: the client sees MySQL error 2013 or 2006) or stalls a chunk for a while.

It runs its own event loop in a thread, so that the test's loop (and anything blocking
in it) does not slow the traffic down. Faults are drawn per chunk forwarded (a read of
up to 64 KiB: mostly one packet), with a seeded random generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

CHUNK = 64 * 1024


class Verdict(Enum):
    """What a script decides for one chunk."""

    FORWARD = "forward"
    RESET = "reset"
    HOLD = "hold"
    """Keep the chunk and the connection as they are, until `release(connection)`
    resets it: the client waits for a reply that never comes."""


Script = Callable[[int, bool, bytes], Verdict]
"""`script(connection number, towards the client?, chunk)`, called in the proxy's thread
for every chunk before the random faults are drawn."""


@dataclass
class ProxyStats:
    connections: int = 0
    chunks: int = 0
    bytes: int = 0
    resets: int = 0
    resets_to_client: int = 0
    """Resets of a chunk on its way from the server to the client: the reply is lost,
    whatever the server did with the request (a COMMIT may have landed)."""
    stalls: int = 0
    stalled_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class ChaosProxy:
    """Listens on 127.0.0.1:`port` and forwards to `upstream_host`:`upstream_port`."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        reset_rate: float = 0.0,
        stall_rate: float = 0.0,
        stall_seconds: tuple[float, float] = (0.2, 1.0),
        seed: int = 0,
        script: Script | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.reset_rate = reset_rate
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.script = script
        self.faults = True
        """Faults are drawn only while this is true (set it false to pass traffic clean)."""
        self.stats = ProxyStats()
        self.port = 0
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._held: dict[int, asyncio.Event] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> int:
        """Start the proxy; returns its port."""
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the chaos proxy did not start")
        return self.port

    def release(self, connection: int) -> None:
        """Reset a connection a script holds (from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release, connection)

    def _release(self, connection: int) -> None:
        self._held.setdefault(connection, asyncio.Event()).set()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for client, upstream in list(self._links):
                client.transport.abort()
                upstream.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    # -- forwarding ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        number = self.stats.connections
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            self.stats.errors.append(f"upstream: {exc}")
            _reset(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, number, to_client=False),
                self._pump(up_reader, writer, link, number, to_client=True),
            )
        finally:
            self._links.discard(link)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        number: int,
        *,
        to_client: bool,
    ) -> None:
        try:
            while True:
                chunk = await source.read(CHUNK)
                if not chunk:
                    break
                self.stats.chunks += 1
                self.stats.bytes += len(chunk)
                verdict = self.script(number, to_client, chunk) if self.script else None
                if verdict is Verdict.HOLD:
                    await self._held.setdefault(number, asyncio.Event()).wait()
                    verdict = Verdict.RESET
                if verdict is Verdict.RESET:
                    self.stats.resets += 1
                    self.stats.resets_to_client += to_client
                    for side in link:
                        _reset(side)
                    return
                if verdict is None and self.faults:
                    draw = self._rng.random()
                    if draw < self.reset_rate:
                        self.stats.resets += 1
                        self.stats.resets_to_client += to_client
                        for side in link:
                            _reset(side)
                        return
                    if draw < self.reset_rate + self.stall_rate:
                        pause = self._rng.uniform(*self.stall_seconds)
                        self.stats.stalls += 1
                        self.stats.stalled_seconds += pause
                        await asyncio.sleep(pause)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended (or broke): end the other, as a TCP middlebox would.
            with contextlib.suppress(OSError, RuntimeError):
                if not sink.is_closing():
                    sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, RuntimeError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
