"""Helpers for the daemon tests: a `wfed` process handle, plain-SQL enqueue, waits."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from wfed import Engine

TESTS_DIR = Path(__file__).resolve().parents[1]
"""Goes on the daemons' PYTHONPATH, so that they import the test steps as `stepmods.…`."""
WFED = str(Path(sys.executable).parent / "wfed")
STEP_MODULES = ["stepmods.journal"]


@dataclass
class DaemonProcess:
    """A running `wfed` process and its JSON log."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path
    offset: int = field(default=0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"event": "<raw>", "text": raw})
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def wait_for_log(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} in the daemon log:\n{self.log_path.read_text()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


DaemonFactory = Callable[..., DaemonProcess]


def journal_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


async def insert_workflows(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Enqueue with plain SQL, as an operator would (name, steps, context, queue)."""
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, queue) "
                "VALUES (:name, :steps, :context, :queue)"
            ),
            [
                {
                    "name": row["name"],
                    "steps": json.dumps(row["steps"]),
                    "context": json.dumps(row["context"]),
                    "queue": row["queue"],
                }
                for row in rows
            ],
        )


async def wait_until(
    condition: Callable[[], Awaitable[bool]], limit: float = 30.0, what: str = "condition"
) -> float:
    """Poll `condition` until it holds; returns the seconds it took. Fails after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await condition():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


async def wait_for_journal(path: Path, line_prefix: str, limit: float = 30.0) -> str:
    """Wait until a journal line starts with `line_prefix`; returns it."""

    async def present() -> bool:
        return any(line.startswith(line_prefix) for line in journal_lines(path))

    await wait_until(present, limit, f"journal line {line_prefix!r}")
    return next(line for line in journal_lines(path) if line.startswith(line_prefix))
