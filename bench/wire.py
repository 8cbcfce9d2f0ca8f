"""A counting TCP proxy between one daemon and its database server.

Server-wide counters (MariaDB's `Questions`, PostgreSQL's `xact_commit`) also count every
other client of a shared server; the proxy counts exactly what one daemon sends. It reads
the client → server direction of the wire protocol, forwards every byte unchanged, and
tallies:

* MySQL/MariaDB: each command packet (sequence id 0): `COM_QUERY` by the statement's first
  keyword (SELECT, UPDATE, COMMIT, ROLLBACK…), `COM_PING` as PING, others by name. Every
  command is one round trip.
* PostgreSQL: simple queries (`Q`) by first keyword, and extended-protocol executions
  (`E`) by the first keyword of the statement bound to them (`P`/`B`); each `Sync` or
  simple query is one round trip. The daemon must connect without TLS (`?ssl=disable`).

Besides, statements whose text matches a watched pattern (e.g. an UPDATE that sets
`lease_expires_at`) are counted under the watch's name: a keyword alone does not tell a
lease renewal from any other UPDATE.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final

_MYSQL_COMMANDS: Final = {
    0x01: "QUIT",
    0x02: "INIT_DB",
    0x0E: "PING",
    0x11: "CHANGE_USER",
    0x16: "STMT_PREPARE",
    0x17: "STMT_EXECUTE",
    0x19: "STMT_CLOSE",
    0x1F: "RESET_CONNECTION",
}
_COM_QUERY: Final = 0x03
_PG_SSL_REQUEST: Final = 80877103
_PG_GSS_REQUEST: Final = 80877104
_PG_CANCEL_REQUEST: Final = 80877102
_WORD: Final = re.compile(rb"\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)
ROUND_TRIPS: Final = "round trips"


def keyword(sql: bytes) -> str:
    """The first SQL keyword of a statement ('' if there is none, e.g. `;`)."""
    match = _WORD.match(sql)
    return match.group(1).decode().upper() if match else ";"


class _Tally:
    """Counts by statement keyword, a few distinct statement texts for each, and the
    statements that match each watched pattern."""

    def __init__(self, watch: Mapping[str, re.Pattern[bytes]]) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, set[str]] = {}
        self.watch = dict(watch)
        self.matched: Counter[str] = Counter()

    def watched(self, sql: bytes) -> list[str]:
        """The names of the watched patterns `sql` matches."""
        return [name for name, pattern in self.watch.items() if pattern.search(sql)]

    def statement(self, sql: bytes) -> str:
        word = keyword(sql[:200])
        self.counts[word] += 1
        self.matched.update(self.watched(sql))
        seen = self.examples.setdefault(word, set())
        if len(seen) < 5:
            seen.add(" ".join(sql[:160].decode(errors="replace").split()))
        return word


class _MySQLParser:
    """Client → server MySQL packets: 3-byte length, 1-byte sequence id, payload."""

    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.counts = tally.counts
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:3], "little")
            if len(self.buffer) < 4 + length:
                return
            sequence = self.buffer[3]
            payload = bytes(self.buffer[4 : 4 + length])
            del self.buffer[: 4 + length]
            if sequence != 0 or not payload:
                continue  # the handshake response, or the rest of a long packet
            command = payload[0]
            if command == _COM_QUERY:
                self.tally.statement(payload[1:])
            else:
                self.counts[_MYSQL_COMMANDS.get(command, f"COM_{command:#04x}")] += 1
            self.counts[ROUND_TRIPS] += 1


class _PostgresParser:
    """Client → server PostgreSQL messages: untyped start-up messages, then 1-byte type
    and a 4-byte length (which counts itself)."""

    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.counts = tally.counts
        self.buffer = bytearray()
        self.started = False
        self.statements: dict[bytes, str] = {}
        self.statement_watches: dict[bytes, list[str]] = {}
        self.bound = "(unknown)"
        self.bound_watches: list[str] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return
                length = int.from_bytes(self.buffer[:4], "big")
                code = int.from_bytes(self.buffer[4:8], "big")
                if len(self.buffer) < length:
                    return
                del self.buffer[:length]
                if code not in {_PG_SSL_REQUEST, _PG_GSS_REQUEST, _PG_CANCEL_REQUEST}:
                    self.started = True  # the StartupMessage
                continue
            if len(self.buffer) < 5:
                return
            kind = bytes(self.buffer[0:1])
            length = int.from_bytes(self.buffer[1:5], "big")
            if len(self.buffer) < 1 + length:
                return
            body = bytes(self.buffer[5 : 1 + length])
            del self.buffer[: 1 + length]
            self._message(kind, body)

    def _message(self, kind: bytes, body: bytes) -> None:
        if kind == b"Q":
            self.tally.statement(body)
            self.counts[ROUND_TRIPS] += 1
        elif kind == b"P":
            name, _, rest = body.partition(b"\0")
            self.statements[name] = keyword(rest[:200])
            self.statement_watches[name] = self.tally.watched(rest.partition(b"\0")[0])
            self.counts["(parse)"] += 1
            seen = self.tally.examples.setdefault(self.statements[name], set())
            if len(seen) < 5:
                seen.add(" ".join(rest[:160].decode(errors="replace").split()))
        elif kind == b"B":
            _portal, _, rest = body.partition(b"\0")
            name = rest.partition(b"\0")[0]
            self.bound = self.statements.get(name, "(unknown)")
            self.bound_watches = self.statement_watches.get(name, [])
        elif kind == b"E":
            self.counts[self.bound] += 1
            self.tally.matched.update(self.bound_watches)
        elif kind == b"S":
            self.counts[ROUND_TRIPS] += 1
        elif kind == b"X":
            self.counts["QUIT"] += 1


class WireCounter:
    """Listen on 127.0.0.1:<ephemeral>, forward to the server, count what clients send;
    `watch` names patterns of statement text to count the statements matching them."""

    def __init__(
        self,
        protocol: str,
        host: str,
        port: int,
        watch: Mapping[str, re.Pattern[bytes]] | None = None,
    ) -> None:
        if protocol not in {"mysql", "postgresql"}:
            raise ValueError(f"no wire protocol parser for {protocol!r}")
        self.protocol = protocol
        self.upstream = (host, port)
        self.tally = _Tally(watch or {})
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> WireCounter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    @property
    def counts(self) -> Counter[str]:
        return self.tally.counts

    @property
    def examples(self) -> dict[str, set[str]]:
        return self.tally.examples

    def snapshot(self) -> Counter[str]:
        return Counter(self.tally.counts)

    def matched(self) -> Counter[str]:
        """Statements so far that matched each watched pattern, by watch name."""
        return Counter(self.tally.matched)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parser = (
            _MySQLParser(self.tally) if self.protocol == "mysql" else _PostgresParser(self.tally)
        )
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(
                _pump(reader, up_writer, parser.feed), _pump(up_reader, writer, None)
            )
        except (OSError, asyncio.CancelledError):
            pass  # a connection reset, or the proxy closing: the count is what it is
        finally:
            for stream in pair:
                stream.close()
            self._writers -= pair


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    inspect: Callable[[bytes], None] | None,
) -> None:
    while data := await reader.read(65536):
        if inspect is not None:
            inspect(data)
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
