"""Running a command in a process group of its own, and leaving no process behind.

Every command runs in a process group of its own (`start_new_session=True`), led by a
small script (`wfed.steps.group_leader`) that ends the group if the daemon itself dies
(kill -9 outside systemd), so a command never outlives the daemon that runs it. When the run
is cancelled (a stop request, the step's policy timeout, the daemon shutting down) or its
own `timeout` expires, the whole group gets SIGTERM, then SIGKILL after `kill_grace`
seconds, so grandchildren die with the command. Members still in the group after the
command exits are ended the same way. The command itself is always reaped.

Output is read incrementally as it arrives and only the last `max_output` bytes of each
stream are kept. A pipe still held open by a process that left the group (`setsid`) does
not hold the run up: reading stops shortly after the group is gone.

While the command runs, its stdout and stderr are also passed on line by line to an
optional live-output sink (the `shell` step passes `wfed.steps.base.step_output()`): lines
as they are read (a last line without a line end when its pipe closes; a line end of
"\r\n" counts as "\n"; an unfinished line longer than `LINE_MAX` bytes in pieces).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wfed.logging import get_logger
from wfed.steps import group_leader
from wfed.steps.base import OutputSink, Stream

log = get_logger("wfed.steps.shell")  # the shell step's events, as before

MAX_OUTPUT = 64 * 1024
"""Default bytes kept of each of stdout and stderr (the tail)."""
DRAIN_SECONDS = 1.0
"""How long output is still read once the command's process group is gone."""
REAP_SECONDS = 10.0
"""How long to wait for a SIGKILLed command to be reaped before giving up on it."""
POLL_SECONDS = 0.05
"""How often a terminated group is checked for survivors."""
LINE_MAX = 16 * 1024
"""Bytes of an unfinished line held back for the live output before they go as a piece."""
ERROR_LINES = 10
ERROR_CHARS = 1500
_GROUP_LEADER = group_leader.__file__


class CommandFailed(Exception):
    """The command could not be started, or exited with a code not in `ok_codes`."""


class CommandTimedOut(Exception):
    """The command ran longer than its `timeout` and was killed."""


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    def as_context(self) -> dict[str, Any]:
        return {"rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}

    def tail(self) -> str:
        """The last lines of stderr (of stdout when stderr is empty), for error messages."""
        return tail_lines(self.stderr) or tail_lines(self.stdout)


def tail_lines(text: str, lines: int = ERROR_LINES, chars: int = ERROR_CHARS) -> str:
    kept = "\n".join(text.strip().splitlines()[-lines:])
    return kept if len(kept) <= chars else "…" + kept[-chars:]


class _Tail:
    """The last `limit` bytes written to it, and how many bytes were dropped before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        data = bytes(self.data)
        if not self.dropped:
            return data.decode("utf-8", errors="replace")
        # Do not start with the broken remains of a multi-byte character.
        skip = 0
        while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
            skip += 1
        marker = f"[… output truncated: the first {self.dropped + skip} bytes were dropped …]\n"
        return marker + data[skip:].decode("utf-8", errors="replace")


class _Lines:
    """Splits one stream's bytes into lines for a live-output sink."""

    def __init__(self, stream: Stream, sink: OutputSink) -> None:
        self.stream: Stream = stream
        self.sink: OutputSink | None = sink
        self.partial = bytearray()

    def add(self, data: bytes) -> None:
        end = data.rfind(b"\n")
        if end < 0:
            self.partial += data
            while len(self.partial) > LINE_MAX:
                self._piece()
            return
        if self.partial:
            block = bytes(self.partial + data[:end])
            self.partial.clear()
        else:
            block = data[:end]
        self.partial += data[end + 1 :]
        # One decode for the whole block of complete lines: a line end is never inside a
        # multi-byte character.
        text = block.decode("utf-8", errors="replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        self._pass(text)
        while len(self.partial) > LINE_MAX:
            self._piece()

    def close(self) -> None:
        """The pipe closed: its last line has no line end."""
        if self.partial:
            text = bytes(self.partial).decode("utf-8", errors="replace")
            self.partial.clear()
            self._pass(text.removesuffix("\r"))

    def _piece(self) -> None:
        # Cut before a multi-byte character rather than through it.
        cut = LINE_MAX
        while cut > LINE_MAX - 3 and self.partial[cut] & 0xC0 == 0x80:
            cut -= 1
        piece = bytes(self.partial[:cut])
        del self.partial[:cut]
        self._pass(piece.decode("utf-8", errors="replace"))

    def _pass(self, text: str) -> None:
        if self.sink is None:
            return
        try:
            self.sink.write(self.stream, text)
        except Exception as exc:  # a sink must not raise; if it does, the step goes on
            log.warning("shell_output_sink_failed", error=f"{type(exc).__name__}: {exc}")
            self.sink = None


class _Capture(asyncio.SubprocessProtocol):
    """Collects output as it arrives; tells when the process exited and the pipes closed.

    The exit is watched on its own (not through `Process.wait()`, which on Python 3.11
    waits for the pipes too and so hangs while a grandchild holds one open).
    """

    def __init__(self, limit: int, output: OutputSink | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.output = {1: _Tail(limit), 2: _Tail(limit)}
        self.lines: dict[int, _Lines] = {}
        if output is not None:
            self.lines = {1: _Lines("stdout", output), 2: _Lines("stderr", output)}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd in self.output:
            self.output[fd].add(data)
            if self.lines:
                self.lines[fd].add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self.lines:
            self.lines[fd].close()
        self._open.discard(fd)
        if not self._open and not self.drained.done():
            self.drained.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_running_member(pgid)


def _has_running_member(pgid: int) -> bool:
    """Scan /proc for a member of the group that is not a zombie (Linux); elsewhere the
    answer of killpg(pgid, 0) stands. Zombies matter: an orphaned member that died is
    reaped by init, which may take its time (or, in some containers, never happen)."""
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # it ended meanwhile
        # pid (comm) state ppid pgrp …: comm may contain anything, so split after it.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in {b"Z", b"X"}:
            return True
    return False


async def _wait_exit(capture: _Capture, seconds: float) -> bool:
    """Wait up to `seconds` for the command to have exited (and been reaped)."""
    done, _ = await asyncio.wait({capture.exited}, timeout=seconds)
    return bool(done)


async def _terminate(pgid: int, capture: _Capture, grace: float) -> None:
    """SIGTERM the process group, give it `grace` seconds, then SIGKILL what is left.

    A second cancellation during the grace skips the rest of it: SIGKILL is sent on every
    way out, so nothing of the group survives the step.
    """
    _signal_group(pgid, signal.SIGTERM)
    _signal_group(pgid, signal.SIGCONT)  # a stopped process cannot act on its SIGTERM
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    try:
        # Polled: nothing signals the end of a whole process group. While the command
        # itself runs, its group is alive without looking further.
        while (  # noqa: ASYNC110
            not capture.exited.done() or _group_alive(pgid)
        ) and loop.time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
    finally:
        if _group_alive(pgid):
            log.warning("shell_group_killed", pgid=pgid, grace=grace)
            _signal_group(pgid, signal.SIGKILL)
        if not await _wait_exit(capture, REAP_SECONDS):
            log.error("shell_command_not_reaped", pid=pgid)


def _led(argv: list[str], grace: float) -> list[str]:
    """`argv` run under the group leader, which knows this process as its daemon."""
    return [sys.executable, "-I", "-S", _GROUP_LEADER, str(os.getpid()), f"{grace!r}", "--", *argv]


async def _spawn(
    argv: list[str],
    capture: _Capture,
    *,
    env: dict[str, str] | None,
    cwd: str | None,
    stdin: bytes | None,
    grace: float,
) -> asyncio.SubprocessTransport:
    loop = asyncio.get_running_loop()
    spawning = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: capture,
            *_led(argv, grace),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    )
    try:
        transport, _ = await asyncio.shield(spawning)
    except asyncio.CancelledError:
        # Cancelled while starting: the process may exist already and must not outlive us.
        with contextlib.suppress(Exception):
            started, _ = await spawning
            try:
                await _terminate(started.get_pid(), capture, grace=0)
            finally:
                started.close()
        raise
    except OSError as exc:  # no such program or directory, not executable…
        detail = f"{exc.strerror or exc}"
        if exc.filename is not None:
            detail += f": {exc.filename}"
        raise CommandFailed(f"cannot run {argv[0]!r}: {detail}") from None
    if stdin is not None:
        pipe = transport.get_pipe_transport(0)
        if isinstance(pipe, asyncio.WriteTransport):
            # A command that exits without reading gets EPIPE; asyncio ignores it quietly.
            pipe.write(stdin)
            pipe.write_eof()
    return transport


async def run_command(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the shell step's argument, passed on
    kill_grace: float = 5.0,
    max_output: int = MAX_OUTPUT,
    output: OutputSink | None = None,
) -> CommandResult:
    """Run `argv` in its own process group and return its exit code and output.

    On cancellation the group is terminated (see the module docstring) and the
    cancellation propagates. CommandTimedOut after `timeout`; CommandFailed if it cannot
    start. The exit code is not judged here. With `output`, stdout and stderr are also
    passed to it line by line as they are read.
    """
    argv = list(argv)
    capture = _Capture(max_output, output)
    data = None if stdin is None else stdin.encode()
    transport = await _spawn(argv, capture, env=env, cwd=cwd, stdin=data, grace=kill_grace)
    pgid = transport.get_pid()  # == the pid: it leads its own new session and group
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                # Shielded: a cancellation must reach us, not cancel the exit future.
                await asyncio.shield(capture.exited)
        except TimeoutError:
            timed_out = True
            await _terminate(pgid, capture, kill_grace)
        else:
            if _group_alive(pgid):
                # The command left processes behind in its group (`cmd &`): they go too,
                # as systemd does with a unit's leftovers. A process meant to outlive the
                # step must detach itself (setsid, systemd-run).
                log.warning("shell_leftovers_terminated", pgid=pgid)
                await _terminate(pgid, capture, kill_grace)
    except BaseException:  # cancelled: a stop, the step's timeout, shutdown
        await _terminate(pgid, capture, kill_grace)
        raise
    finally:
        try:
            await asyncio.wait({capture.drained}, timeout=DRAIN_SECONDS)
        finally:
            transport.close()
    rc = transport.get_returncode()
    result = CommandResult(
        rc=-1 if rc is None else rc,
        stdout=capture.output[1].text(),
        stderr=capture.output[2].text(),
    )
    if result.rc == group_leader.CANNOT_RUN_CODE and result.stderr.startswith(
        group_leader.CANNOT_RUN
    ):
        first = result.stderr.splitlines()[0]
        raise CommandFailed(f"cannot run {first.removeprefix(group_leader.CANNOT_RUN)}")
    if timed_out:
        tail = result.tail()
        raise CommandTimedOut(
            f"{describe(argv)} timed out after {timeout:g} s and was killed"
            + (f"; last output:\n{tail}" if tail else "")
        )
    return result


def describe(argv: Sequence[str], limit: int = 120) -> str:
    """A command for messages: shell-quoted, shortened."""
    text = shlex.join(argv)
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def exit_text(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}"
    return f"exited with code {rc}"
