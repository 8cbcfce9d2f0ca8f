"""The daemon's log output: lines logged on the event loop are written once per turn of
the loop, in the order they were logged, with lines from elsewhere (a worker thread, the
standard library's logging) kept in place; lines of a loop that a step blocks still come
out; a broken stream never fails the code that logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time

import pytest

from wfed.logging import configure_logging, flush_log, get_logger
from wfed.logging.output import LineOutput

pytestmark = pytest.mark.usefixtures("restored_logging")


class _CountingStream(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def test_lines_of_one_turn_are_written_together_after_it() -> None:
    out = _CountingStream()
    configure_logging("info", "json", stream=out, per_loop_turn=True)
    log = get_logger("wfed.test")

    async def one_turn() -> tuple[str, int]:
        for number in range(5):
            log.info(f"line{number}")
        seen_during_turn = out.getvalue()
        await asyncio.sleep(0)  # the loop's next turn writes them
        await asyncio.sleep(0)
        return seen_during_turn, out.writes

    during, writes = asyncio.run(one_turn())
    assert during == ""
    assert writes == 1
    assert _events(out) == [f"line{number}" for number in range(5)]


def test_a_line_from_elsewhere_keeps_its_place() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out, per_loop_turn=True)
    log = get_logger("wfed.test")

    async def mixed() -> None:
        log.info("loop_first")
        # The standard library's logging and a worker thread write at once, after what
        # the loop gathered before them.
        logging.getLogger("wfed.test.stdlib").warning("stdlib_second")
        worker = threading.Thread(target=lambda: log.info("thread_third"))
        worker.start()
        worker.join()
        log.info("loop_fourth")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(mixed())
    assert _events(out) == ["loop_first", "stdlib_second", "thread_third", "loop_fourth"]


def test_lines_of_a_blocked_loop_still_come_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LineOutput, "BACKSTOP", 0.05)
    out = io.StringIO()
    configure_logging("info", "json", stream=out, per_loop_turn=True)
    log = get_logger("wfed.test")

    async def blocked() -> bool:
        log.info("before_the_block")
        # A step that blocks the event loop: the loop's next turn never comes while it
        # does, so the line can only come out by the backstop.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "before_the_block" in out.getvalue():
                return True
            time.sleep(0.01)  # noqa: ASYNC251 - blocking the loop is the point
        return False

    assert asyncio.run(blocked()) is True


def test_flush_log_writes_what_was_gathered_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the daemon calls before leaving with os._exit, which skips the loop's write.
    monkeypatch.setattr(LineOutput, "BACKSTOP", 3600.0)
    out = io.StringIO()
    configure_logging("info", "json", stream=out, per_loop_turn=True)
    log = get_logger("wfed.test")

    async def last_words() -> tuple[str, str]:
        log.info("last_line")
        gathered = out.getvalue()
        flush_log()
        return gathered, out.getvalue()

    gathered, flushed = asyncio.run(last_words())
    assert gathered == ""
    assert [json.loads(line)["event"] for line in flushed.splitlines()] == ["last_line"]


def test_a_broken_stream_does_not_fail_the_caller() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out, per_loop_turn=True)
    out.close()
    log = get_logger("wfed.test")

    async def logs_twice() -> None:
        log.info("into_a_closed_stream")
        await asyncio.sleep(0)
        log.warning("again")
        await asyncio.sleep(0)

    asyncio.run(logs_twice())  # no ValueError: the lines are dropped
    log.error("and_outside_the_loop")


def test_without_per_loop_turn_every_line_is_written_at_once() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = get_logger("wfed.test")

    async def one_line() -> str:
        log.info("at_once")
        return out.getvalue()

    assert "at_once" in asyncio.run(one_line())


def test_timestamps_are_iso_utc_with_microseconds() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger("wfed.test").info("stamped")
    stamp = json.loads(out.getvalue())["timestamp"]
    assert len(stamp) == len("2026-11-30T17:00:00.123456Z")
    assert stamp.endswith("Z")
    parsed = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(parsed) - time.mktime(time.gmtime())) < 3600


def test_an_exception_line_carries_its_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        int("boom")
    except ValueError:
        get_logger("wfed.test").exception("failed")
    line = json.loads(out.getvalue())
    assert line["level"] == "error"
    assert "ValueError: invalid literal" in line["exception"]
